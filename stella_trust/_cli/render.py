"""Plain-text rendering of a TrustView for humans (scripts use `--json`).

Plain text on purpose: `trust status` runs on every health check of every host and
must start fast; a rich table would import more than the whole verification needs.
"""

from __future__ import annotations

from typing import Any

from stella_trust._internal.timefmt import iso
from stella_trust.sigstore_types import CertificateChainFacts, TransparencyLog
from stella_trust.view import TrustView


def _rows(rows: list[tuple[str, str]], indent: str = "  ") -> list[str]:
    """Label/value rows aligned on the longest label."""
    width = max((len(label) for label, _ in rows), default=0)
    return [f"{indent}{label.ljust(width)}  {value}" for label, value in rows]


def render_mirrors(mirrors: list[dict[str, Any]]) -> str:
    """The mirrors in the order a sync tries them, each with its latest outcome (net/mirrors.py)."""
    lines = ["Mirrors (tried in order)"]
    for mirror in mirrors:
        state = {True: "ok", False: "FAILING", None: "not tried yet"}[mirror["healthy"]]
        lines.append(f"  {mirror['position']}. {mirror['url']}  {state}")
        rows = [("last success", mirror["last_success"] or "never")]
        if mirror["last_error"]:
            rows.append(("last error", f"{mirror['last_error_at']}  {mirror['last_error']}"))
        lines += _rows(rows, indent="     ")
    return "\n".join(lines)


def render_status(view: TrustView, *, show_keys: bool, show_endpoints: bool) -> str:
    """`trust status` as plain text: where the trust came from, its freshness and the earliest
    signed expiry that sets it (decision 3), the roles and targets, then keys and endpoints on
    request."""
    fresh = view.freshness
    lines = ["Trust repository"]
    lines += _rows(
        [
            ("URL", view.tuf_url or "-"),
            ("environment", view.environment or "-"),
            ("offline mode", "yes" if view.offline_mode else "no"),
            ("freshness", fresh.state.upper()),
            ("expires", f"{iso(fresh.expires)} ({fresh.earliest_role}, earliest signed expiry)"),
            ("stale after", f"{iso(fresh.stale_after)}"),
            ("last sync", iso(view.last_sync) or "never"),
            ("last error", view.last_error or "-"),
            ("source", _source(view)),
            ("trust sources", ", ".join(view.sources)),
            ("service map", view.service_map.source if view.service_map else "-"),
        ]
    )
    lines.append("Metadata")
    lines += _rows(
        [(role, f"v{info.version}  expires {iso(info.expires)}") for role, info in view.roles.items()]
    )
    lines.append("Targets")
    lines += _rows([(t.name, f"{t.role:<11} {t.length:>7} B  sha256 {t.sha256[:16]}…") for t in view.targets])
    if show_keys:
        lines.append("Public keys")
        for key in view.keys:
            lines += _rows([(key.target, f"{key.algorithm}  spki-sha256 {key.spki_sha256}")])
        lines.append("Certificates")
        for cert in view.certificates:
            lines.append(f"  {cert.target} [{cert.position}]{'  CA' if cert.is_ca else ''}")
            lines += _rows(
                [
                    ("subject", cert.subject),
                    ("issuer", cert.issuer),
                    ("valid", f"{iso(cert.not_before)} .. {iso(cert.not_after)}"),
                    ("sha256", cert.sha256),
                ],
                indent="    ",
            )
    if show_keys:
        lines += _sigstore_lines(view)
    if show_endpoints:
        lines.append("Endpoints" + (f" (environment {view.environment})" if view.environment else ""))
        for service, fields in view.endpoints.services.items():
            lines.append(f"  {service}")
            lines += _rows([(k, str(v)) for k, v in fields.items()], indent="    ")
        services = view.sigstore.services
        if services:
            lines.append("Signing config services")
            rows: list[tuple[str, str]] = [
                (s.kind, f"{s.url}  v{s.major_api_version}  {_window(s, view)}") for s in services
            ]
            lines += _rows(rows)
    return "\n".join(lines)


def _window(entry: Any, view: TrustView) -> str:
    """`active|retired|not-yet-valid  from .. until` for anything with a validity window."""
    until = iso(entry.valid_until) if entry.valid_until else "open"
    return f"{entry.status(view.at)}  {iso(entry.valid_from) or '-'} .. {until}"


def _sigstore_lines(view: TrustView) -> list[str]:
    """Every log, CA, CT log and TSA of the trusted root; retired ones shown, not hidden."""
    trust = view.sigstore
    lines = ["Transparency logs"]
    for log in trust.transparency_logs:
        version = f"rekor v{log.rekor_version}" if log.rekor_version else "rekor"
        lines += _log_lines(log, view, f"  ({version})")
    lines.append("Certificate authorities")
    for ca in trust.certificate_authorities:
        lines += _chain_lines(ca, view)
    lines.append("CT logs")
    for log in trust.ctlogs:
        lines += _log_lines(log, view, "")
    lines.append("Timestamp authorities")
    for tsa in trust.timestamp_authorities:
        lines += _chain_lines(tsa, view)
    return lines


def _log_lines(log: TransparencyLog, view: TrustView, suffix: str) -> list[str]:
    """A log's URL, then its log ID, key algorithm and validity window at the view's `now`."""
    rows = [("log id", log.log_id), ("key", log.key_algorithm), ("valid", _window(log, view))]
    return [f"  {log.base_url}{suffix}", *_rows(rows, indent="    ")]


def _chain_lines(authority: CertificateChainFacts, view: TrustView) -> list[str]:
    """A CA or TSA chain's URI, then its validity window and every subject, leaf-most first."""
    rows = [("valid", _window(authority, view)), *(("subject", s) for s in authority.subjects)]
    return [f"  {authority.uri or '-'}", *_rows(rows, indent="    ")]


def _source(view: TrustView) -> str:
    """Where the held trust came from (a sync's URL or a bundle's path, when, and the manifest
    digest)."""
    source = view.source or {}
    if not source:
        return "-"
    where = source.get("url") or source.get("path") or "?"
    text = f"{source.get('kind', '?')} from {where} at {source.get('at', '?')}"
    if source.get("manifest_sha256"):
        text += f" (manifest sha256 {source['manifest_sha256']})"
    return text
