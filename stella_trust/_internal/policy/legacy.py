"""The legacy Sigstore targets as a trust source (docs/design.md, Trust sources; decision 21).

A repository without `trusted_root.json` may still publish Sigstore's keys and chains as
separate targets, each marked with TUF custom metadata
`{"sigstore": {"usage": "Rekor"|"Fulcio"|"CTFE"|"TSA", "status": "Active"|"Expired", "uri": URL}}`
(cosign `pkg/cosign/tuf`, sigstore/scaffolding; cosign reads both words case-insensitively).
This module picks those targets from the signed target info and decides their validity
windows; `sigstore/legacyroot.py` turns them into a trusted root.

Windows. Custom metadata carries no date, so an `Expired` mark says only "no longer used, as of
some moment before this targets version was signed". The one moment the host can vouch for is
when it first verified a targets version marking the target Expired: its window ends then
(`expired_record`, kept in state.json by the writer). An `Active` target's window is open. A
status other than these two is treated as Expired (its window bounded, never open). Usage
`Unknown` (or any other word) is not trust material and is ignored.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from types import MappingProxyType
from typing import NamedTuple

from tuf.api.metadata import TargetFile

from stella_trust._internal.policy.inputs import VerifiedTargets
from stella_trust._internal.policy.trustroot import SigstoreSource
from stella_trust._internal.timefmt import iso

USAGES = {"rekor": "Rekor", "fulcio": "Fulcio", "ctfe": "CTFE", "tsa": "TSA"}
ACTIVE, EXPIRED = "Active", "Expired"


class LegacyTarget(NamedTuple):
    """One target marked for Sigstore: its usage and status as cosign spells them, the service
    URL it names (may be empty) and the SHA-256 that identifies its bytes."""

    name: str
    usage: str  # Rekor | Fulcio | CTFE | TSA
    status: str  # Active | Expired (anything else counts as Expired)
    uri: str
    sha256: str

    @property
    def expired(self) -> bool:
        """Whether its window is bounded (anything but Active)."""
        return self.status != ACTIVE

    @property
    def role(self) -> str:
        """Why the host holds it, as `status` lists it: `legacy-rekor`, `legacy-fulcio`, ..."""
        return f"legacy-{self.usage.lower()}"


def legacy_mark(name: str, info: TargetFile) -> LegacyTarget | None:
    """The target's Sigstore mark, or None when it carries none (or an unknown usage)."""
    custom = info.unrecognized_fields.get("custom")
    mark = custom.get("sigstore") if isinstance(custom, dict) else None
    if not isinstance(mark, dict):
        return None
    usage, status, uri = mark.get("usage"), mark.get("status"), mark.get("uri")
    if not isinstance(usage, str) or usage.lower() not in USAGES:
        return None
    status_word = status.capitalize() if isinstance(status, str) else "Unknown"
    return LegacyTarget(
        name=name,
        usage=USAGES[usage.lower()],
        status=status_word,
        uri=uri if isinstance(uri, str) else "",
        sha256=info.hashes.get("sha256", ""),
    )


def legacy_targets(info: Mapping[str, TargetFile]) -> tuple[LegacyTarget, ...]:
    """Every marked target, in name order (the synthesised trusted root is then stable)."""
    marks = (legacy_mark(name, info[name]) for name in sorted(info))
    return tuple(mark for mark in marks if mark is not None)


def publishes_legacy(targets: Iterable[LegacyTarget]) -> bool:
    """A repository is a legacy source when it marks at least one Rekor key (cosign needs one
    to verify anything; a lone `artifact.pub` does not make an instance)."""
    return any(target.usage == "Rekor" for target in targets)


def expired_record(
    previous: Mapping[str, str], targets: Iterable[LegacyTarget], now: datetime
) -> dict[str, str]:
    """When each Expired-marked target (by SHA-256) was first seen so: kept from `previous`,
    `now` for a mark seen for the first time. A target no longer marked Expired drops out (Active
    again, or gone); if it is marked Expired again later, that later moment is its end."""
    stamp = iso(now)
    assert stamp is not None
    return {t.sha256: previous.get(t.sha256, stamp) for t in targets if t.expired}


def window_ends(
    targets: Iterable[LegacyTarget], seen: Mapping[str, datetime], now: datetime
) -> dict[str, datetime | None]:
    """Each target's window end: None for Active; for Expired, when the host first saw it
    Expired, never later than `now` (a record from the future is a clock stepped back or an
    edited state.json: it cannot push a window past the present). An Expired target the
    record does not hold (state.json lost) gets the earliest end, an empty window, until the
    next sync records it: unsigned state can narrow trust, never widen it past `now`."""
    ends: dict[str, datetime | None] = {}
    for target in targets:
        if not target.expired:
            ends[target.name] = None
        else:
            first = seen.get(target.sha256)
            ends[target.name] = (
                min(first, now) if first is not None else datetime.min.replace(tzinfo=now.tzinfo)
            )
    return ends


def from_legacy(
    targets: VerifiedTargets, seen: Mapping[str, datetime], now: datetime
) -> tuple[SigstoreSource, dict[str, str]]:
    """The trusted root synthesised from the legacy targets the generation holds, and the role
    of each (`legacy-rekor`, ...)."""
    from stella_trust._internal.sigstore.legacyroot import LegacyMaterial, synthesize_legacy_root
    from stella_trust._internal.sigstore.trusted_root import parse_trusted_root

    marked = legacy_targets(targets.info)
    ends = window_ends(marked, seen, now)
    groups: dict[str, list[LegacyMaterial]] = {usage: [] for usage in USAGES.values()}
    for target in marked:
        groups[target.usage].append(
            LegacyMaterial(target.name, targets.bytes_of(target.name), target.uri, ends[target.name])
        )
    data, log_targets = synthesize_legacy_root(
        groups["Rekor"], groups["Fulcio"], groups["CTFE"], groups["TSA"], check=False
    )
    from stella_trust._internal.sigstore.legacyroot import SYNTHESISED

    trust = parse_trusted_root(data, target=SYNTHESISED)
    active_fulcio = [t.name for t in marked if t.usage == "Fulcio" and not t.expired]
    fulcio = next((n for n in active_fulcio if "intermediate" not in n and "leaf" not in n), None)
    fulcio = fulcio or next(iter(active_fulcio), None)
    source = SigstoreSource(
        trust,
        data,
        None,
        None,
        None,
        log_targets=MappingProxyType(log_targets),
        ca_target=fulcio,
    )
    return source, {t.name: t.role for t in marked}
