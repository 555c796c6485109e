"""`trust get`, `trust keys`, `trust diff`: read one thing from the verified trust.

Each command re-verifies the cache from the anchor first (like `trust status`); the words
and tables are built from the verified view only (never from unverified cache files).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer

from stella_trust._cli.options import InstanceOption, JsonOption, load, reported
from stella_trust.errors import EXIT_UNUSABLE, StellaError, TrustUnusableError, UnknownTargetError, UsageError

if TYPE_CHECKING:
    from stella_trust._cli.envelope import Envelope
    from stella_trust.sigstore_types import CertificateChainFacts, TransparencyLog
    from stella_trust.view import TrustView

T = TypeVar("T")


def get(
    ctx: typer.Context,
    name: Annotated[
        str,
        typer.Argument(metavar="NAME", help="Target name; the extension may be left out when unique."),
    ],
    out: Annotated[
        Path | None,
        typer.Option("--out", metavar="FILE", help="Write the bytes to FILE (replaced atomically)."),
    ] = None,
    instance: InstanceOption = None,
    as_json: JsonOption = False,
) -> None:
    """Print the verified bytes of one cached target (binary-safe), or write them to --out.

    The cache is re-verified from the trust anchor first, and only bytes that matched the
    signed length and hashes on this read are served: a cache edited on disk or stale trust
    is refused (exit 3). With --json, --out is required (the result names the file, its
    length and SHA-256).

    Examples:

      trust get rekor-key-v1.pub > rekor.pub

      trust get rekor-key-v1 --out /etc/ssl/rekor.pub

      trust get trusted_root.json --out trusted_root.json --json
    """
    with reported(as_json) as env:
        if as_json and out is None:
            raise UsageError(
                "--json needs --out FILE: the target's bytes would share stdout with the JSON",
                hint=f"trust get {name} --out FILE --json",
            )
        if out is not None and out.is_dir():
            raise UsageError(f"--out {out} is a directory; name the file to write")
        from stella_trust._internal.reader import load_target
        from stella_trust._internal.store import Store

        settings = load(ctx)
        _view, entry, data = _unusable_on_failure(lambda: load_target(settings, Store.of(settings), name))
        if out is None:
            sys.stdout.flush()
            sys.stdout.buffer.write(data)
            sys.stdout.buffer.flush()
            return
        import hashlib

        from stella_trust._internal.fs import write_output

        write_output(out.absolute(), data)  # a link at OUT is replaced, never written through
        digest = hashlib.sha256(data).hexdigest()
        env.result = {
            "name": entry.name,
            "length": len(data),
            "sha256": digest,
            "path": str(out),
            "role": entry.role,
        }
        env.say(f"get: {entry.name}: {len(data)} bytes, sha256 {digest} -> {out}")


def keys(ctx: typer.Context, instance: InstanceOption = None, as_json: JsonOption = False) -> None:
    """List the keys and certificates of the verified trust, with their status.

    One row per Rekor log, CT log, certificate authority (Fulcio) and timestamp authority
    of the trusted root verifiers get, then any other key or certificate target the cache
    holds (status `held`: cached, but not in that trusted root). KEY ID is the log ID for
    logs, the SHA-256 of the key's SPKI for keys, the SHA-256 of the leaf-most certificate
    for authorities. Retired entries are listed, not hidden: they still verify old bundles.

    Examples:

      trust keys

      trust keys --json | jq '.result.keys[] | select(.kind == "rekor")'
    """
    with reported(as_json) as env:
        view = _current_view(ctx)
        rows = _key_rows(view)
        env.result = {"at": _iso(view.at), "keys": rows}
        env.say(_table(rows))
        _refuse_stale(env, view)


def diff(ctx: typer.Context, instance: InstanceOption = None, as_json: JsonOption = False) -> None:
    """What the last change of the trust did: the previous generation against the current.

    The store keeps the generation a sync or import replaced until the next change; it is
    verified from the trust anchor like the current one before it is described (one that
    does not verify is reported, not described). Shows role versions before -> after,
    targets added, removed and changed, and the changes in words (root rotations, Rekor
    key, endpoints, logs and authorities of the trusted root).

    Examples:

      trust diff

      trust diff --json | jq .result.changes
    """
    from stella_trust._internal.policy.changes import describe_changes, role_versions, target_changes
    from stella_trust._internal.reader import generation_view, load_view_of_generation, previous_generation
    from stella_trust._internal.store import Store

    with reported(as_json) as env:
        settings = load(ctx)
        store = Store.of(settings)
        view, current = _unusable_on_failure(lambda: load_view_of_generation(settings, store))
        previous = previous_generation(store, current)
        result: dict[str, Any] = {
            "current": {
                "generation": current.path.name,
                "versions": {role: info.version for role, info in view.roles.items()},
                "source": dict(view.source),
            },
            "previous": None,
            "roles": {},
            "targets": {"added": [], "removed": [], "changed": []},
            "changes": [],
        }
        env.result = result
        if previous is None:
            env.say(
                "diff: no earlier generation kept: nothing to compare (the store keeps one after a change)"
            )
            _refuse_stale(env, view)
            return
        try:
            before = generation_view(settings, store, previous, view.at)
        except StellaError as error:
            result["previous"] = {"generation": previous.path.name, "verified": False, "error": error.message}
            env.say(f"diff: the earlier generation {previous.path.name} does not verify: not described")
            env.warn(f"earlier generation {previous.path.name} does not verify: {error.message}")
            _refuse_stale(env, view)
            return
        result["previous"] = {
            "generation": previous.path.name,
            "verified": True,
            "versions": {role: info.version for role, info in before.roles.items()},
        }
        versions = role_versions(before, view)
        result["roles"] = {role: {"before": old, "after": new} for role, (old, new) in versions.items()}
        result["targets"] = target_changes(before, view).to_json()
        result["changes"] = describe_changes(before, view)
        env.say(_diff_text(previous.path.name, current.path.name, view, versions, result))
        _refuse_stale(env, view)


# ---- shared -----------------------------------------------------------------------------
def _unusable_on_failure(read: Callable[[], T]) -> T:
    """A cache that cannot be served is "trust not usable" (exit 3), as `trust status` says."""
    try:
        return read()
    except StellaError as error:
        if error.exit_code == 1 and not isinstance(error, UnknownTargetError):
            error.exit_code = EXIT_UNUSABLE
        raise


def _current_view(ctx: typer.Context) -> TrustView:
    """The re-verified view for `trust keys`; a cache that cannot be served is exit 3, as
    `trust status` reports it."""
    from stella_trust._internal.reader import load_view
    from stella_trust._internal.store import Store

    settings = load(ctx)
    return _unusable_on_failure(lambda: load_view(settings, Store.of(settings)))


def _refuse_stale(env: Envelope, view: TrustView) -> None:
    """Shown, then refused like `trust status`: stale trust is exit 3."""
    if not view.usable:
        env.fail(
            TrustUnusableError(
                "trust is stale and must not be used", hint="run `trust sync` or import a fresh bundle"
            )
        )


def _iso(moment: Any) -> str | None:
    """A row's time as ISO 8601 with Z; None for an open end of a validity window."""
    from stella_trust._internal.timefmt import iso

    return iso(moment)


