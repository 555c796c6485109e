"""`trust-tuf-client`: the tuf-conformance client protocol on stella-trust's own code.

The conformance suite drives a client through `init`, `refresh` and `download` and
inspects the metadata directory itself, so this wrapper keeps python-tuf's plain
layout in `--metadata-dir` (unversioned `root.json`, `timestamp.json`, ...), while
the fetching, the Updater construction and the cached-target check are the ones
`trust sync` uses.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from urllib import parse

from stella_trust._internal.fs import atomic_write
from stella_trust._internal.tuf.offline import verify_root_chain
from stella_trust._internal.tuf.updater import RepositorySession


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="trust-tuf-client", description="TUF conformance client (stella-trust)."
    )
    parser.add_argument("--metadata-dir", required=True, type=Path)
    parser.add_argument("--metadata-url")
    parser.add_argument("--target-name", action="append", default=[])
    parser.add_argument("--target-base-url")
    parser.add_argument("--target-dir", type=Path)
    parser.add_argument("--max-root-rotations", type=int, default=32)
    commands = parser.add_subparsers(dest="command", required=True)
    init = commands.add_parser("init", help="store the trusted root (no network)")
    init.add_argument("trusted_root", type=Path)
    commands.add_parser("refresh", help="refresh top-level metadata")
    commands.add_parser("download", help="download the named targets, in order")
    return parser


def _init(metadata_dir: Path, trusted_root: Path) -> None:
    data = trusted_root.read_bytes()
    verify_root_chain(data, metadata_dir / "root_history-none")  # refuse a root that does not verify
    metadata_dir.mkdir(parents=True, exist_ok=True)
    atomic_write(metadata_dir / "root.json", data)


def run(argv: list[str]) -> None:
    args = _parser().parse_args(argv)
    if args.command == "init":
        _init(args.metadata_dir, args.trusted_root)
        return
    if not args.metadata_url:
        raise SystemExit("--metadata-url is required")
    session = RepositorySession.plain(
        args.metadata_dir, args.metadata_url, args.target_base_url, args.max_root_rotations
    )
    try:
        session.refresh()
        if args.command == "refresh":
            return
        if not args.target_dir or not args.target_name:
            raise SystemExit("download needs --target-dir and at least one --target-name")
        args.target_dir.mkdir(parents=True, exist_ok=True)
        for name in args.target_name:
            info = session.find(name)
            if info is None:
                raise LookupError(f"target {name!r} not found")
            filename = parse.quote(name, safe="")
            if filename in ("", ".", ".."):  # would name the directory or its parent
                raise LookupError(f"target name {name!r} cannot be stored as a file")
            session.ensure(info, args.target_dir / filename)
    finally:
        session.close()


def main(argv: list[str] | None = None) -> None:
    """Exit 0 on success and 1 on any failure, as the protocol requires."""
    try:
        run(sys.argv[1:] if argv is None else argv)
    except SystemExit as exc:
        if exc.code not in (0, None):
            print(f"trust-tuf-client: {exc.code}", file=sys.stderr)
            sys.exit(1)
    except Exception as exc:
        print(f"trust-tuf-client: {type(exc).__name__}: {exc}", file=sys.stderr)
        sys.exit(1)
    sys.exit(0)


if __name__ == "__main__":
    main()
