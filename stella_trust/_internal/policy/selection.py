"""Which targets a host holds: the service map, what it references, and the pins.

One policy for every path that builds a generation (online sync, bundle import), so a
host ends up with the same targets whichever way its trust arrived. Subclasses say
where target info and bytes come from.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from tuf.api.metadata import TargetFile

from stella_trust import errors
from stella_trust._internal.policy.inputs import LEGACY, SERVICE_MAP, SIGSTORE, TrustPolicy
from stella_trust._internal.policy.legacy import LegacyTarget, legacy_mark, publishes_legacy
from stella_trust._internal.policy.names import match_name
from stella_trust._internal.policy.servicemap import (
    local_service_map,
    parse_service_map,
    referenced_targets,
)
from stella_trust._internal.policy.sources import lists, source_kinds


@dataclass(frozen=True)
class Collected:
    """What a selection decided: each held target with the reason it is held, the trust source kinds
    found, and the pins the repository retired."""

    wanted: dict[str, str]  # target name -> why the host holds it
    sources: tuple[str, ...]
    retired_pins: tuple[str, ...]  # pins the repository no longer lists (held before)
    legacy: tuple[LegacyTarget, ...] = ()  # the legacy targets held (LEGACY source only)


def retired_pin_warning(pin: str) -> str:
    """What a sync or an import says of a pin the repository stopped listing."""
    return (
        f"pinned target {pin!r} was retired by the repository (no longer listed); "
        "dropped from the cache — remove it from pinned_targets"
    )


class TargetSelection(ABC):
    """Collects the wanted targets into a working generation, each fetched once."""

    def __init__(self) -> None:
        """Nothing stored yet; `pull` remembers what it stored so nothing is fetched twice."""
        self._stored: dict[str, Path | str] = {}
        self._legacy: tuple[LegacyTarget, ...] | None = None

    # ---- supplied by the source ----------------------------------------------------
    @abstractmethod
    def find(self, name: str) -> TargetFile | None:
        """Verified target info for an exact name, or None."""

    @abstractmethod
    def names(self) -> list[str]:
        """Candidate names for stem matching."""

    @abstractmethod
    def store(self, name: str, info: TargetFile) -> Path | str:
        """Put the verified bytes of `name` into the working generation; return the path (a
        name is enough: the selection only hands it back to `read_stored`)."""

    @abstractmethod
    def read_stored(self, path: Path | str) -> bytes:
        """The bytes `store` put at `path` (the service map is parsed to find what it names).
        The source does the I/O; this class only decides what to hold."""

    # ---- the policy ----------------------------------------------------------------------
    def lookup(self, name: str) -> tuple[str, TargetFile]:
        """Exact name, else the single `<name>.<ext>` (docs/design.md, Names)."""
        info = self.find(name)
        if info is not None:
            return name, info
        full = match_name(name, self.names())
        info = self.find(full)
        if info is None:  # listed somewhere, but not reachable through the delegations
            raise errors.UnknownTargetError(f"Unknown target {name!r}")
        return full, info

    def offers(self, name: str) -> bool:
        """True if the repository lists `name` or its single `<name>.<ext>`: the exact name
        is asked first, so the whole listing is read only when a stem must be matched."""
        return self.find(name) is not None or lists(name, self.names())

    def pull(self, name: str, info: TargetFile) -> Path | str:
        """Store a target once, however many reasons the policy has to hold it (referenced by the
        service map and pinned, say)."""
        if name not in self._stored:  # a target both referenced and pinned is fetched once
            self._stored[name] = self.store(name, info)
        return self._stored[name]

    def collect(
        self, policy: TrustPolicy, held: Iterable[str] = (), retired_before: Iterable[str] = ()
    ) -> Collected:
        """Store every wanted target; say why each is held, the source kinds, and the pins
        the repository retired.

        A pin that the host held before (`held`: the targets of the generation being
        replaced) and that the signed metadata no longer lists was retired upstream: that is
        the repository's signed word, so it is dropped and reported, not a failed sync that
        would freeze every host pinning it. It stays retired on every later sync (`retired_before`:
        the pins recorded as retired at the last commit, state.json) until the repository
        lists it again, when it is simply held again. A pin never held that does not exist
        is a typo: still an error. `held` is iterated only when a pin is missing (a sync passes
        a listing of the held generation that reads the directory then, not on every sync).
        """
        sources = source_kinds(policy, self.offers, lambda: publishes_legacy(self.legacy_marks()))
        retired: list[str] = []
        wanted: dict[str, str] = {}
        if SERVICE_MAP in sources:
            self._collect_service_map(policy, wanted)
        if SIGSTORE in sources:
            self._collect_sigstore(policy, wanted)
        if LEGACY in sources:
            for mark in self.legacy_marks():
                self.pull(*self.lookup(mark.name))
                wanted[mark.name] = mark.role
        for pin in policy.pins(sources):
            try:
                name, info = self.lookup(pin)
            except errors.UnknownTargetError:
                if not lists(pin, {*held, *retired_before}):
                    raise
                retired.append(pin)
                continue
            self.pull(name, info)
            wanted.setdefault(name, "pinned")
        legacy = self.legacy_marks() if LEGACY in sources else ()
        return Collected(wanted, sources, tuple(retired), legacy)

    def legacy_marks(self) -> tuple[LegacyTarget, ...]:
        """Every listed target marked for Sigstore by its signed custom metadata (policy/legacy.py),
        read once: only a repository with neither a service map nor a trusted root is asked."""
        if self._legacy is None:
            marks = []
            for name in sorted(self.names()):
                info = self.find(name)
                mark = legacy_mark(name, info) if info is not None else None
                if mark is not None:
                    marks.append(mark)
            self._legacy = tuple(marks)
        return self._legacy

    def _collect_service_map(self, policy: TrustPolicy, wanted: dict[str, str]) -> None:
        """The service map (the operator's local one if configured, else the signed target) and
        every target it references for this host's environment; a missing service map is a
        `ServiceMapError`, not an unknown pin."""
        if policy.local_service_map is not None:
            references = referenced_targets(local_service_map(policy.local_service_map), policy.environment)
        else:
            try:
                name, info = self.lookup(policy.service_map_target)
            except errors.UnknownTargetError as exc:
                raise errors.ServiceMapError(f"Service map not found: {exc.message}") from exc
            references = self.service_map_references(name, info, policy.environment)
            wanted[name] = "service-map"
        for reference in references:
            name, info = self.lookup(reference)
            self.pull(name, info)
            wanted.setdefault(name, "referenced")

    def service_map_references(self, name: str, info: TargetFile, environment: str | None) -> list[str]:
        """The targets the signed service map `name` references for `environment`, from its bytes
        as stored (a malformed map is a `ServiceMapError`)."""
        service_map = parse_service_map(self.read_stored(self.pull(name, info)), name)
        return referenced_targets(service_map, environment)

    def _collect_sigstore(self, policy: TrustPolicy, wanted: dict[str, str]) -> None:
        """trusted_root.json is required; the first signing config the repository lists
        (v0.2, else the older signing_config.json) is kept beside it."""
        try:
            name, info = self.lookup(policy.sigstore_trusted_root_target)
        except errors.UnknownTargetError as exc:
            raise errors.ServiceMapError(f"Sigstore trusted root not found: {exc.message}") from exc
        self.pull(name, info)
        wanted[name] = "trusted-root"
        for candidate in policy.sigstore_signing_config_targets:
            if self.offers(candidate):
                name, info = self.lookup(candidate)
                self.pull(name, info)
                wanted.setdefault(name, "signing-config")
                break
