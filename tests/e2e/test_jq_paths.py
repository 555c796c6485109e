"""Every `jq` line in README.md and in every command's --help, run for real (issue 20).

`jq .freshness.state` printed null for everyone who copied it: every `--json` prints one
envelope `{command, ok, result, warnings, error}`, so the command's own fields live under
`.result`. Here each jq expression is taken from the text users read — README.md (code, inline
code, the "JSON output" table) and the `--help` of every command and group as rendered at 80
columns — then the command runs for real (the demo repository served on 127.0.0.1, with a
synthetic tile log in its trusted root so a sealed log state exists; an operator workspace
for `trust repo ...`), its stdout goes through the real `jq` binary, and the expression must
yield something other than null. A jq line whose command has no runner here fails the test:
no line is skipped silently.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import typer

from stella_trust._cli.app import full_app
from stella_trust._internal.sigstore.sealedlogs import origin_of
from stella_trust.demo.repository import DemoRepository
from tests.conftest import FaultyServer, Result, clean_env, ok
from tests.e2e.conftest import Client
from tests.e2e.operators import repo
from tests.e2e.test_tlog_tiles import REKOR_V2_CASE, STAGING, trusted_root
from tests.tlog_log import SyntheticLog, serve

README = Path(__file__).resolve().parents[2] / "README.md"
JQ = shutil.which("jq")
# .ci/run installs jq; under CI a missing jq fails (the tests assert it), never skips
needs_jq = pytest.mark.skipif(JQ is None and not os.environ.get("CI"), reason="apt-get install jq")

# `trust CMD ... | jq [-flags] EXPR`, EXPR one shell word (quoted or bare)
PIPED = re.compile(r"(trust\s[^`|]*?)\s*\|\s*jq\s+((?:-[a-zA-Z]+\s+)*)('[^']*'|\"[^\"]*\"|[^\s`'\")]+)")
# a jq *invocation* (a program given to jq), as opposed to prose naming the tool
INVOKES_JQ = re.compile(r"\|\s*jq\b|\bjq\s+(-[a-zA-Z]|'|\"|\.)")
# `jq [-flags] EXPR .../metadata/ROLE.json`: a procedure reading a published metadata file
READS_FILE = re.compile(r"\bjq\s+((?:-[a-zA-Z]+\s+)*)('[^']*'|\"[^\"]*\")\s+(\S*/metadata/[\w.-]+\.json)")
GLOBAL_OPTIONS = ("--config", "--cache-dir")


@dataclass(frozen=True)
class JqLine:
    where: str  # README.md:56, or `trust status --help`
    command: str  # the command the line pipes into jq ("any failure" in the README table)
    flags: tuple[str, ...]
    expression: str

    @property
    def on_error(self) -> bool:
        """`.error...` is read from a failure's envelope; everything else from a result."""
        return self.expression.startswith(".error")


# ---- where the jq lines are ---------------------------------------------------------------
def _piped(text: str, where: str) -> list[JqLine]:
    found = []
    for match in PIPED.finditer(text):
        command, flags, word = match.groups()
        found.append(JqLine(where, command.strip(), tuple(flags.split()), shlex.split(word)[0]))
    return found


def _reads_file(text: str, where: str) -> list[JqLine]:
    """A procedure's `jq EXPR DRIVE/metadata/root.json`: its "command" is the file it reads
    (`metadata/root.json`), which the operator runner publishes for real."""
    found = []
    for match in READS_FILE.finditer(text):
        flags, word, path = match.groups()
        command = "/".join(Path(path).parts[-2:])
        found.append(JqLine(where, command, tuple(flags.split()), shlex.split(word)[0]))
    return found


def _table(lines: list[str], start: int) -> list[JqLine]:
    """README's "JSON output" table: | `command`[, `command`] | `expr`, `expr`[; `sub`: `expr`] |"""
    found: list[JqLine] = []
    for number in range(start + 2, len(lines)):
        row = lines[number]
        if not row.startswith("|"):
            break
        cells = [cell.strip() for cell in re.split(r"(?<!\\)\|", row)[1:-1]]
        assert len(cells) == 2, f"README.md:{number + 1}: a jq table row has two cells: {row}"
        commands = re.findall(r"`([^`]+)`", cells[0]) or [cells[0]]
        for segment in cells[1].split(";"):
            exprs = [e.replace("\\|", "|") for e in re.findall(r"`([^`]+)`", segment)]
            named = re.match(r"\s*`([^`]+)`:", segment)
            targets = [f"trust {exprs.pop(0)}"] if named else commands
            assert exprs, f"README.md:{number + 1}: no jq expression in {segment!r}"
            found += [JqLine(f"README.md:{number + 1}", c, (), e) for c in targets for e in exprs]
    return found


