"""Benchmark: our offline bundle verification vs sigstore-python used directly.

1. In process: verifications/second of `verify_bundle` vs sigstore's `Verifier` (built once
   from the same trusted root; `Bundle.from_json` + `verify_artifact` per call), medians of
   interleaved rounds. Goal: ratio ours/sigstore >= 0.95.
2. Processes: `trust verify` with the trust of a synced cache (re-verified from the anchor
   on every run, as a host runs it) and `trust-sigstore-client verify-bundle --trusted-root`,
   each against `sigstore --trust-config CFG verify identity --offline` with the same trust
   (the client trust config `trust export` writes), median wall time and median CPU time
   (user + system, of the child) of interleaved runs. Goal: ratio <= 1.0.
3. A release of 20 artifacts (issue 24), each with its bundle at FILE.sigstore.json: one
   `trust verify FILE...` against one `sigstore verify identity --offline FILE...`, same
   trust, interleaved. Goal: ratio <= 0.9.
4. The floors, in the same rounds: `import sigstore.verify` (both sides pay it) and the
   import line of trust verify's stack (STACK_FLOOR: sigstore's verifier, typer,
   pydantic-settings, PyYAML), each as a ratio of sigstore-python's one-artifact run.
5. The least a one-process `trust verify` of the release can cost (RELEASE_FLOOR): that import
   line plus python-tuf's metadata API (the re-verification from the anchor needs it), then
   sigstore-python's own Verifier built once from the same trusted root and its own
   `verify_artifact` for each of the 20 bundles, started and ending as `trust` does (the
   collector's start-up threshold, no final collection): no settings read, no trust re-verified,
   none of decision 15's checks, no output. Printed as a ratio of sigstore-python's 20-artifact
   run: what one process could at best reach; `trust verify` on one CPU (item 6) is that plus
   its own work (settings, the trust re-verified from the anchor, typer, decision 15 per bundle,
   the sealed-log comparison). With a second CPU the worker of design decision 24 imports
   sigstore-python's verifier while the trust is read.
6. The same release with `trust verify` pinned to one CPU (no worker), in the same rounds: what a
   host without a free second CPU gets.

CPU time is printed beside wall time because the shared machine is loaded: wall time there
is mostly waiting for a core, CPU time is what each process asked for.

Run: .venv/bin/python benchmarks/bench_verify.py [--rounds N] [--process-rounds N]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from stella_trust._cli.launch import STARTUP_YOUNG_THRESHOLD  # as every `trust` process runs

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
    with tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp) / "client_trust_config.json"
        cache_host = _synced_host(Path(tmp))
        host = ["--config", str(cache_host / "trust.yaml"), "--cache-dir", str(cache_host / "cache")]
        export = ["export", "--format", "client-trust-config", "--out", str(config)]
        subprocess.run([str(BIN / "trust"), *host, *export], check=True, capture_output=True)
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
        release = _release(Path(tmp) / "release", RELEASE_SIZE)
        who = ["--certificate-identity", IDENTITY, "--certificate-oidc-issuer", ISSUER]
        trust_many = [*trust_verify[:5], "verify", *who, *map(str, release)]
        theirs_many = [
            *theirs[:6],
            "--cert-identity",
            IDENTITY,
            "--cert-oidc-issuer",
            ISSUER,
            *map(str, release),
        ]
        python = str(BIN / "python")
        release_args = list(map(str, release))
        runs = {
            "verifier import": [python, "-c", "import sigstore.verify"],
            "stack floor": [python, "-c", STACK_FLOOR],
            "release floor": [python, "-c", RELEASE_FLOOR, str(STAGING / "trusted_root.json"), *release_args],
            "trust verify": trust_verify,
            "ours": ours,
            "sigstore": theirs,
            "trust verify x20": trust_many,
            "trust verify x20, one CPU": [ONE_CPU, *trust_many],
            "sigstore x20": theirs_many,
        }
        ENV["PYTHONPYCACHEPREFIX"] = str(Path(tmp) / "pycache")
        for argv in runs.values():  # warm-up: bytecode, page cache
            _timed(argv)
        wall: dict[str, list[float]] = {name: [] for name in runs}
        cpu: dict[str, list[float]] = {name: [] for name in runs}
        for _ in range(rounds):
            for name, argv in runs.items():
                seconds, cpu_seconds = _timed(argv)
                wall[name].append(seconds)
                cpu[name].append(cpu_seconds)
    w = {name: statistics.median(values) for name, values in wall.items()}
    c = {name: statistics.median(values) for name, values in cpu.items()}
    rows = (
        ("verifier import", "import sigstore.verify (both pay it)", "sigstore", "floor"),
        ("stack floor", "import line of trust verify's stack", "sigstore", "floor"),
        ("sigstore", "sigstore verify identity --offline", "sigstore", None),
        ("trust verify", "trust verify (cache)", "sigstore", "<= 1.0"),
        ("ours", "trust-sigstore-client", "sigstore", "<= 1.0"),
        ("sigstore x20", f"sigstore ... {RELEASE_SIZE} artifacts", "sigstore x20", None),
        ("release floor", f"stack + sigstore's own {RELEASE_SIZE} checks", "sigstore x20", "serial floor"),
        ("trust verify x20", f"trust verify {RELEASE_SIZE} artifacts", "sigstore x20", "<= 0.9"),
        ("trust verify x20, one CPU", "  the same on one CPU (no worker)", "sigstore x20", "no goal"),
    )
    for name, label, base, goal in rows:
        if goal is None:
            ratio = ""
        elif goal == "serial floor":
            ratio = (
                f"  = {w[name] / w[base]:.3f}x (wall), cpu {c[name] / c[base]:.3f}: "
                "the least a one-process run can cost"
            )
        elif goal == "no goal":
            ratio = f"  ratio wall {w[name] / w[base]:.3f}, cpu {c[name] / c[base]:.3f}"
        elif goal == "floor":
            ratio = (
                f"  = {w[name] / w['sigstore']:.3f}x sigstore's one artifact, "
                f"{w[name] / w['sigstore x20']:.3f}x its {RELEASE_SIZE} (wall)"
            )
        else:
            ratio = f"  ratio wall {w[name] / w[base]:.3f}, cpu {c[name] / c[base]:.3f} (goal {goal})"
        print(f"process     {label:<36} wall {w[name] * 1000:8.1f} ms  cpu {c[name] * 1000:7.1f} ms{ratio}")


RELEASE_SIZE = 20
ONE_CPU = "<one CPU>"  # an argv's first word: run the rest pinned to one CPU (trust verify: no worker)
# The third-party modules `trust verify` cannot run without and sigstore-python's CLI does not
# import: the CLI (typer, which builds its parameters with pydantic), settings
# (pydantic-settings, PyYAML); plus sigstore-python's verifier, which both import. With zero
# work of our own a `trust verify` process costs at least this (printed as a ratio beside
# the goals: issue 24's "<= 1.0x" and "<= 0.9x" are below it).
STACK_FLOOR = "import sigstore.verify, typer.main, typer._adapters, pydantic_settings, yaml"
# The stack's import line and python-tuf's metadata API, then only sigstore-python's own work
# for the release (argv: trusted_root.json, then the artifacts, each bundle beside it), ending
# as `trust` does (`_cli/app.py`: gc.freeze, no final collection). Item 5 of the docstring.
RELEASE_FLOOR = f"""
import sys, hashlib, gc
gc.set_threshold({STARTUP_YOUNG_THRESHOLD}, *gc.get_threshold()[1:])
{STACK_FLOOR}
import tuf.api.metadata
from pathlib import Path
from sigstore.hashes import Hashed
from sigstore.models import Bundle, TrustedRoot
from sigstore.verify import Verifier
from sigstore.verify.policy import Identity
from sigstore_models.common.v1 import HashAlgorithm
verifier = Verifier(trusted_root=TrustedRoot.from_file(sys.argv[1]))
policy = Identity(identity={IDENTITY!r}, issuer={ISSUER!r})
for artifact in map(Path, sys.argv[2:]):
    digest = hashlib.sha256(artifact.read_bytes()).digest()
    bundle = Bundle.from_json(Path(str(artifact) + ".sigstore.json").read_bytes())
    verifier.verify_artifact(Hashed(algorithm=HashAlgorithm.SHA2_256, digest=digest), bundle, policy)
