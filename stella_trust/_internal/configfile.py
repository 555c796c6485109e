"""The config file as a document: read by the one rule for files (a regular UTF-8 file of at
most 1 MiB, never a link planted for it, a FIFO or a device; decision 18), parsed as YAML
with bounded nesting, its `attestor.trust_repo` section found (a near-miss name is an error,
never a silently ignored section), and merged back by `init` keeping every other key."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from stella_trust._internal.fs import atomic_write, read_untrusted
from stella_trust.errors import ConfigError, UnsafeFileError

SECTION = ("attestor", "trust_repo")
INSTANCES_KEY = "instances"  # named instances (decision 23); the section's top level is `default`
MAX_CONFIG_BYTES = 1 << 20


MAX_CONFIG_NODES = 100_000  # values, aliases counted each time they are used
MAX_CONFIG_DEPTH = 16  # the deepest real config is 4; pydantic's validation recurses


def _depth(document: Any) -> int:
    """How deep lists and mappings nest, counted without recursion (a hostile config must not
    end in RecursionError, a bug's message, inside validation)."""
    deepest, stack, visited = 0, [(document, 1)], 0
    while stack:
        value, level = stack.pop()
        visited += 1
        if visited > MAX_CONFIG_NODES:  # YAML aliases repeat a node without its bytes
            return MAX_CONFIG_DEPTH + 1
        if isinstance(value, dict | list):
            deepest = max(deepest, level)
            if level > MAX_CONFIG_DEPTH:
                return level
            children = value.values() if isinstance(value, dict) else value
            stack.extend((child, level + 1) for child in children)
    return deepest


def _parse_yaml(text: str) -> Any:
    """`yaml.safe_load`, with libyaml's parser when PyYAML was built with it (the pure-Python
    parser is what `trust status` would otherwise spend its start-up on). Same constructor and
    resolver, so the same values; a document libyaml refuses is parsed again by the pure-Python
    parser, whose error (line, column, problem) is the one reported, as before."""
    import yaml

    fast = getattr(yaml, "CSafeLoader", None)
    if fast is not None:
        try:
            return yaml.load(text, Loader=fast)  # CSafeLoader: the safe constructor, C parser
        except yaml.YAMLError:
            pass
    return yaml.safe_load(text)


def read_document(path: Path) -> dict[str, Any]:
    """The whole YAML document (empty if the file does not exist)."""
    try:
        # a regular file of at most 1 MiB: never /dev/zero, a FIFO, or a link planted for it
        # (decision 18); `--config` may name a symlink an administrator made (/etc/alternatives
        # style), so the one link level is resolved first and the file itself checked
        raw = read_untrusted(path.resolve(), MAX_CONFIG_BYTES, f"config {path}")
    except FileNotFoundError:
        return {}
    except UnsafeFileError as exc:
        raise ConfigError(exc.message, hint="the config must be a regular file of at most 1 MiB") from None
    except OSError as exc:
        raise ConfigError(f"config {path}: cannot read: {exc.strerror}") from exc
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"config {path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    import yaml

    try:
        document = _parse_yaml(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1} column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(f"config {path}:{where}: not valid YAML: {problem}") from exc
    except RecursionError:
        raise ConfigError(f"config {path}: nests lists or mappings too deep to be a config") from None
    if _depth(document) > MAX_CONFIG_DEPTH:
        raise ConfigError(
            f"config {path}: nests lists or mappings more than {MAX_CONFIG_DEPTH} deep, "
            f"or holds more than {MAX_CONFIG_NODES} values (aliases counted each time used)"
        )
    if document is None:
        return {}
    if not isinstance(document, dict):
        raise ConfigError(f"config {path}: the top level must be a mapping, not {_kind(document)}")
    return document


def read_section(path: Path) -> dict[str, Any]:
    """`attestor.trust_repo` of the file; a near miss of either name (`trust_rep`) is an
    error naming the close match, never a silently ignored section."""
    node: Any = read_document(path)
    walked: list[str] = []
    for key in SECTION:
        walked.append(key)
        parent = node
        node = node.get(key) if isinstance(node, dict) else None
        if node is None:
            _refuse_near_miss(path, parent, key, walked[:-1])
            return {}
        if not isinstance(node, dict):
            raise ConfigError(f"config {path}: {'.'.join(walked)} must be a mapping, not {_kind(node)}")
    return dict(node)


def _refuse_near_miss(path: Path, parent: Any, key: str, above: list[str]) -> None:
    """Refuse a section name one typo away (`trust_rep`): an ignored section would leave the host on
    defaults, with no anchor pin and no error to say why."""
    import difflib

    if not isinstance(parent, dict):
        return
    close = difflib.get_close_matches(key, [str(k) for k in parent], n=1, cutoff=0.8)
    if close:
        where = ".".join([*above, close[0]])
        raise ConfigError(
            f"config {path}: unknown section {where!r} (did you mean {'.'.join([*above, key])!r}?)"
        )


def _kind(value: Any) -> str:
    """A YAML value's type in the words an operator reading the error would use."""
    return {list: "a list", str: "a string", int: "a number", float: "a number"}.get(
        type(value), type(value).__name__
    )


def write_section(path: Path, values: dict[str, Any], instance: str | None = None) -> None:
    """Merge `values` into the config's `attestor.trust_repo` (or its `instances.<instance>`),
    keeping every other key."""
    import yaml

    document = read_document(path)
    attestor = document.setdefault("attestor", {})
    if not isinstance(attestor, dict):
        raise ConfigError(f"config {path}: attestor must be a mapping, not {_kind(attestor)}")
    section = attestor.setdefault("trust_repo", {})
    if not isinstance(section, dict):
        raise ConfigError(f"config {path}: attestor.trust_repo must be a mapping")
    if instance is not None and instance != "default":
        named = section.setdefault(INSTANCES_KEY, {})
        if not isinstance(named, dict):
            raise ConfigError(f"config {path}: attestor.trust_repo.{INSTANCES_KEY} must be a mapping")
        section = named.setdefault(instance, {})
        if not isinstance(section, dict):
            where = f"attestor.trust_repo.{INSTANCES_KEY}.{instance}"
            raise ConfigError(f"config {path}: {where} must be a mapping")
    section.update(values)
    text = yaml.safe_dump(document, sort_keys=False, default_flow_style=False)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, text.encode("utf-8"), mode=0o644)