def readme_lines() -> list[JqLine]:
    """Every jq line of README.md; a line that mentions jq and cannot be read fails here."""
    lines = README.read_text().splitlines()
    found: list[JqLine] = []
    table = next(i for i, line in enumerate(lines) if re.match(r"\|\s*command\s*\|\s*`jq`\s*\|", line))
    rows = _table(lines, table)
    in_table = {int(line.where.split(":")[1]) for line in rows}
    found += rows
    for number, line in enumerate(lines, start=1):
        if number - 1 == table or number in in_table or not INVOKES_JQ.search(line):
            continue
        piped = _piped(line, f"README.md:{number}") + _reads_file(line, f"README.md:{number}")
        assert piped, f"README.md:{number} mentions jq but no `trust ... | jq EXPR` can be read: {line}"
        found += piped
    return found


def command_paths() -> list[list[str]]:
    paths: list[list[str]] = []

    def walk(command: object, prefix: list[str]) -> None:
        for name, sub in getattr(command, "commands", {}).items():
            paths.append([*prefix, name])
            walk(sub, [*prefix, name])

    walk(typer.main.get_command(full_app()), [])
    return paths


def rendered_help(path: list[str]) -> str:
    """`trust PATH --help` as an 80-column terminal shows it (a wrapped line cannot be copied)."""
    command = typer.main.get_command(full_app())
    ctx = typer.Context(command, info_name="trust", terminal_width=80)
    for word in path:
        command = command.commands[word]  # type: ignore[attr-defined]
        ctx = typer.Context(command, info_name=word, parent=ctx, terminal_width=80)
    return command.get_help(ctx)


def help_lines() -> list[JqLine]:
    found: list[JqLine] = []
    for path in [[], *command_paths()]:
        where = f"`{' '.join(['trust', *path, '--help'])}`"
        for line in rendered_help(path).splitlines():
            if INVOKES_JQ.search(line):
                piped = _piped(line, where)
                assert piped, f"{where}: a jq line that cannot be read (wrapped?): {line!r}"
                found += piped
    return found


def runner_key(command: str) -> str:
    """`trust --config X repo check --within 60d --json` -> "repo check" (the longest
    command path its words start with); "any failure" stays as it is."""
    if not command.startswith("trust "):
        return command
    words = shlex.split(command)[1:]
    while words and words[0] in GLOBAL_OPTIONS:
        words = words[2:]
    known = {" ".join(p) for p in command_paths()}
    key = ""
    for count in range(1, len(words) + 1):
        candidate = " ".join(words[:count])
        if candidate in known:
            key = candidate
    assert key, f"{command!r} names no trust command"
    return key


ALL_LINES = readme_lines() + help_lines()


# ---- running the commands for real ----------------------------------------------------------
@dataclass
class Outputs:
    """The stdout of real runs of one command: `result` ones (read by every expression but
    `.error...`) and failures (read by `.error...`)."""

    result: list[str] = field(default_factory=list)
    error: list[str] = field(default_factory=list)


def envelope_of(run: Result, *, failed: bool = False) -> str:
    document = run.envelope()
    assert document["ok"] is not failed, (run.code, run.out, run.err)
    return run.out


def evaluate(line: JqLine, outputs: Outputs) -> list[str]:
    """Problems with one jq line against the real outputs of its command (none: it works)."""
    assert JQ is not None
    documents = outputs.error if line.on_error else outputs.result
    if not documents:
        return [f"{line.where}: `{line.command} | jq {line.expression}`: no real output to read it from"]
    problems = []
    for document in documents:
        done = subprocess.run(
            [JQ, *line.flags, line.expression], input=document, capture_output=True, text=True, check=False
        )
        values = done.stdout.splitlines()
        if done.returncode != 0 or not values or "null" in values:
            program = " ".join([*line.flags, line.expression])
            gave = done.stdout.strip()[:200] or "nothing"
            problems.append(
                f"{line.where}: `{line.command} | jq {program}` gave {gave!r} "
                f"(jq exit {done.returncode}: {done.stderr.strip()})"
            )
    return problems