# ---- trust keys ---------------------------------------------------------------------------
USAGE_KINDS = {"rekor": "rekor", "ctfe": "ctlog", "ctlog": "ctlog", "fulcio": "fulcio", "tsa": "tsa"}


def _key_rows(view: TrustView) -> list[dict[str, Any]]:
    """The view's facts as rows: trusted-root entries first, then keys and certificates held
    outside it. `source` names the target a row comes from."""
    trust = view.sigstore
    trusted_root = next((t.name for t in view.targets if t.role == "trusted-root"), None)
    key_targets = {fact.spki_sha256: fact.target for fact in view.keys}
    cert_targets = {cert.sha256: cert.target for cert in view.certificates}  # legacy: a chain's top
    rows: list[dict[str, Any]] = []
    covered_keys: set[str] = set()
    covered_certs: set[str] = set()
    for kind, logs in (("rekor", trust.transparency_logs), ("ctlog", trust.ctlogs)):
        for log in logs:
            covered_keys.add(log.spki_sha256)
            source = trusted_root or key_targets.get(log.spki_sha256, "synthesized trusted root")
            rows.append(_log_row(kind, source, log, view))
    for kind, chains in (("fulcio", trust.certificate_authorities), ("tsa", trust.timestamp_authorities)):
        for chain in chains:
            covered_certs.update(chain.fingerprints)
            source = (
                trusted_root
                or cert_targets.get(chain.fingerprints[-1])
                or (
                    view.endpoints.fulcio.root_cert_target if kind == "fulcio" else "synthesized trusted root"
                )
            )
            rows.append(_chain_row(kind, source, chain, view))
    usage = {t.name: _usage_kind(t.custom) for t in view.targets}
    for fact in view.keys:
        if fact.spki_sha256 in covered_keys:
            continue
        rows.append(
            {
                "kind": usage.get(fact.target) or "key",
                "source": fact.target,
                "url": None,
                "subject": None,
                "algorithm": fact.algorithm,
                "key_id": fact.spki_sha256,
                "spki_sha256": fact.spki_sha256,
                "valid_from": None,
                "valid_until": None,
                "status": "held",
                "in_trusted_root": False,
            }
        )
    for cert in view.certificates:
        if cert.sha256 in covered_certs:
            continue
        rows.append(
            {
                "kind": usage.get(cert.target) or "certificate",
                "source": f"{cert.target} [{cert.position}]",
                "url": None,
                "subject": cert.subject,
                "algorithm": None,
                "key_id": cert.sha256,
                "spki_sha256": None,
                "valid_from": _iso(cert.not_before),
                "valid_until": _iso(cert.not_after),
                "status": "held",
                "in_trusted_root": False,
            }
        )
    return rows


