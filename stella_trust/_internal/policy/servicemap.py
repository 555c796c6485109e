"""The StellaOps service map: parsing, environment overrides, referenced targets, endpoints.

Unknown fields and services are kept (forward compatibility); what the client relies on
(`rekor.url`, `rekor.public_key_target`, `fulcio.url`, `fulcio.root_cert_target`, every
`*_target` reference) is checked both in the base map and after an environment's
overrides, so a signed override cannot smuggle in `null` or a non-string target name.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from stella_trust.errors import ServiceMapError
from stella_trust.view import Endpoints, FulcioEndpoint, KeyFact, RekorEndpoint, ServiceMap

REQUIRED = {
    "rekor": ("url", "public_key_target"),
    "fulcio": ("url", "root_cert_target"),
}
OVERRIDES = "overrides"


def parse_service_map(data: bytes, source: str) -> ServiceMap:
    """Parse and check the base map and every override set it defines."""
    try:
        document = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ServiceMapError(f"Service map {source}: not valid JSON ({exc})") from exc
    if not isinstance(document, dict):
        raise ServiceMapError(f"Service map {source}: must be a JSON object")
    if "version" not in document:
        raise ServiceMapError(f"Service map {source}: missing required field 'version'")
    service_map = ServiceMap(source, document)
    overrides = document.get(OVERRIDES)
    if overrides is not None and not isinstance(overrides, dict):
        raise ServiceMapError(f"Service map {source}: 'overrides' must be an object")
    for environment in [None, *(overrides or {})]:
        resolve_services(service_map, environment)
    return service_map


def local_service_map(named: tuple[str, bytes]) -> ServiceMap:
    """The operator's local map (`service_map_file` / STELLA_SIGSTORE_SERVICE_MAP), as the
    caller read it: (its path, its bytes)."""
    path, data = named
    return parse_service_map(data, f"file:{path}")


def resolve_services(service_map: ServiceMap, environment: str | None) -> dict[str, dict[str, Any]]:
    """Each service's fields after the environment's overrides (`rekor_url` -> rekor.url)."""
    source, document = service_map.source, service_map.document
    services: dict[str, dict[str, Any]] = {}
    for name, value in document.items():
        if isinstance(value, dict) and name != OVERRIDES:
            services[name] = dict(value)
    if environment is not None:
        overrides = document.get(OVERRIDES) or {}
        chosen = overrides.get(environment) if isinstance(overrides, dict) else None
        if chosen is None:
            known = ", ".join(sorted(overrides)) if isinstance(overrides, dict) else ""
            raise ServiceMapError(
                f"Service map {source}: environment {environment!r} has no overrides"
                + (f" (known: {known})" if known else ""),
                hint="set `environment` to one the service map defines, or remove it",
            )
        if not isinstance(chosen, dict):
            raise ServiceMapError(f"Service map {source}: overrides.{environment} must be an object")
        for key, value in chosen.items():
            service, _, fieldname = key.partition("_")
            if service in services and fieldname:
                services[service][fieldname] = value
            else:
                services.setdefault("extra_overrides", {})[key] = value
    where = f" (environment {environment})" if environment else ""
    for service, fields in REQUIRED.items():
        if service not in services:
            raise ServiceMapError(f"Service map {source}: missing required field {service!r}")
        for fieldname in fields:
            value = services[service].get(fieldname)
            if not isinstance(value, str) or not value:
                raise ServiceMapError(
                    f"Service map {source}: missing required field '{service}.{fieldname}'{where}"
                    if value is None or value == ""
                    else f"Service map {source}: '{service}.{fieldname}' must be a non-empty string{where}"
                )
    for service, values in services.items():
        for key, value in values.items():
            if key.endswith("_target") and not isinstance(value, str):
                raise ServiceMapError(
                    f"Service map {source}: '{service}.{key}' must be a target name (string){where}"
                )
    return services


def referenced_targets(service_map: ServiceMap, environment: str | None) -> list[str]:
    """Targets the map points at, in the base map and after the environment's overrides."""
    names: dict[str, None] = {}
    for services in (resolve_services(service_map, None), resolve_services(service_map, environment)):
        for fields in services.values():
            for key, value in fields.items():
                if key.endswith("_target") and isinstance(value, str):
                    names[value] = None
    return list(names)


def resolve_endpoints(
    service_map: ServiceMap,
    environment: str | None,
    keys: dict[str, KeyFact],
    resolve: Callable[[str], str],
) -> Endpoints:
    """Endpoints after overrides, with target references resolved and the log ID checked.

    Rekor's log ID *is* the SHA-256 of its key's SPKI, so a map whose `log_id` disagrees
    with the key it names is refused rather than silently served.
    """
    services = resolve_services(service_map, environment)
    rekor = services["rekor"]
    key_target = resolve(rekor["public_key_target"])
    fact = keys.get(key_target)
    if fact is None:
        raise ServiceMapError(
            f"Service map {service_map.source}: rekor.public_key_target {key_target!r} "
            "is not a PEM public key"
        )
    declared = rekor.get("log_id")
    if declared and str(declared).lower() != fact.spki_sha256:
        raise ServiceMapError(
            f"Service map {service_map.source}: rekor.log_id {declared} does not match the "
            f"SHA-256 of {key_target} ({fact.spki_sha256})",
            hint="the repository published an inconsistent service map; report it",
        )
    rekor["public_key_target"] = key_target
    rekor["log_id"] = fact.spki_sha256
    fulcio = services["fulcio"]
    fulcio["root_cert_target"] = resolve(fulcio["root_cert_target"])
    return Endpoints(
        rekor=RekorEndpoint(rekor["url"], fact.spki_sha256, key_target),
        fulcio=FulcioEndpoint(fulcio["url"], fulcio["root_cert_target"]),
        services=services,
    )