# ---- the client side: the demo repository, a tile log, one host -------------------------------
@dataclass
class ClientWorld:
    demo: DemoRepository
    server: FaultyServer
    host: Client
    tmp: Path


@pytest.fixture
def client_world(tmp_path: Path) -> Iterator[ClientWorld]:
    log_dir = tmp_path / "log"
    log_dir.mkdir()
    served = serve(log_dir)
    try:
        log = SyntheticLog(3000, origin_of(served.base_url))
        log.write(log_dir)
        demo = DemoRepository(tmp_path / "repository")
        demo.repo.add_target("trusted_root.json", trusted_root(log, served.base_url))
        demo.repo.publish()
        with FaultyServer(demo.repo.path) as server:
            home = tmp_path / "host"
            home.mkdir()
            host = Client(home=home, url=server.url, root=demo.root_path)
            yield ClientWorld(demo, server, host, tmp_path)
    finally:
        served.stop()


def client_outputs(world: ClientWorld) -> dict[str, Outputs]:
    """Each client command run for real, in the order a host lives through them."""
    host, tmp = world.host, world.tmp
    out: dict[str, Outputs] = {}
    init = host.init("--json")
    out["init"] = Outputs([envelope_of(init)])
    world.demo.switch_to_rekor_v2()  # a change for sync, diff and the words they print
    out["sync"] = Outputs([envelope_of(host.run("sync", "--json"))])
    out["diff"] = Outputs([envelope_of(host.run("diff", "--json"))])
    out["keys"] = Outputs([envelope_of(host.run("keys", "--json"))])
    out["get"] = Outputs(
        [envelope_of(host.run("get", "rekor-key-v2", "--out", str(tmp / "k.pub"), "--json"))]
    )
    exported = host.run("export", "--format", "trusted-root", "--out", str(tmp / "tr.json"), "--json")
    out["export"] = Outputs([envelope_of(exported)])
    bundle = tmp / "trust.tar.zst"
    sealed = host.run("snapshot", "export", "--out", str(bundle), "--depth", "100", "--json")
    out["snapshot export"] = Outputs([envelope_of(sealed)])
    out["snapshot inspect"] = Outputs([envelope_of(host.run("snapshot", "inspect", str(bundle), "--json"))])
    out["import"] = Outputs([envelope_of(host.run("import", str(bundle), "--json"))])  # holds the log state
    out["status"] = Outputs([envelope_of(host.status())])
    from_env = host.run("config", "show", "--json", env=clean_env(STELLA_TUF_ROOT_URL=host.url))
    out["config show"] = Outputs([envelope_of(from_env)])
    # a host whose repository does not answer: the checks that are not ok
    unreachable = clean_env(STELLA_TUF_ROOT_URL="http://127.0.0.1:9/unreachable")
    out["doctor"] = Outputs([envelope_of(host.run("doctor", "--json", env=unreachable), failed=True)])
    out["agent"] = Outputs([envelope_of(host.run("agent", "--once", "--json"))])
    case = REKOR_V2_CASE  # a real staging bundle; the demo host's trusted root holds staging's logs

    def verify(identity: str, artifact: str) -> Result:
        bundle = str(STAGING / "bundles" / case["bundle"])
        return host.run("verify", "--bundle", bundle, "--certificate-identity", identity,
                        "--certificate-oidc-issuer", case["issuer"], artifact, "--json")  # fmt: skip

    real_artifact = str(STAGING / "bundles" / case["artifact"])
    out["verify"] = Outputs(
        [envelope_of(verify(case["identity"], real_artifact))],
        [envelope_of(verify("someone@else.example", real_artifact), failed=True)],
    )
    failures = [
        verify(case["identity"], "sha256:abc"),  # a malformed digest: usage, exit 2
        Client(home=tmp / "nowhere", url=host.url, root=host.root).status(),  # not initialised, exit 3
    ]
    world.server.inject("/metadata/timestamp.json", "status", 503)
    failures.append(host.run("sync", "--json"))
    world.server.heal()
    out["any failure"] = Outputs([], [envelope_of(run, failed=True) for run in failures])
    return out


