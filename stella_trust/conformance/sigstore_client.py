"""`trust-sigstore-client`: the sigstore-conformance CLI protocol, verify side, offline.

    trust-sigstore-client verify-bundle [--staging] --bundle FILE
        (--certificate-identity I --certificate-oidc-issuer U | --key PEM)
        [--trusted-root FILE] FILE_OR_DIGEST

Trust comes from `--trusted-root`, else from the stella-trust cache (`open_trust()`, which
re-verifies it and refuses stale trust). `--staging` is accepted and ignored: which Sigstore
instance is trusted is the cache's decision, not a flag's. `sign-bundle` exits 1: this client
holds no secrets and never talks to Fulcio or Rekor. Exit 0 verified, 1 failed (one line on
stderr), 2 usage, 3 trust unusable. argparse keeps start-up light.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from stella_trust.errors import EXIT_FAILED, EXIT_USAGE, StellaError, UsageError


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="trust-sigstore-client",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", required=True)
    verify = commands.add_parser("verify-bundle", help="verify a Sigstore bundle offline")
    verify.add_argument("--staging", action="store_true", help="accepted for the protocol; ignored")
    verify.add_argument("--bundle", required=True, type=Path)
    verify.add_argument("--certificate-identity")
    verify.add_argument("--certificate-oidc-issuer")
    verify.add_argument("--key", type=Path)
    verify.add_argument("--trusted-root", type=Path)
    verify.add_argument("file_or_digest")
    commands.add_parser("sign-bundle", help="not supported (offline client)")
    return parser


def _verify(args: argparse.Namespace) -> None:
    from stella_trust._internal.sigstore.verify import verify_bundle
    from stella_trust._internal.verify_inputs import artifact_input, make_policy, read_input

    if args.key is None and not (args.certificate_identity and args.certificate_oidc_issuer):
        raise UsageError("give --certificate-identity and --certificate-oidc-issuer, or --key")
    policy = make_policy(
        identity=args.certificate_identity,
        issuer=args.certificate_oidc_issuer,
        key_pem=read_input(args.key, "public key") if args.key is not None else None,
    )
    artifact = artifact_input(args.file_or_digest, need_bytes=args.key is not None)
    bundle = read_input(args.bundle, "bundle")
    if args.trusted_root is not None:
        verify_bundle(read_input(args.trusted_root, "trusted root"), bundle, artifact, policy)
        return
    from stella_trust.api import open_trust

    verify_bundle(open_trust().trusted_root_json, bundle, artifact, policy)  # stale refused there


def main(argv: list[str] | None = None) -> int:
    logging.getLogger("sigstore").addHandler(logging.NullHandler())
    logging.getLogger("sigstore").propagate = False  # its warnings would add lines to stderr
    argv = sys.argv[1:] if argv is None else argv
    try:
        if argv[:1] == ["sign-bundle"]:  # before argparse: its options are not ours to validate
            raise StellaError("sign-bundle is not supported: trust-sigstore-client verifies offline only")
        try:
            args = _parser().parse_args(argv)
        except SystemExit as exc:
            return EXIT_USAGE if exc.code else 0
        _verify(args)
    except StellaError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return EXIT_FAILED
    print("OK", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
