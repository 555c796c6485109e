"""The `attestor.trust_repo` settings: YAML file < environment < command-line flags.

pydantic-settings owns validation and precedence; the two small sources below exist
because the YAML section is nested two levels deep and the environment variable
names are fixed by the operators' existing deployments (`STELLA_TUF_ROOT_URL`, not
`STELLA_TUF_URL`). Errors name the file (or variable, or flag), the field, and what
is wrong, because a fleet operator debugging one bad host has nothing else to go on.

No `from __future__ import annotations` here: pydantic then reads the fields' types as objects
instead of evaluating them from strings when the models are built, at every start-up (issue 24).
"""

import contextvars
import os
from datetime import timedelta
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from stella_trust._internal.configfile import INSTANCES_KEY, SECTION, read_section
from stella_trust._internal.instances import DEFAULT_INSTANCE as DEFAULT_INSTANCE
from stella_trust._internal.instances import INSTANCE_NAME as INSTANCE_NAME
from stella_trust._internal.instances import INSTANCES_DIR as INSTANCES_DIR
from stella_trust._internal.instances import _adding_var
from stella_trust._internal.instances import check_instance_name as check_instance_name
from stella_trust._internal.instances import default_instance_configured as default_instance_configured
from stella_trust._internal.instances import instance_cache_path as instance_cache_path
from stella_trust._internal.instances import instance_section as instance_section
from stella_trust._internal.instances import is_instance_name as is_instance_name
from stella_trust._internal.instances import named_instances as named_instances
from stella_trust.errors import ConfigError, OfflineModeError

# What a repository publishes: a StellaOps service map (+ the keys and chain it names),
# Sigstore's own trusted_root.json (+ signing config), or both. `auto` detects it.
TrustSource = Literal["auto", "service-map", "sigstore", "both", "legacy"]
APP_NAME = "stella-trust"

# Environment variable -> settings field. Fixed names: they are part of the interface.
ENV_VARIABLES: dict[str, str] = {
    "STELLA_TUF_ROOT_URL": "tuf_url",
    "STELLA_SIGSTORE_SERVICE_MAP": "service_map_file",
    "STELLA_TUF_OFFLINE_MODE": "offline_mode",
    "STELLA_MIRRORS": "mirrors",
}


def _running_as_root() -> bool:
    """Root gets the system paths (/etc, /var/lib): the agent's unit and a root-run `trust import`
    must share one config and one cache."""
    return hasattr(os, "geteuid") and os.geteuid() == 0


def default_config_path() -> Path:
    """`$STELLA_TRUST_CONFIG`, else the system file for root, else the user's config dir."""
    from_env = os.environ.get("STELLA_TRUST_CONFIG")
    if from_env:
        return Path(from_env)
    if _running_as_root():
        return Path("/etc/stella-trust/trust.yaml")
    import platformdirs

    return Path(platformdirs.user_config_dir(APP_NAME)) / "trust.yaml"


def default_cache_path() -> Path:
    """/var/lib/stella-trust for root (the deployment's shared cache, decision 17), else the user's
    data dir, so an unprivileged user never needs write access to the system cache."""
    if _running_as_root():
        return Path("/var/lib/stella-trust")
    import platformdirs

    return Path(platformdirs.user_data_dir(APP_NAME))


MAX_METADATA_LIMIT = 512 << 20  # the largest role file a host will parse (offline.MAX_METADATA_FILE)


class MetadataLimits(BaseModel):
    """Maximum bytes accepted per metadata file; large repositories exceed python-tuf's defaults."""

    model_config = ConfigDict(extra="forbid")

    root: int = Field(512_000, gt=0, le=MAX_METADATA_LIMIT)
    timestamp: int = Field(16_384, gt=0, le=MAX_METADATA_LIMIT)
    snapshot: int = Field(2_000_000, gt=0, le=MAX_METADATA_LIMIT)
    targets: int = Field(5_000_000, gt=0, le=MAX_METADATA_LIMIT)


class BundleLimits(BaseModel):
    """Bounds on an imported bundle: it is untrusted input (docs/design.md, decision 5)."""

    model_config = ConfigDict(extra="forbid")

    max_compressed_bytes: int = Field(4 << 30, gt=0, le=1 << 40)
    max_uncompressed_bytes: int = Field(8 << 30, gt=0, le=1 << 40)
    max_file_bytes: int = Field(2 << 30, gt=0, le=1 << 40)
    max_files: int = Field(10_000, gt=0, le=10_000_000)
    # 4 MiB decoder window: exports use 2 MiB; a larger window lets a 10 KB bundle cost 128 MiB
    max_window_log: int = Field(22, ge=10, le=31)


