"""Benchmark: our offline bundle verification vs sigstore-python used directly.

1. In process: verifications/second of `verify_bundle` vs sigstore's `Verifier` (built once
   from the same trusted root; `Bundle.from_json` + `verify_artifact` per call), medians of
   interleaved rounds. Goal: ratio ours/sigstore >= 0.95.
2. Processes: `trust verify` with the trust of a synced cache (re-verified from the anchor
   on every run, as a host runs it) and `trust-sigstore-client verify-bundle --trusted-root`,
   each against `sigstore --trust-config CFG verify identity --offline` with the same trust,
   median wall time of interleaved runs. Goal: ratio <= 1.0.

Run: .venv/bin/python benchmarks/bench_verify.py [--rounds N]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
STAGING = ROOT.parent / "shared" / "fixtures" / "sigstore" / "staging"
BIN = Path(sys.executable).parent
IDENTITY, ISSUER = "william@yossarian.net", "https://github.com/login/oauth"
ARTIFACT, BUNDLE = STAGING / "bundles" / "bundle_v3.txt", STAGING / "bundles" / "bundle_v3.txt.sigstore.json"


def in_process(rounds: int, per_round: int) -> None:
    from sigstore.hashes import Hashed
    from sigstore.models import Bundle, TrustedRoot
    from sigstore.verify import Verifier
    from sigstore.verify.policy import Identity
    from sigstore_models.common.v1 import HashAlgorithm

    from stella_trust._internal.sigstore.signers import IdentityPolicy
    from stella_trust._internal.sigstore.verify import verify_bundle

    trusted_root, bundle, artifact = (
        (STAGING / "trusted_root.json").read_bytes(),
        BUNDLE.read_bytes(),
        ARTIFACT.read_bytes(),
    )
    verifier = Verifier(trusted_root=TrustedRoot.from_file(str(STAGING / "trusted_root.json")))
    sigstore_policy = Identity(identity=IDENTITY, issuer=ISSUER)
    policy = IdentityPolicy(identity=IDENTITY, issuer=ISSUER)

    def ours() -> None:
        verify_bundle(trusted_root, bundle, artifact, policy)

    def theirs() -> None:
        import hashlib

        hashed = Hashed(algorithm=HashAlgorithm.SHA2_256, digest=hashlib.sha256(artifact).digest())
        verifier.verify_artifact(hashed, Bundle.from_json(bundle), sigstore_policy)

    ours(), theirs()  # warm caches and imports
    rates: dict[str, list[float]] = {"ours": [], "sigstore": []}
    for _ in range(rounds):
        for name, func in (("ours", ours), ("sigstore", theirs)):
            start = time.perf_counter()
            for _ in range(per_round):
                func()
            rates[name].append(per_round / (time.perf_counter() - start))
    ours_rate, their_rate = statistics.median(rates["ours"]), statistics.median(rates["sigstore"])
    print(
        f"in-process  ours {ours_rate:8.1f}/s   sigstore Verifier {their_rate:8.1f}/s   "
        f"ratio {ours_rate / their_rate:.3f} (goal >= 0.95)"
    )


def processes(rounds: int) -> None:
    from stella_trust._internal.sigstore.exports import client_trust_config

    with tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp) / "client_trust_config.json"
        config.write_bytes(
            client_trust_config(
                (STAGING / "trusted_root.json").read_bytes(),
                (STAGING / "signing_config.v0.2.json").read_bytes(),
            )
        )
        cache_host = _synced_host(Path(tmp))
        trust_verify = [
            str(BIN / "trust"),
            "--config",
            str(cache_host / "trust.yaml"),
            "--cache-dir",
            str(cache_host / "cache"),
            "verify",
            "--bundle",
            str(BUNDLE),
            "--certificate-identity",
            IDENTITY,
            "--certificate-oidc-issuer",
            ISSUER,
            str(ARTIFACT),
        ]
        ours = [
            str(BIN / "trust-sigstore-client"),
            "verify-bundle",
            "--bundle",
            str(BUNDLE),
            "--certificate-identity",
            IDENTITY,
            "--certificate-oidc-issuer",
            ISSUER,
            "--trusted-root",
            str(STAGING / "trusted_root.json"),
            str(ARTIFACT),
        ]
        theirs = [
            str(BIN / "sigstore"),
            "--trust-config",
            str(config),
            "verify",
            "identity",
            "--offline",
            "--bundle",
            str(BUNDLE),
            "--cert-identity",
            IDENTITY,
            "--cert-oidc-issuer",
            ISSUER,
            str(ARTIFACT),
        ]
        times: dict[str, list[float]] = {"trust verify": [], "ours": [], "sigstore": []}
        for _ in range(rounds):
            for name, argv in (("trust verify", trust_verify), ("ours", ours), ("sigstore", theirs)):
                start = time.perf_counter()
                subprocess.run(argv, check=True, capture_output=True)
                times[name].append(time.perf_counter() - start)
    medians = {name: statistics.median(values) for name, values in times.items()}
    their_s = medians["sigstore"]
    print(f"process     sigstore verify identity --offline   {their_s * 1000:8.1f} ms")
    for name, label in (("trust verify", "trust verify (cache)"), ("ours", "trust-sigstore-client")):
        print(
            f"process     {label:<34} {medians[name] * 1000:8.1f} ms  "
            f"ratio {medians[name] / their_s:.3f} (goal <= 1.0)"
        )


def _synced_host(tmp: Path) -> Path:
    """A host whose cache holds staging's trust, synced from a file:// repository."""
    from stella_trust.repository import Repository

    repo = Repository.create(tmp / "repository")
    for name in ("trusted_root.json", "signing_config.v0.2.json"):
        repo.add_target(name, (STAGING / name).read_bytes())
    repo.publish()
    host = tmp / "host"
    subprocess.run(
        [
            str(BIN / "trust"),
            "--config",
            str(host / "trust.yaml"),
            "--cache-dir",
            str(host / "cache"),
            "init",
            "--tuf-url",
            repo.path.as_uri(),
            "--root",
            str(repo.metadata_dir / "1.root.json"),
        ],
        check=True,
        capture_output=True,
    )
    return host


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--per-round", type=int, default=40)
    parser.add_argument("--process-rounds", type=int, default=11)
    args = parser.parse_args()
    in_process(args.rounds, args.per_round)
    processes(args.process_rounds)


if __name__ == "__main__":
    main()
