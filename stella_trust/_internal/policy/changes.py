"""What changed between two verified views, in words: an operator reads a sync's result, not a diff.

Pure: two `TrustView`s in, one line per change out, in a fixed order (root, trust
sources, Rekor key, Fulcio chain, endpoints, trusted-root entries, targets). `sync`
calls it with the generation it replaces and the one it commits, `trust diff` with the
previous and the current generation, the agent logs the lines. Both views must have been
built from verified bytes: the words describe trust, never an unverified file.

Version bumps of timestamp, snapshot and targets are not "changes" in this sense (they
happen on every publication; the sync line and `trust diff` show them); a new root
version is.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from stella_trust._internal.timefmt import iso
from stella_trust.sigstore_types import CertificateChainFacts, TransparencyLog
from stella_trust.view import TargetEntry, TrustView

SHORT = 16  # hex digits of a log ID or digest shown in a line (the JSON of `trust keys` has all)

# Endpoint fields a dedicated line already describes (the Rekor key and the Fulcio chain).
_COVERED_FIELDS = {"rekor": {"log_id", "public_key_target"}, "fulcio": {"root_cert_target"}}

E = TypeVar("E")


@dataclass(frozen=True)
class TargetChanges:
    """Target names held after but not before, before but not after, and in both with
    other bytes (length or SHA-256), each sorted."""

    added: tuple[str, ...]
    removed: tuple[str, ...]
    changed: tuple[str, ...]

    def to_json(self) -> dict[str, list[str]]:
        """Plain lists for the JSON envelope (`trust diff --json`, the sync result)."""
        return {"added": list(self.added), "removed": list(self.removed), "changed": list(self.changed)}


def short(hex_text: str) -> str:
    """A log ID or digest cut to `SHORT` hex digits: enough to tell two keys apart in one line; the
    JSON of `trust keys` has them whole."""
    return hex_text if len(hex_text) <= SHORT else hex_text[:SHORT] + "…"


def target_changes(before: TrustView | None, after: TrustView) -> TargetChanges:
    """Targets added, removed, or held with other bytes, judged by the signed length and SHA-256
    (never by name alone); `before` None (first trust) makes every target added."""
    old = {t.name: t for t in before.targets} if before is not None else {}
    new = {t.name: t for t in after.targets}
    return TargetChanges(
        added=tuple(sorted(set(new) - set(old))),
        removed=tuple(sorted(set(old) - set(new))),
        changed=tuple(sorted(n for n in set(old) & set(new) if _differs(old[n], new[n]))),
    )


def role_versions(before: TrustView | None, after: TrustView) -> dict[str, tuple[int | None, int | None]]:
    """(version before, version after) of every role either view holds, top-level roles first."""
    old = dict(before.roles) if before is not None else {}
    names = list(after.roles) + [role for role in old if role not in after.roles]
    return {
        role: (
            old[role].version if role in old else None,
            after.roles[role].version if role in after.roles else None,
        )
        for role in names
    }


def describe_changes(before: TrustView | None, after: TrustView) -> list[str]:
    """One line per change from `before` to `after`; `before` None means first trust."""
    if before is None:
        root = after.roles["root"].version if "root" in after.roles else "?"
        count = len(after.targets)
        return [f"trust established: root v{root}, {count} target{'' if count == 1 else 's'}"]
    lines: list[str] = []
    lines += _root(before, after)
    if before.sources != after.sources:
        lines.append(f"trust sources changed: {_names(before.sources)} -> {_names(after.sources)}")
    old_map = before.service_map.source if before.service_map else None
    new_map = after.service_map.source if after.service_map else None
    if old_map != new_map:
        lines.append(f"service map changed: {old_map or 'none'} -> {new_map or 'none'}")
    rekor_lines, covered_logs = _rekor(before, after)
    lines += rekor_lines
    old_chain, new_chain = before.endpoints.fulcio.root_cert_target, after.endpoints.fulcio.root_cert_target
    if old_chain != new_chain:
        lines.append(f"Fulcio chain changed: {old_chain} -> {new_chain}")
    lines += _endpoints(before.endpoints.services, after.endpoints.services)
    lines += _trusted_root(before, after, covered_logs)
    lines += _targets(before, after)
    return lines


# ---- the pieces ---------------------------------------------------------------------------
def _root(before: TrustView, after: TrustView) -> list[str]:
    """A new root version is worth a line (its keys or thresholds may have rotated); version bumps
    of the other top-level roles are not, they come with every publication."""
    old, new = before.roles.get("root"), after.roles.get("root")
    if old is None or new is None or old.version == new.version:
        return []
    return [f"root rotated v{old.version} -> v{new.version}"]


def _rekor(before: TrustView, after: TrustView) -> tuple[list[str], set[str]]:
    """The Rekor key clients check log entries against: by target name, else by log ID."""
    old, new = before.endpoints.rekor, after.endpoints.rekor
    if old.public_key_target == new.public_key_target and old.log_id == new.log_id:
        return [], set()
    if old.public_key_target == new.public_key_target:
        line = (
            f"Rekor key changed: log ID {short(old.log_id)} -> {short(new.log_id)} "
            f"(in {new.public_key_target})"
        )
    elif old.log_id == new.log_id:
        line = (
            f"Rekor key target changed: {old.public_key_target} -> {new.public_key_target} "
            f"(same key, log ID {short(new.log_id)})"
        )
    else:
        line = (
            f"Rekor key changed: {old.public_key_target} -> {new.public_key_target} "
            f"(log ID {short(old.log_id)} -> {short(new.log_id)})"
        )
    return [line], {old.log_id, new.log_id}


def _endpoints(before: Mapping[str, Mapping[str, Any]], after: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """Services added or removed, and each changed field; fields the Rekor key or Fulcio chain line
    already described are not said twice."""
    lines = []
    for service in sorted(set(before) - set(after)):
        lines.append(f"service removed: {service}{_where(before[service])}")
    for service in sorted(set(after) - set(before)):
        lines.append(f"service added: {service}{_where(after[service])}")
    for service in sorted(set(before) & set(after)):
        old, new = before[service], after[service]
        skip = _COVERED_FIELDS.get(service, set())
        for name in sorted((set(old) | set(new)) - skip):
            if old.get(name) != new.get(name):
                lines.append(f"{service} {name} {_value(old.get(name))} -> {_value(new.get(name))}")
    return lines


def _trusted_root(before: TrustView, after: TrustView, covered_logs: set[str]) -> list[str]:
    """Logs, CAs, CT logs and TSAs the verifiers' trusted root gained, lost or retired.
    Logs the Rekor key line already named are not repeated."""
    old, new = before.sigstore, after.sigstore
    lines = _entries(
        "transparency log",
        old.transparency_logs,
        new.transparency_logs,
        key=lambda log: log.log_id,
        label=_log_label,
        skip=covered_logs,
    )
    lines += _entries(
        "certificate authority",
        old.certificate_authorities,
        new.certificate_authorities,
        key=lambda ca: ",".join(ca.fingerprints),
        label=_chain_label,
    )
    lines += _entries("CT log", old.ctlogs, new.ctlogs, key=lambda log: log.log_id, label=_log_label)
    lines += _entries(
        "timestamp authority",
        old.timestamp_authorities,
        new.timestamp_authorities,
        key=lambda tsa: ",".join(tsa.fingerprints),
        label=_chain_label,
    )
    return lines


def _entries(
    what: str,
    before: Sequence[E],
    after: Sequence[E],
    *,
    key: Callable[[E], str],
    label: Callable[[E], str],
    skip: Iterable[str] = (),
) -> list[str]:
    """One kind of trusted-root entry gained, lost or given another validity window, matched by
    identity (log ID, certificate fingerprints), never by position: a reordered file is no change."""
    skipped = set(skip)
    old = {key(entry): entry for entry in before}
    new = {key(entry): entry for entry in after}
    lines = []
    for ident in [k for k in new if k not in old and k not in skipped]:
        lines.append(f"{what} added: {label(new[ident])}")
    for ident in [k for k in old if k not in new and k not in skipped]:
        lines.append(f"{what} removed: {label(old[ident])}")
    for ident in [k for k in new if k in old]:
        line = _window_change(what, label(new[ident]), old[ident], new[ident])
        if line is not None:
            lines.append(line)
    return lines


def _window_change(what: str, label: str, old: Any, new: Any) -> str | None:
    """An end date newly set is a retirement; anything else is a changed window."""
    if (old.valid_from, old.valid_until) == (new.valid_from, new.valid_until):
        return None
    if old.valid_until is None and new.valid_until is not None and old.valid_from == new.valid_from:
        return f"{what} retired: {label}, valid until {iso(new.valid_until)}"
    return f"{what} validity changed: {label}, {_window(old)} -> {_window(new)}"


def _targets(before: TrustView, after: TrustView) -> list[str]:
    """One line per target added, removed or changed, saying whether its digest or only its length
    differs."""
    changes = target_changes(before, after)
    old = {t.name: t for t in before.targets}
    new = {t.name: t for t in after.targets}
    lines = [f"target added: {name}" for name in changes.added]
    lines += [f"target removed: {name}" for name in changes.removed]
    for name in changes.changed:
        a, b = old[name], new[name]
        detail = (
            f"sha256 {short(a.sha256)} -> {short(b.sha256)}"
            if a.sha256 != b.sha256
            else f"length {a.length} -> {b.length}"
        )
        lines.append(f"target changed: {name} ({detail})")
    return lines


# ---- words -------------------------------------------------------------------------------
def _differs(a: TargetEntry, b: TargetEntry) -> bool:
    """Other bytes: the signed SHA-256 or length differs."""
    return a.sha256 != b.sha256 or a.length != b.length


def _log_label(log: TransparencyLog) -> str:
    """A log in words: URL, short log ID (what verifiers match entries by) and key algorithm."""
    return f"{log.base_url} (log ID {short(log.log_id)}, {log.key_algorithm})"


def _chain_label(chain: CertificateChainFacts) -> str:
    """A CA or TSA in words: its URI and its leaf-most certificate's subject."""
    subject = chain.subjects[0] if chain.subjects else "no certificate"
    return f"{chain.uri or '-'} ({subject})"


def _window(entry: Any) -> str:
    """A validity window in words; an unset end is `open`."""
    return f"{iso(entry.valid_from) or 'open'} .. {iso(entry.valid_until) or 'open'}"


def _where(fields: Mapping[str, Any]) -> str:
    """` (URL)` after a service's name when the service has one, else nothing."""
    url = fields.get("url")
    return f" ({url})" if isinstance(url, str) and url else ""


def _value(value: Any) -> str:
    """An endpoint field's value in words; a missing or empty one is `(none)`."""
    if value is None:
        return "(none)"
    if isinstance(value, (list, tuple)):
        return ", ".join(str(v) for v in value) or "(none)"
    return str(value)


def _names(values: Iterable[str]) -> str:
    """Trust source kinds in words; none at all is `none`."""
    return ", ".join(values) or "none"