_config_path_var: contextvars.ContextVar[Path | None] = contextvars.ContextVar(
    "stella_config_path", default=None
)
# Which instance a load reads (decision 23): "default" is the section's top level, as always.
_instance_var: contextvars.ContextVar[str] = contextvars.ContextVar("stella_instance", default="default")
# STELLA_SIGSTORE_SERVICE_MAP replaces the signed service map: an operator's choice for the
# CLI and the agent, but a library caller must opt in (an attestor's environment is not the
# operator's word).
_env_service_map_var: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "stella_env_service_map", default=True
)


class TrustRepoSettings(BaseSettings):
    """Everything a host needs to know to keep its trust current."""

    model_config = SettingsConfigDict(extra="forbid", validate_default=True)

    enabled: bool = True
    tuf_url: str | None = Field(None, description="Base URL of the TUF repository (http, https or file)")
    # default_factory: a lambda, never the builtin `list` (pydantic reads a factory's signature, and
    # a builtin's costs the process its first tokenize: ~3.5 ms of every start-up)
    mirrors: list[str] = Field(
        default_factory=lambda: [],
        description="Base URLs tried in order before tuf_url (net/mirrors.py); tuf_url stays the identity",
    )
    refresh_interval_minutes: float = Field(60, gt=0, le=525_600, allow_inf_nan=False)  # a year
    freshness_threshold_days: float = Field(7, ge=0, le=3_650, allow_inf_nan=False)
    offline_mode: bool = False
    local_cache_path: Path = Field(default_factory=default_cache_path)
    service_map_target: str = Field("sigstore-services-v1", min_length=1)
    service_map_file: Path | None = Field(
        None, description="Local service map that overrides the repository's (operator choice)"
    )
    anchor_sha256: str | None = Field(
        None, pattern=r"^[0-9a-f]{64}$", description="SHA-256 of the trust anchor, recorded by init"
    )
    trust_source: TrustSource = "auto"
    sigstore_trusted_root_target: str = Field("trusted_root.json", min_length=1)
    sigstore_signing_config_targets: list[str] = Field(
        default_factory=lambda: ["signing_config.v0.2.json", "signing_config.json"]
    )
    rekor_key_targets: list[str] | None = Field(
        None, description="Rekor keys to keep (service-map mode default: rekor-key-v1)"
    )
    pinned_targets: list[str] = Field(default_factory=lambda: [])
    environment: str | None = None
    request_timeout_seconds: float = Field(10, gt=0, le=3_600, allow_inf_nan=False)
    download_deadline_seconds: float = Field(120, gt=0, le=86_400, allow_inf_nan=False)
    ca_bundle: Path | None = None
    metadata_limits: MetadataLimits = Field(default_factory=lambda: MetadataLimits())
    max_root_rotations: int = Field(256, gt=0, le=100_000)
    lock_timeout_seconds: float = Field(30, ge=0, le=86_400, allow_inf_nan=False)
    bundle_limits: BundleLimits = Field(default_factory=lambda: BundleLimits())
    # Agent: a fleet must not stampede the repository, and retries back off.
    jitter_fraction: float = Field(0.1, ge=0, le=0.5, allow_inf_nan=False)
    retry_initial_seconds: float = Field(30, gt=0, le=86_400, allow_inf_nan=False)
    metrics_path: Path | None = Field(
        None, description="Prometheus text file for node_exporter's textfile collector"
    )

    @field_validator("tuf_url")
    @classmethod
    def _check_url(cls, value: str | None) -> str | None:
        """Only the schemes the fetcher serves (http, https, file://); the trailing slash is dropped
        so the metadata/ and targets/ URLs built from it have exactly one."""
        if value is None:
            return None
        return _repository_url(value)

    @field_validator("mirrors")
    @classmethod
    def _check_mirrors(cls, value: list[str]) -> list[str]:
        """Each mirror by tuf_url's rule; a mirror listed twice is tried once (order kept)."""
        return list(dict.fromkeys(_repository_url(url) for url in value))

    @field_validator(
        "rekor_key_targets", "pinned_targets", "sigstore_signing_config_targets", "mirrors", mode="before"
    )
    @classmethod
    def _split_lists(cls, value: Any) -> Any:
        """The list fields also accept one comma-separated string: that is all an environment
        variable or a flag can carry."""
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    def require_network(self, what: str, hint: str | None = None) -> None:
        """Offline mode allows only `file://` repositories (and bundles): one check for
        every path that would open a socket."""
        if not self.network_allowed:
            raise OfflineModeError(f"offline mode is on: {what}", hint=hint)

    @property
    def network_allowed(self) -> bool:
        """Offline mode still allows a `file://` repository: a drive or mirror directory opens no
        socket."""
        return not self.offline_mode or (self.tuf_url or "").startswith("file:")

    @property
    def repository_bases(self) -> tuple[str, ...]:
        """The base URLs a sync tries, in order (net/mirrors.py): the mirrors, then `tuf_url` unless
        listed among them; in offline mode only `file://` ones (a drive opens no socket)."""
        if not self.tuf_url:
            return ()
        bases = list(self.mirrors)
        if self.tuf_url not in bases:
            bases.append(self.tuf_url)
        if self.offline_mode:
            bases = [base for base in bases if base.startswith("file:")] or [self.tuf_url]
        return tuple(bases)

    @property
    def bundle_only(self) -> bool:
        """A host that takes trust only from `trust import` (no repository it may reach)."""
        return not self.tuf_url or not self.network_allowed

    @property
    def freshness_threshold_seconds(self) -> float:
        """The grace period after the earliest signed expiry (decision 3), in seconds."""
        return self.freshness_threshold_days * 86400.0

    @property
    def freshness_threshold(self) -> timedelta:
        """The grace period after the earliest signed expiry (decision 3)."""
        return timedelta(seconds=self.freshness_threshold_seconds)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Precedence: flags, then the fixed STELLA_* variables, then the YAML section.
        pydantic-settings' own environment and dotenv sources are left out, so no other variable or
        a stray .env file can change trust settings."""
        return (
            init_settings,
            _FixedNameEnvSource(settings_cls),
            _YamlSectionSource(settings_cls, _config_path_var.get()),
        )


_URL_FIELDS = ("tuf_url", "mirrors")  # may carry credentials: never echoed when refused


def _repository_url(value: str) -> str:
    """Only the schemes the fetcher serves (http, https, file://), without the trailing slash, so the
    metadata/ and targets/ URLs built from it have exactly one."""
    value = value.strip()
    if not value.startswith(("http://", "https://", "file://")):
        raise ValueError("must start with http://, https:// or file://")
    if any(char.isspace() or char in "\"'<>\\^`{|}" for char in value):
        # httpx would send it (encoding it itself), but text holding it could not be told
        # apart from the text around it, so a password there could not be redacted
        raise ValueError("must be percent-encoded (a space, quote or bracket in it is not allowed)")
    return value.rstrip("/")


class _FixedNameEnvSource(PydanticBaseSettingsSource):
    """The fixed STELLA_* variables only (`ENV_VARIABLES`): their names are part of operators'
    deployments, and no other variable may reach a trust setting."""

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        """Unused: `__call__` reads every variable at once (required by the base class)."""
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        """The set, non-empty variables by field; STELLA_SIGSTORE_SERVICE_MAP only when the caller
        opted in (a library caller's environment is not the operator's word)."""
        if _instance_var.get() != DEFAULT_INSTANCE:
            return {}  # the fixed variables are the default instance's, as they always were
        allowed = {
            name: field
            for name, field in ENV_VARIABLES.items()
            if field != "service_map_file" or _env_service_map_var.get()
        }
        return {field: os.environ[name] for name, field in allowed.items() if os.environ.get(name, "") != ""}


class _YamlSectionSource(PydanticBaseSettingsSource):
    """The config file's `attestor.trust_repo` section, nested two levels deep."""

    def __init__(self, settings_cls: type[BaseSettings], path: Path | None) -> None:
        """`path` None reads no file (the source then contributes nothing)."""
        super().__init__(settings_cls)
        self.path = path

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        """Unused: `__call__` reads the whole section at once (required by the base class)."""
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        """The section's fields, read by the one rule for the config file (`read_document`)."""
        if self.path is None:
            return {}
        return instance_section(self.path, _instance_var.get())


def load_settings(
    config_path: Path | None,
    overrides: dict[str, Any] | None = None,
    *,
    env_service_map: bool = True,
    instance: str | None = None,
    adding: bool = False,
) -> TrustRepoSettings:
    """Validate the merged settings; flags (`overrides`, None values ignored) win over all.
    `env_service_map=False` ignores STELLA_SIGSTORE_SERVICE_MAP (the library's default).
    `instance` names one under `instances:` (None or "default": the section's top level, today's
    settings); a named instance's cache defaults to `<default cache>/instances/<NAME>/`.
    `adding`: `init --instance NAME` may name an instance the file does not have yet."""
    path = config_path if config_path is not None else default_config_path()
    name = instance or DEFAULT_INSTANCE
    if adding and name != DEFAULT_INSTANCE and name not in named_instances(path):
        check_instance_name(name)
        adding_token = _adding_var.set(name)
        try:
            return load_settings(path, overrides, env_service_map=env_service_map, instance=name)
        finally:
            _adding_var.reset(adding_token)
    flags = {k: v for k, v in (overrides or {}).items() if v is not None}
    named = name != DEFAULT_INSTANCE
    if named and "local_cache_path" not in flags and "local_cache_path" not in instance_section(path, name):
        flags["local_cache_path"] = instance_cache_path(_default_cache(path), name)
    token = _config_path_var.set(path)
    env_token = _env_service_map_var.set(env_service_map)
    instance_token = _instance_var.set(name)
    try:
        return TrustRepoSettings(**flags)
    except ValidationError as exc:
        raise ConfigError(_describe(exc, path, flags, name)) from exc
    finally:
        _instance_var.reset(instance_token)
        _env_service_map_var.reset(env_token)
        _config_path_var.reset(token)


def _default_cache(path: Path) -> Path:
    """The default instance's cache as the file says (or the platform default): the named
    instances' caches live under it unless they name their own."""
    top = read_section(path).get("local_cache_path")
    return Path(top) if isinstance(top, str) and top else default_cache_path()


def host_instances(path: Path | None) -> list[str]:
    """Every instance of this host, `default` first: the default whenever it is configured or
    nothing else is (so a host without `instances:` behaves exactly as before), then the named
    ones by name."""
    path = path if path is not None else default_config_path()
    named = sorted(named_instances(path))
    if not named or default_instance_configured(path):
        return [DEFAULT_INSTANCE, *named]
    return named


def _describe(
    exc: ValidationError, path: Path, flags: dict[str, Any], instance: str = DEFAULT_INSTANCE
) -> str:
    """One line per problem, each naming where the bad value came from (flag, environment variable
    or file and key): a fleet operator debugging one host has nothing else to go on."""
    env_fields = {field: name for name, field in ENV_VARIABLES.items() if os.environ.get(name)}
    if instance != DEFAULT_INSTANCE:
        env_fields = {}
    where = ".".join([*SECTION, *([INSTANCES_KEY, instance] if instance != DEFAULT_INSTANCE else [])])
    problems = []
    for error in exc.errors():
        loc = [str(part) for part in error["loc"]]
        field = loc[0] if loc else "?"
        dotted = ".".join(loc)
        if error["type"] == "extra_forbidden":
            message = "unknown field (typo?)"
        else:
            message = f"{error['msg']} (got {error.get('input')!r})"
            if field in _URL_FIELDS:  # a URL that did not parse may hide its password anywhere
                message = error["msg"]
        if field in flags:
            origin = f"--{field.replace('_', '-')}"
        elif field in env_fields:
            origin = f"environment variable {env_fields[field]}"
        else:
            origin = f"config {path}: {where}.{dotted}"
            problems.append(f"{origin}: {message}")
            continue
        problems.append(f"{origin} ({dotted}): {message}")
    return "; ".join(problems)


SettingSource = Literal["flag", "env", "file", "default"]


def setting_sources(
    config_path: Path | None,
    flag_names: dict[str, str] | None = None,
    *,
    env_service_map: bool = True,
    instance: str = DEFAULT_INSTANCE,
) -> dict[str, tuple[SettingSource, str | None]]:
    """Where each field's effective value comes from, by the precedence `load_settings`
    applies (flags < environment < file < default, first wins): `("flag", "--cache-dir")`,
    `("env", "STELLA_TUF_ROOT_URL")`, `("file", "<config path>")` or `("default", None)`.

    `flag_names` maps the fields given on the command line to the flag that set them. Only
    the fixed STELLA_* variables are looked at (never the rest of the environment)."""
    path = config_path if config_path is not None else default_config_path()
    flags = flag_names or {}
    env = {
        field: name
        for name, field in ENV_VARIABLES.items()
        if (field != "service_map_file" or env_service_map)
        and os.environ.get(name, "") != ""
        and instance == DEFAULT_INSTANCE
    }
    in_file = instance_section(path, instance)
    sources: dict[str, tuple[SettingSource, str | None]] = {}
    for field in TrustRepoSettings.model_fields:
        if field in flags:
            sources[field] = ("flag", flags[field])
        elif field in env:
            sources[field] = ("env", env[field])
        elif field in in_file:
            sources[field] = ("file", str(path))
        else:
            sources[field] = ("default", None)
    return sources
