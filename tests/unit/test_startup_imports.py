"""What `trust status --json` and `trust --help` import (issue 13): start-up is paid for the
command being run, never for the network stack, the progress bars or the other commands, while
status still validates settings with pydantic-settings and verifies with python-tuf.

Behaviour, not timing: each command runs as a real process (`python -X importtime -m
stella_trust ...`) and the modules it loaded are read from the interpreter's own report.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from stella_trust._internal.settings import load_settings
from stella_trust._internal.store import Store
from stella_trust._internal.sync import sync
from stella_trust.demo.repository import DemoRepository
from tests.conftest import clean_env

# Never needed to read the cache or print help: the HTTP clients, python-tuf's network client,
# rich, sigstore-python's verifier, the bundle and agent code, the publishing side.
NETWORK_AND_EXTRAS = (
    "httpx",
    "httpcore",
    "anyio",
    "urllib3",
    "tuf.ngclient",
    "rich",
    "sigstore",
    "zstandard",
    "prometheus_client",
    "stella_trust._internal.sync",
    "stella_trust._internal.tuf.updater",
    "stella_trust._internal.net.fetcher",
    "stella_trust._internal.bundle",
    "stella_trust._internal.verifiers",
    "stella_trust._internal.sigstore.verify",
    "stella_trust._agent",
    "stella_trust.repository",
)
# Commands other than `status`: `main()` builds only the command it runs.
OTHER_COMMANDS = (
    "stella_trust._cli.repo",
    "stella_trust._cli.bundles",
    "stella_trust._cli.importing",
    "stella_trust._cli.verify",
    "stella_trust._cli.agent",
    "stella_trust._cli.query",
    "stella_trust._cli.doctor",
    "stella_trust._cli.demo",
)
# Modules status once imported and does not need (issue 24): the version (`--version` and the
# package attribute load it on use); what only a writer uses (root's change of credentials, the
# descriptor-relative writes, the group database for the one message naming the readers' group).
STATUS_NEEDS_NOT = (
    "stella_trust._version",
    "stella_trust._internal.credentials",
    "stella_trust._internal.fs.opendir",
    "grp",
)
# What status must still do: settings through pydantic-settings (YAML + STELLA_*), signatures
# through python-tuf's metadata API.
STATUS_DOES_ITS_JOB = ("pydantic_settings", "yaml", "tuf.api.metadata")


def loaded(*args: str) -> tuple[subprocess.CompletedProcess[str], set[str]]:
    """Run `python -m stella_trust ARGS`; its exit, output, and every module it imported."""
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "stella_trust", *args],
        capture_output=True,
        text=True,
        env=clean_env(),
        check=False,
    )
    modules = {
        line.rsplit("|", 1)[1].strip()
        for line in done.stderr.splitlines()
        if line.startswith("import time:") and "|" in line
    }
    assert "stella_trust._cli.app" in modules, done.stderr[-2000:]
    return done, modules


def imported(modules: set[str], names: tuple[str, ...]) -> list[str]:
    """The names (or their submodules) among `modules`."""
    return sorted(name for name in names if any(m == name or m.startswith(name + ".") for m in modules))


@pytest.fixture(scope="module")
def config(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A host synced from a demo repository over file://, and its config file."""
    work = tmp_path_factory.mktemp("startup")
    demo = DemoRepository(work / "repo")
    url = demo.repo.path.resolve().as_uri()
    cache = work / "cache"
    settings = load_settings(work / "absent.yaml", {"tuf_url": url, "local_cache_path": cache})
    store = Store.of(settings)
    store.write_anchor(demo.root_path.read_bytes())
    sync(settings, store)
    path = work / "trust.yaml"
    path.write_text(f"attestor:\n  trust_repo:\n    tuf_url: {url}\n    local_cache_path: {cache}\n")
    return path