def _usage_kind(custom: dict[str, Any] | None) -> str | None:
    """The row kind a target's `custom.sigstore.usage` field names (`Rekor`, `CTFE`, `Fulcio`, as
    Sigstore's own TUF repository labels its targets); None when it says nothing known."""
    sigstore = (custom or {}).get("sigstore")
    usage = sigstore.get("usage") if isinstance(sigstore, dict) else None
    return USAGE_KINDS.get(usage.lower()) if isinstance(usage, str) else None


def _log_row(kind: str, source: str, log: TransparencyLog, view: TrustView) -> dict[str, Any]:
    """A transparency or CT log as a `trust keys` row: its log ID is the key ID verifiers match
    entries by, and its status is judged at the view's `now`."""
    return {
        "kind": kind,
        "source": source,
        "url": log.base_url,
        "subject": None,
        "algorithm": log.key_algorithm,
        "key_id": log.log_id,
        "spki_sha256": log.spki_sha256,
        "valid_from": _iso(log.valid_from),
        "valid_until": _iso(log.valid_until),
        "status": log.status(view.at),
        "in_trusted_root": True,
        **({"rekor_version": log.rekor_version} if kind == "rekor" else {}),
    }


def _chain_row(kind: str, source: str, chain: CertificateChainFacts, view: TrustView) -> dict[str, Any]:
    """A CA or TSA chain as a `trust keys` row: the leaf-most certificate's subject and fingerprint
    identify it; every fingerprint is kept for `--json`."""
    return {
        "kind": kind,
        "source": source,
        "url": chain.uri,
        "subject": chain.subjects[0] if chain.subjects else None,
        "algorithm": _certificate_algorithm(chain.chain_pems[0]) if chain.chain_pems else None,
        "key_id": chain.fingerprints[0] if chain.fingerprints else None,
        "spki_sha256": None,
        "valid_from": _iso(chain.valid_from),
        "valid_until": _iso(chain.valid_until),
        "status": chain.status(view.at),
        "in_trusted_root": True,
        "fingerprints": list(chain.fingerprints),
        "subjects": list(chain.subjects),
    }


def _certificate_algorithm(pem: str) -> str | None:
    """The algorithm of the certificate's own key, named as key targets are."""
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    from stella_trust._internal.policy.facts import public_key_facts

    try:
        key = x509.load_pem_x509_certificate(pem.encode()).public_key()
        spki = key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    except (ValueError, TypeError):
        return None
    fact = public_key_facts("certificate", spki)
    return fact.algorithm if fact is not None else None


def _table(rows: list[dict[str, Any]]) -> str:
    """`trust keys` as aligned columns; the last column (URL or subject) is not padded."""
    if not rows:
        return "no keys or certificates in the verified trust"
    header = ("KIND", "STATUS", "ALGORITHM", "KEY ID", "VALID", "SOURCE", "URL / SUBJECT")
    lines = [
        (
            row["kind"],
            row["status"],
            row["algorithm"] or "-",
            row["key_id"] or "-",
            f"{row['valid_from'] or 'open'} .. {row['valid_until'] or 'open'}",
            row["source"],
            row["url"] or row["subject"] or "-",
        )
        for row in rows
    ]
    widths = [max(len(str(cells[i])) for cells in [header, *lines]) for i in range(len(header) - 1)]
    return "\n".join(
        "  ".join(
            [
                *(str(cell).ljust(width) for cell, width in zip(cells[:-1], widths, strict=True)),
                str(cells[-1]),
            ]
        )
        for cells in [header, *lines]
    )


# ---- trust diff ---------------------------------------------------------------------------
def _diff_text(
    old: str,
    new: str,
    view: TrustView,
    versions: dict[str, tuple[int | None, int | None]],
    result: dict[str, Any],
) -> str:
    """`trust diff` in words: where the current trust came from, each role's version before and
    after, then the changes (policy/changes.py), or that the content is the same."""
    source = view.source or {}
    where = source.get("url") or source.get("path") or "?"
    how = f" ({source.get('kind', '?')} from {where} at {source.get('at', '?')})" if source else ""
    lines = [f"diff: generation {old} -> {new}{how}"]
    width = max((len(role) for role in versions), default=0)
    for role, (before, after) in versions.items():
        left = f"v{before}" if before is not None else "-"
        right = f"v{after}" if after is not None else "-"
        lines.append(f"  {role.ljust(width)}  {left} -> {right}")
    changes = result["changes"]
    lines.append("changes:" if changes else "changes: none (the trust content is the same)")
    lines += [f"  {change}" for change in changes]
    return "\n".join(lines)