gc.freeze()
"""
# Every process reads compiled bytecode, as an installed package does (pip compiles it; an
# editable checkout under PYTHONDONTWRITEBYTECODE would compile stella-trust from source in
# every run): a private PYTHONPYCACHEPREFIX, filled by the warm-up round (bench_sync.py's rule).
ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE" and not k.startswith("STELLA_")}


def _timed(argv: list[str]) -> tuple[float, float]:
    """Wall time and the child's CPU time (user + system) of one run."""
    import resource

    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    pinned = argv[0] == ONE_CPU
    subprocess.run(
        argv[1:] if pinned else argv,
        check=True,
        capture_output=True,
        env=ENV,
        preexec_fn=(lambda: os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})) if pinned else None,
    )
    seconds = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return seconds, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def _release(directory: Path, count: int) -> list[Path]:
    """`count` artifacts, each with its real staging bundle beside it as FILE.sigstore.json
    (the two staging bundles signed by IDENTITY, alternating)."""
    import shutil

    directory.mkdir()
    sources = [BUNDLE.with_name("bundle_v3.txt"), BUNDLE.with_name("bundle_v3_alt.txt")]
    files = []
    for index in range(count):
        source = sources[index % 2]
        artifact = directory / f"artifact-{index:02}.txt"
        shutil.copy(source, artifact)
        shutil.copy(
            source.with_name(source.name + ".sigstore.json"),
            artifact.with_name(artifact.name + ".sigstore.json"),
        )
        files.append(artifact)
    return files


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
    parser.add_argument("--processes-only", action="store_true", help="skip the in-process figure")
    args = parser.parse_args()
    if not args.processes_only:
        in_process(args.rounds, args.per_round)
    processes(args.process_rounds)


if __name__ == "__main__":
    main()