@pytest.mark.parametrize("extra", [["--json"], [], ["--show-keys", "--show-endpoints"]])
def test_status_imports_only_what_reading_the_cache_needs(config: Path, extra: list[str]) -> None:
    done, modules = loaded("--config", str(config), "status", *extra)
    assert done.returncode == 0, done.stderr[-2000:]
    if extra == ["--json"]:
        document = json.loads(done.stdout)
        assert document["ok"] and document["result"]["freshness"]["state"] == "fresh"
        assert set(document["result"]["metadata"]) >= {"root", "timestamp", "snapshot", "targets"}
    else:
        assert "Trust repository" in done.stdout
    assert imported(modules, NETWORK_AND_EXTRAS) == []
    assert imported(modules, OTHER_COMMANDS) == []
    assert imported(modules, STATUS_DOES_ITS_JOB) == sorted(STATUS_DOES_ITS_JOB)
    assert imported(modules, STATUS_NEEDS_NOT) == []


def test_status_of_a_tampered_cache_still_fails_verification(config: Path, tmp_path: Path) -> None:
    """The same lean process still checks signatures: a re-signed-looking edit is refused."""
    text = config.read_text()
    copy = tmp_path / "cache"
    shutil.copytree(Path(text.split("local_cache_path: ")[1].strip()), copy, symlinks=True)
    timestamp = next(copy.glob("generations/*/metadata/timestamp.json"))
    document = json.loads(timestamp.read_bytes())
    document["signed"]["expires"] = "2099-01-01T00:00:00Z"  # the signature no longer matches
    timestamp.write_text(json.dumps(document))
    done, modules = loaded("--config", str(config), "--cache-dir", str(copy), "status", "--json")
    assert done.returncode == 3, done.stdout + done.stderr
    error = json.loads(done.stdout)["error"]
    assert "timestamp: signature verification failed" in error["message"], error
    assert imported(modules, NETWORK_AND_EXTRAS) == []


# Modules whose dataclasses `trust status` may build (Python 3.11 compiles each generated method
# with exec(), ~0.8 ms a frozen class, at every start-up; issue 24): only the public types, declared
# with records.record, which generates none (tests/unit/test_records.py). The policy's inputs are
# NamedTuples; the cache's records, the verified trust and the CLI's records plain classes.
DATACLASSES_ALLOWED = {
    "stella_trust.view",
    "stella_trust.sigstore_types",
}
NAMEDTUPLES_ALLOWED = {
    "stella_trust._internal.memo.FileIdentity",
    "stella_trust._internal.credentials.Owner",
}
_LIST_DATACLASSES = """
import atexit, dataclasses, inspect, json, os, runpy, sys

def report():
    built = sorted(
        f"{name}.{cls.__qualname__}"
        for name, module in list(sys.modules.items())
        if name.startswith("stella_trust")
        for cls in vars(module).values()
        if inspect.isclass(cls) and cls.__module__ == name and dataclasses.is_dataclass(cls)
    )
    tuples = sorted(
        f"{name}.{cls.__qualname__}"
        for name, module in list(sys.modules.items())
        if name.startswith("stella_trust")
        for cls in vars(module).values()
        if inspect.isclass(cls) and cls.__module__ == name
        and issubclass(cls, tuple) and hasattr(cls, "_fields")
    )
    with open(os.environ["DATACLASSES_OUT"], "w") as out:
        json.dump({"dataclasses": built, "namedtuples": tuples}, out)

atexit.register(report)
sys.argv = ["trust", *sys.argv[1:]]
runpy.run_module("stella_trust", run_name="__main__", alter_sys=True)
"""