# ---- the operator side: a workspace, one root key carried away on a drive --------------------
def operator_outputs(tmp: Path) -> dict[str, Outputs]:
    ws = tmp / "ws"
    ok(repo(ws, "init"))
    drive = tmp / "root-drive-3"
    drive.mkdir()
    (ws / "keys" / "root3.pem").rename(drive / "root3.pem")  # a key listed but not held here
    out: dict[str, Outputs] = {}
    for key, args in {"repo": ["status"], "repo keys": ["keys"], "repo roots": ["roots"]}.items():
        out[key] = Outputs([envelope_of(repo(ws, *args, "--json"))])
    # 400 days: the yearly root is inside the window (needs attention, exit 1, roles listed)
    out["repo check"] = Outputs([envelope_of(repo(ws, "check", "--within", "400d", "--json"), failed=True)])
    published = repo(ws, "publish", "--json")  # nothing staged: a failure envelope
    out["repo"].error.append(envelope_of(published, failed=True))
    # the file a ceremony's procedure reads with jq: root.json as the workspace publishes it
    metadata = next(ws.rglob("metadata/1.root.json")).parent
    out["metadata/root.json"] = Outputs([(metadata / "1.root.json").read_text()])
    return out


CLIENT_KEYS = {
    "init",
    "sync",
    "diff",
    "keys",
    "get",
    "export",
    "snapshot export",
    "snapshot inspect",
    "import",
    "status",
    "config show",
    "doctor",
    "agent",
    "verify",
    "any failure",
}
OPERATOR_KEYS = {"repo", "repo keys", "repo roots", "repo check", "metadata/root.json"}


def test_every_jq_line_is_found_and_has_a_runner() -> None:
    """The extraction reads what the issue listed, and no jq line lacks a runner (a new jq
    line in README or --help fails here until a runner covers its command)."""
    places = {line.where for line in ALL_LINES}
    for where in (
        "`trust status --help`",
        "`trust keys --help`",
        "`trust diff --help`",
        "`trust repo keys --help`",
        "`trust repo roots --help`",
        "`trust repo check --help`",
        "`trust snapshot inspect --help`",
        "`trust doctor --help`",
        "`trust config show --help`",
        "`trust agent --help`",
    ):
        assert where in places, f"no jq line found in {where}"
    readme = [line for line in ALL_LINES if line.where.startswith("README.md")]
    assert len(readme) >= 25, readme  # the table alone holds 25 expressions
    unmatched = sorted(
        f"{line.where}: {line.command}"
        for line in ALL_LINES
        if runner_key(line.command) not in CLIENT_KEYS | OPERATOR_KEYS
    )
    assert not unmatched, f"jq lines whose command no runner here covers: {unmatched}"
    assert all(line.expression.startswith((".", "[")) for line in ALL_LINES), ALL_LINES


@pytest.mark.slow
@needs_jq
def test_client_jq_lines_against_real_output(client_world: ClientWorld) -> None:
    outputs = client_outputs(client_world)
    assert set(outputs) == CLIENT_KEYS
    lines = [line for line in ALL_LINES if runner_key(line.command) in CLIENT_KEYS]
    assert len(lines) >= 25
    problems = [p for line in lines for p in evaluate(line, outputs[runner_key(line.command)])]
    assert not problems, "\n".join(problems)


@needs_jq
def test_operator_jq_lines_against_real_output(tmp_path: Path) -> None:
    outputs = operator_outputs(tmp_path)
    assert set(outputs) == OPERATOR_KEYS
    lines = [line for line in ALL_LINES if runner_key(line.command) in OPERATOR_KEYS]
    assert len(lines) >= 6
    problems = [p for line in lines for p in evaluate(line, outputs[runner_key(line.command)])]
    assert not problems, "\n".join(problems)


@needs_jq
def test_a_missing_result_prefix_is_caught() -> None:
    """The check itself can fail: the old README line prints null on real output."""
    document = (
        '{"command": "status", "ok": true, "result": {"freshness": {"state": "fresh"}}, '
        '"warnings": [], "error": null}'
    )
    old = JqLine("README.md (before issue 20)", "trust status --json", (), ".freshness.state")
    fixed = JqLine("README.md", "trust status --json", (), ".result.freshness.state")
    assert evaluate(old, Outputs([document])) and not evaluate(fixed, Outputs([document]))
