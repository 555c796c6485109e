"""Named instances in the config (docs/design.md decision 23): their names, their
sections and their caches. The section's top level is the instance `default`."""

from __future__ import annotations

import contextvars
import os
import re
from pathlib import Path
from typing import Any

from stella_trust._internal.configfile import INSTANCES_KEY, SECTION, read_section
from stella_trust.errors import ConfigError, NotInitialisedError

# An instance `init --instance NAME` is adding: not in the file yet, so it reads as empty.
_adding_var: contextvars.ContextVar[str | None] = contextvars.ContextVar("stella_adding", default=None)

DEFAULT_INSTANCE = "default"
# A name that is safe as a directory, a YAML key, a metrics label and a word in a message. Kept as
# text: `re` compiles it on first use (a run that names no instance never does; issue 24).
INSTANCE_NAME = r"[a-z0-9][a-z0-9_-]{0,31}"  # the whole name (fullmatch: `$` would allow a final "\n")
INSTANCES_DIR = "instances"  # <default cache>/instances/<NAME>/: a named instance's own cache


def is_instance_name(name: str) -> bool:
    """Whether `name` follows INSTANCE_NAME's rule."""
    return re.fullmatch(INSTANCE_NAME, name) is not None


def check_instance_name(name: str) -> str:
    """An instance name must be a plain word: it becomes a directory, a YAML key and a label."""
    if not is_instance_name(name):
        raise ConfigError(
            f"instance name {name!r} is not allowed: use 1-32 of a-z, 0-9, '-' and '_', "
            "starting with a letter or digit"
        )
    return name


def instance_cache_path(default_cache: Path, name: str) -> Path:
    """A named instance's own cache, beside nothing the default Store owns: the Store prunes,
    locks and checks only its own entries (generations/, roots/, tlogs/, the link and files)."""
    return Path(default_cache) / INSTANCES_DIR / check_instance_name(name)


def named_instances(path: Path) -> dict[str, dict[str, Any]]:
    """`instances:` of the section, each name checked (`default` is the top level, never listed)."""
    section = read_section(path)
    found = section.get(INSTANCES_KEY)
    if found is None:
        return {}
    where = f"config {path}: {'.'.join(SECTION)}.{INSTANCES_KEY}"
    if not isinstance(found, dict):
        raise ConfigError(f"{where} must be a mapping of instance names to settings")
    for name, fields in found.items():
        if not isinstance(name, str) or not is_instance_name(name) or name == DEFAULT_INSTANCE:
            raise ConfigError(
                f"{where}: {name!r} is not an instance name (1-32 of a-z, 0-9, '-', '_'; "
                "'default' is the section's top level)"
            )
        if not isinstance(fields, dict):
            raise ConfigError(f"{where}.{name} must be a mapping of settings")
    return {str(name): dict(fields) for name, fields in found.items()}


def instance_section(path: Path, name: str) -> dict[str, Any]:
    """The fields of one instance: the section's top level without `instances` for the default,
    `instances.<NAME>` otherwise (an instance the file does not have is refused, exit 3)."""
    if name == DEFAULT_INSTANCE:
        section = read_section(path)
        if INSTANCES_KEY in section:
            named_instances(path)  # a malformed `instances:` is an error for every instance
        return {k: v for k, v in section.items() if k != INSTANCES_KEY}
    named = named_instances(path)
    if name not in named and name == _adding_var.get():
        return {}
    if name not in named:
        check_instance_name(name)
        known = ", ".join([DEFAULT_INSTANCE, *sorted(named)])
        raise NotInitialisedError(
            f"no instance {name!r} in config {path} (it has: {known})",
            hint=f"add it with `trust init --instance {name} --tuf-url URL --root ROOT.json`",
        )
    return named[name]


def default_instance_configured(path: Path) -> bool:
    """Whether the section's top level sets anything (or STELLA_TUF_ROOT_URL is set): a host set
    up only with `init --instance NAME` has no default instance to sync."""
    top = instance_section(path, DEFAULT_INSTANCE)
    return bool(top) or bool(os.environ.get("STELLA_TUF_ROOT_URL"))