def test_status_builds_no_dataclass_but_the_public_types_and_the_cache_records(
    config: Path, tmp_path: Path
) -> None:
    out = tmp_path / "dataclasses.json"
    done = subprocess.run(
        [sys.executable, "-c", _LIST_DATACLASSES, "--config", str(config), "status", "--json"],
        capture_output=True,
        text=True,
        env={**clean_env(), "DATACLASSES_OUT": str(out)},
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads(out.read_text())
    built = report["dataclasses"]
    assert "stella_trust.view.TrustView" in built  # the report sees what the run built
    assert sorted(c for c in built if c.rsplit(".", 1)[0] not in DATACLASSES_ALLOWED) == []
    # NamedTuples cost ~0.2 ms a class (one exec() each): the policy's values are policy.inputs.Value
    # (issue 24); what is left is in modules status cannot do without (the memo, the cache's state)
    assert "stella_trust._internal.memo.FileIdentity" in report["namedtuples"]  # the report sees them
    assert sorted(set(report["namedtuples"]) - NAMEDTUPLES_ALLOWED) == []


def test_settings_default_factories_are_never_builtins() -> None:
    """pydantic reads a default factory's signature when the model is built; a builtin's
    (`list`, `dict`) is parsed from its text signature by `tokenize`, whose first use compiles a
    large regular expression (~3.5 ms of every `trust status`)."""
    import types

    from stella_trust._internal.settings import BundleLimits, MetadataLimits, TrustRepoSettings

    for model in (TrustRepoSettings, MetadataLimits, BundleLimits):
        for name, field in model.model_fields.items():
            factory = field.default_factory
            assert not isinstance(factory, type | types.BuiltinFunctionType), (model.__name__, name)


def test_help_imports_no_trust_logic() -> None:
    done, modules = loaded("--help")
    assert done.returncode == 0 and "Commands" in done.stdout
    for command in ("init", "sync", "status", "verify", "repo", "snapshot", "config"):
        assert f" {command} " in done.stdout, command
    heavy = (*NETWORK_AND_EXTRAS, "pydantic_settings", "yaml", "tuf", "cryptography", "sigstore_models")
    assert imported(modules, heavy) == []
    # redaction is not trust logic: every line the CLI prints passes through it (decision 18)
    allowed = {"stella_trust._internal", "stella_trust._internal.redact"}
    internal = {m for m in modules if m.startswith("stella_trust._internal")}
    assert sorted(internal - allowed) == []


_FROZEN_AT_EXIT = """
import atexit, gc, sys
atexit.register(lambda: sys.stderr.write(f"frozen at exit: {gc.get_freeze_count()}\\n"))
from stella_trust._cli.app import main
sys.argv = ["trust", *sys.argv[1:]]
main()
"""


def test_the_entry_point_ends_its_process_without_the_final_collection(config: Path) -> None:
    """`trust` freezes the heap as it ends (issue 24: CPython's final collection was ~50 ms of every
    status): the atexit handlers still run and the output is whole; a `main([...])` called in a
    process that goes on leaves the collector alone."""
    import gc

    from stella_trust._cli.app import main

    done = subprocess.run(
        [sys.executable, "-c", _FROZEN_AT_EXIT, "--config", str(config), "status", "--json"],
        capture_output=True,
        text=True,
        env=clean_env(),
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads(done.stdout)["ok"] is True
    frozen = int(done.stderr.split("frozen at exit: ")[1].split()[0])
    assert frozen > 10_000  # the modules' objects, every one
    failed = subprocess.run(
        [sys.executable, "-c", _FROZEN_AT_EXIT, "--config", str(config), "status", "--no-such-option"],
        capture_output=True,
        text=True,
        env=clean_env(),
        check=False,
    )
    assert failed.returncode == 2 and "No such option" in failed.stderr
    assert int(failed.stderr.split("frozen at exit: ")[1].split()[0]) > 0  # every way out
    before = gc.get_freeze_count()
    with pytest.raises(SystemExit):
        main(["--config", str(config), "status", "--json"])
    assert gc.get_freeze_count() == before


def test_the_commands_a_run_builds_hand_typer_annotations_not_strings() -> None:
    """typer reads every parameter's annotation of the command a run builds: a postponed one
    (a string) is compiled and evaluated again at every run, its `typer.Option(...)` calls
    included (issue 24). `status`, `sync`, `init` and `verify` hand it the objects."""
    from stella_trust._cli import client, verify

    for command in (client.status, client.sync, client.init, verify.verify):
        postponed = [name for name, value in command.__annotations__.items() if isinstance(value, str)]
        assert postponed == [], f"{command.__name__}: {postponed}"
