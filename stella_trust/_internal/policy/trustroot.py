"""One Sigstore view for both trust sources (docs/design.md, Trust sources).

A `sigstore` repository publishes trusted_root.json (+ signing config): its verified bytes
are the trust every verifier reads. A `service-map` repository names a Rekor key and a
Fulcio chain instead: the same trusted_root.json is synthesised from them (log ID = SHA-256
of the key's SPKI), so `status`, `export` and `verify` work the same for both.
"""

from collections.abc import Callable, Mapping
from datetime import datetime
from types import MappingProxyType

from stella_trust._internal.policy.inputs import TrustPolicy, Value, VerifiedTargets
from stella_trust._internal.policy.sources import lists
from stella_trust._internal.sigstore.trusted_root import parse_trusted_root
from stella_trust.errors import ServiceMapError
from stella_trust.sigstore_types import SigstoreTrust, TransparencyLog
from stella_trust.view import Endpoints, FulcioEndpoint, KeyFact, RekorEndpoint

_NO_LOG_TARGETS: Mapping[str, str] = MappingProxyType({})


class SigstoreSource(Value):
    """What the verifiers' trust is made of: the parsed facts, and the exact bytes they were parsed
    from (handed on to sigstore-python unchanged), with the targets they came from. A `Value`, as
    policy/inputs.py's values are (a frozen dataclass costs every start-up ~0.8 ms)."""

    __slots__ = (
        "ca_target",
        "log_targets",
        "signing_config_json",
        "signing_config_target",
        "trust",
        "trusted_root_json",
        "trusted_root_target",
    )
    trust: SigstoreTrust
    trusted_root_json: bytes
    signing_config_json: bytes | None
    trusted_root_target: str | None  # None when synthesised from a service map or legacy targets
    signing_config_target: str | None
    # synthesised from legacy targets: the target each log ID came from, and the active Fulcio chain's
    log_targets: Mapping[str, str]
    ca_target: str | None

    def __init__(
        self,
        trust: SigstoreTrust,
        trusted_root_json: bytes,
        signing_config_json: bytes | None,
        trusted_root_target: str | None,
        signing_config_target: str | None,
        log_targets: Mapping[str, str] = _NO_LOG_TARGETS,
        ca_target: str | None = None,
    ) -> None:
        """The parsed trust, its bytes and where they came from."""
        self._set(
            trust=trust,
            trusted_root_json=trusted_root_json,
            signing_config_json=signing_config_json,
            trusted_root_target=trusted_root_target,
            signing_config_target=signing_config_target,
            log_targets=log_targets,
            ca_target=ca_target,
        )


def from_repository(
    policy: TrustPolicy, targets: VerifiedTargets, resolve: Callable[[str], str]
) -> SigstoreSource:
    """The repository's own trusted_root.json and the first signing config it holds."""
    stored = list(targets.info)
    root_target = resolve(policy.sigstore_trusted_root_target)
    config_target = next(
        (resolve(name) for name in policy.sigstore_signing_config_targets if lists(name, stored)), None
    )
    root = targets.bytes_of(root_target)
    config = targets.bytes_of(config_target) if config_target else None
    trust = parse_trusted_root(root, config, target=root_target)
    return SigstoreSource(trust, root, config, root_target, config_target)


def from_service_map(
    endpoints: Endpoints, keys: dict[str, KeyFact], targets: VerifiedTargets, resolve: Callable[[str], str]
) -> SigstoreSource:
    """A trusted_root.json synthesised from the service map's Rekor key and Fulcio chain
    (plus a `ctlog` service's key when the map names one)."""
    rekor = endpoints.rekor
    chain = targets.bytes_of(endpoints.fulcio.root_cert_target).decode("ascii", errors="replace")
    ctlog_keys = []
    ctlog = endpoints.services.get("ctlog") or {}
    if isinstance(ctlog.get("public_key_target"), str) and isinstance(ctlog.get("url"), str):
        fact = keys.get(resolve(ctlog["public_key_target"]))
        if fact is None:
            raise ServiceMapError(
                f"Service map: ctlog.public_key_target {ctlog['public_key_target']!r} is not a PEM public key"
            )
        ctlog_keys.append((ctlog["url"], fact.pem))
    from stella_trust._internal.sigstore.exports import synthesize_trusted_root  # service maps only

    data = synthesize_trusted_root(
        rekor.url, keys[rekor.public_key_target].pem, endpoints.fulcio.url, [chain], ctlog_keys, check=False
    )
    trust = parse_trusted_root(data, target="synthesized trusted_root.json")
    return SigstoreSource(trust, data, None, None, None)


def preferred_rekor(trust: SigstoreTrust, now: datetime) -> TransparencyLog | None:
    """The Rekor log a client talking the v1 API would use: active v1, else any active."""
    active = [log for log in trust.transparency_logs if log.active(now)]
    return next((log for log in active if log.rekor_version == 1), active[0] if active else None)


def endpoints_from_sigstore(source: SigstoreSource, now: datetime) -> Endpoints:
    """Service endpoints for a repository without a service map, from its trusted root and
    signing config (the same typed shape attestors already read)."""
    trust = source.trust
    target = source.trusted_root_target or "trusted_root.json"
    log = preferred_rekor(trust, now)
    if log is None:
        raise ServiceMapError(f"{target}: no Rekor log is active at {now:%Y-%m-%dT%H:%M:%SZ}")
    active_cas = [ca for ca in trust.certificate_authorities if ca.active(now) and ca.uri]
    ca_services = [s for s in trust.services if s.kind == "ca" and s.active(now)]
    fulcio_url = ca_services[0].url if ca_services else active_cas[0].uri if active_cas else ""
    key_target = source.log_targets.get(log.log_id, target)
    ca_target = source.ca_target or target
    services: dict[str, dict[str, object]] = {
        "rekor": {
            "url": log.base_url,
            "log_id": log.log_id,
            "public_key_target": key_target,
            "api_version": log.rekor_version,
        },
        "fulcio": {"url": fulcio_url, "root_cert_target": ca_target},
    }
    for kind, name in (("tsa", "tsa"), ("oidc", "oidc"), ("tlog", "rekor_logs")):
        urls = [s.url for s in trust.services if s.kind == kind and s.active(now)]
        if urls:
            services[name] = {"urls": urls}
    return Endpoints(
        rekor=RekorEndpoint(log.base_url, log.log_id, key_target),
        fulcio=FulcioEndpoint(str(fulcio_url), ca_target),
        services=services,
    )
