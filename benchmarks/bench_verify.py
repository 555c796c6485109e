"""Benchmark: our offline bundle verification vs sigstore-python used directly.

1. In process: verifications/second of `verify_bundle` vs sigstore's `Verifier` (built once
   from the same trusted root; `Bundle.from_json` + `verify_artifact` per call), medians of
   interleaved rounds. Goal: ratio ours/sigstore >= 0.95.
2. Processes: `trust-sigstore-client verify-bundle --trusted-root` vs
   `sigstore --trust-config CFG verify identity --offline`, median wall time. Goal: ratio <= 1.0.

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

    from stella_trust._internal.sigstore.policy import IdentityPolicy
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
    from stella_trust._internal.sigstore.trusted_root import client_trust_config

    with tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp) / "client_trust_config.json"
        config.write_bytes(
            client_trust_config(
                (STAGING / "trusted_root.json").read_bytes(),
                (STAGING / "signing_config.v0.2.json").read_bytes(),
            )
        )
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
        times: dict[str, list[float]] = {"ours": [], "sigstore": []}
        for _ in range(rounds):
            for name, argv in (("ours", ours), ("sigstore", theirs)):
                start = time.perf_counter()
                subprocess.run(argv, check=True, capture_output=True)
                times[name].append(time.perf_counter() - start)
    ours_s, their_s = statistics.median(times["ours"]), statistics.median(times["sigstore"])
    print(
        f"process     ours {ours_s * 1000:8.1f} ms  sigstore CLI      {their_s * 1000:8.1f} ms  "
        f"ratio {ours_s / their_s:.3f} (goal <= 1.0)"
    )


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
