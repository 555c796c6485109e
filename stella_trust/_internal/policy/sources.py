"""Which trust sources a repository offers: a StellaOps service map, Sigstore's own
`trusted_root.json` (+ signing config), or both; else Sigstore's legacy targets (keys and
chains marked with custom metadata, policy/legacy.py) (docs/design.md, Trust sources).

`trust_source: auto` decides from the target names the signed metadata lists (and, only when
neither named source is there, from the targets' signed custom metadata), so sync, bundle
import and every read reach the same answer from the same verified metadata.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from stella_trust._internal.policy.inputs import LEGACY, SERVICE_MAP, SIGSTORE, TrustPolicy
from stella_trust.errors import ServiceMapError


def lists(name: str, names: Iterable[str] | Callable[[str], bool]) -> bool:
    """True if `name` (or its single `<name>.<ext>`) is among `names`.

    `names` may be a predicate that answers for one name (a sync asks python-tuf for the
    exact name before it lists every target: listing 100k names is slow). No close-name suggestions: this is
    a question, not an error (computing them costs seconds at 100k targets)."""
    if callable(names):
        return names(name)
    listed = names if isinstance(names, (set, frozenset, dict)) else set(names)
    if name in listed:
        return True
    prefix = name + "."
    return sum(1 for listed_name in listed if listed_name.startswith(prefix)) == 1


def source_kinds(
    policy: TrustPolicy,
    names: Iterable[str] | Callable[[str], bool],
    legacy: Callable[[], bool] = lambda: False,
) -> tuple[str, ...]:
    """The configured kinds, or (auto) the kinds the repository publishes; none is an error.
    `names`: the listed target names, or a predicate answering `lists` for one name; `legacy`:
    whether the signed metadata marks legacy Sigstore targets (asked only when needed: it reads
    every target's custom metadata).

    `legacy` is how cosign reads such a repository: its `trusted_root.json` when it publishes
    one, else the legacy targets. So a host configured `legacy` (what `auto` records) moves to
    `sigstore` when the repository adds a trusted root, as cosign does (decision 21)."""
    if policy.trust_source == LEGACY:
        if lists(policy.sigstore_trusted_root_target, names if callable(names) else set(names)):
            return (SIGSTORE,)
        if not legacy():
            raise ServiceMapError(
                f"Legacy Sigstore targets not found: the repository marks no target with "
                f'{{"sigstore": {{"usage": "Rekor", ...}}}} custom metadata, and publishes no '
                f"{policy.sigstore_trusted_root_target!r}",
                hint="check tuf_url, or set trust_source to what the repository publishes",
            )
        return (LEGACY,)
    if policy.trust_source == SERVICE_MAP:
        return (SERVICE_MAP,)
    if policy.trust_source == SIGSTORE:
        return (SIGSTORE,)
    if policy.trust_source == "both":
        return (SERVICE_MAP, SIGSTORE)
    listed = names if callable(names) else set(names)
    found = []
    if policy.local_service_map is not None or lists(policy.service_map_target, listed):
        found.append(SERVICE_MAP)
    if lists(policy.sigstore_trusted_root_target, listed):
        found.append(SIGSTORE)
    if not found and legacy():
        found.append(LEGACY)
    if not found:
        raise ServiceMapError(
            f"Service map not found: the repository publishes neither {policy.service_map_target!r} "
            f"(StellaOps service map) nor {policy.sigstore_trusted_root_target!r} (Sigstore trusted root), "
            "nor legacy Sigstore targets (custom metadata sigstore.usage)",
            hint="check tuf_url; set service_map_target or sigstore_trusted_root_target if the "
            "repository names them differently",
        )
    return tuple(found)
