"""An operator's year: the README's procedures, Fleet's handbook (a repository drive uploaded
by a plain copy) and Foundries' offline keys, followed machine by machine, with a client
syncing after every step (issue 26).

Machines are directories, each holding only its own keys; drives are directories whose files
are copied by hand; the served directory is uploaded to by `aws s3 sync` (a plain copy: no
version check, no delete) and served on 127.0.0.1. Time is simulated: this module runs in one
process under libfaketime with a clock file (FAKETIME_TIMESTAMP_FILE; the clock only ever
moves forward, between commands, so no fetcher deadline is cut short), so the CLI, python-tuf
and the client all see the moment the script sets, and every
`trust` command runs in process through the CLI's own entry point (`main(argv)`). The two
races (a timer run against a release, two releasers) run as real concurrent processes, which
inherit the same clock.

After every step it checks the invariants the issue names: no client is refused longer than
one timer interval after a documented step; no served version goes backwards (plain copies
are the documented step that may, and are repaired); no key material on the served directory
or a repository drive; and every refusal's hint, followed literally, ends green. It writes a
JSON report (the test and benchmarks/bench_operator_year.py read it).

Run: `python -m tests.e2e.operator_year --profile bounded|year --out report.json` under
libfaketime (`run_year()` below sets that up).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import shlex
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[2]
START = datetime(2027, 1, 4, 0, 0, tzinfo=UTC)  # a Monday
INTERVAL = timedelta(hours=6)  # systemd/stella-trust-bump-online.timer: OnCalendar=*-*-* 00/6:00:00

PASSPHRASES = {
    "ROOT": "correct horse root one",
    "ROOT2": "correct horse root two",
    "ROOT3": "correct horse root three",
    "ROOT4": "new root four",
    "ROOT5": "new root five",
    "ROOT6": "new root six",
    "TARGETS": "targets ci secret",
    "TARGETS_OFFLINE": "offline targets secret",
    "TARGETS_OFFLINE2": "offline targets secret two",
    "SNAPSHOT": "snapshot secret",
    "TIMESTAMP": "timestamp secret",
    "CI_BUILDS": "ci builds secret",
}


@dataclass(frozen=True)
class Profile:
    """How long and how dense: `year` is the whole story, `bounded` the same events on a
    compressed calendar (shorter lifetimes, so renewals and the root rotation come due)."""

    name: str
    days: int
    expires: str  # `trust repo init --expires`
    within: str  # `trust repo check --within` (the daily monitor)
    events: dict[str, float]  # event -> day it happens


PROFILES = {
    "year": Profile(
        "year",
        days=372,
        expires="root=365d,targets=180d,snapshot=14d,timestamp=1d",
        within="60d",
        events={
            "release": 2,
            "race-timer": 3.5,
            "offline-targets-key": 5,
            "release-threshold-2": 7,
            "releasers-race": 9,
            "releasers-fork": 10,
            "lost-root-drive": 14,
            "replace-offline-key": 20,
            "timestamp-compromise": 25,
            "old-drive-resurfaces": 30,
            "root-rotation": 320,
        },
    ),
    "bounded": Profile(
        "bounded",
        days=22,
        expires="root=40d,targets=14d,snapshot=4d,timestamp=1d",
        within="5d",
        events={
            "release": 1,
            "race-timer": 1.5,
            "offline-targets-key": 2,
            "release-threshold-2": 3,
            "releasers-race": 4,
            "releasers-fork": 5,
            "lost-root-drive": 6,
            "replace-offline-key": 7,
            "timestamp-compromise": 8,
            "old-drive-resurfaces": 9,
            "root-rotation": 11,
        },
    ),
}


@dataclass
class Result:
    code: int
    out: str
    err: str
    seconds: float = 0.0

    def hint_commands(self) -> list[str]:
        """The `trust ...` commands a `hint:` line (and warnings) print, in order."""
        found = []
        for line in self.err.splitlines():
            if line.startswith(("hint:", "warning:")):
                parts = line.split("`")
                found += [p for p in parts[1::2] if p.startswith("trust ")]
        return found


class Failed(AssertionError):
    pass


@dataclass
class Year:
    base: Path
    profile: Profile
    hook: str | None = None  # a command run after every step with the served URL (tuf-js)
    now: datetime = START
    log: list[dict[str, Any]] = field(default_factory=list)
    timings: dict[str, list[float]] = field(default_factory=dict)
    refusals: list[dict[str, Any]] = field(default_factory=list)  # client refusal streaks
    hook_refusals: list[dict[str, Any]] = field(default_factory=list)
    max_served: dict[str, int] = field(default_factory=dict)
    hints_followed: list[str] = field(default_factory=list)
    checks_red: list[str] = field(default_factory=list)
    _refused_since: datetime | None = None
    _hook_refused_since: datetime | None = None
    _last_documented: str = ""

    # ---- places ---------------------------------------------------------------------------
    def __post_init__(self) -> None:
        self.clock_file = Path(os.environ["FAKETIME_TIMESTAMP_FILE"])
        self.www = self.base / "www"
        self.machines = self.base / "machines"
        self.drives = self.base / "drives"
        self.client_home = self.base / "client"
        for place in (self.www, self.machines, self.drives, self.client_home):
            place.mkdir(parents=True, exist_ok=True)
        self.set_clock(self.now)

    def m(self, name: str) -> Path:
        return self.machines / name

    def d(self, name: str) -> Path:
        return self.drives / name

    # ---- the clock --------------------------------------------------------------------------
    def set_clock(self, moment: datetime) -> None:
        self.now = moment
        self.clock_file.write_text(f"@{moment:%Y-%m-%d %H:%M:%S}\n")

    def day(self, number: float) -> datetime:
        return START + timedelta(days=number)

    # ---- running `trust` --------------------------------------------------------------------
    def trust(self, *argv: str, env: dict[str, str] | None = None) -> Result:
        """The `trust` CLI in this process (its real entry point, argv as typed)."""
        from stella_trust._cli.app import main

        saved = dict(os.environ)
        os.environ.update(env or {})
        out, err = io.StringIO(), io.StringIO()
        started = time.perf_counter()
        try:
            with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
                try:
                    main(list(argv))
                    code = 0
                except SystemExit as exc:
                    code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        finally:
            os.environ.clear()
            os.environ.update(saved)
        seconds = time.perf_counter() - started
        words = [a for a in argv if not a.startswith("-") and "/" not in a][:2]
        self.timings.setdefault(" ".join(words), []).append(seconds)
        return Result(code, out.getvalue(), err.getvalue(), seconds)

    def repo(self, machine: Path, *argv: str, ok: bool = True) -> Result:
        result = self.trust("repo", *argv, "--path", str(machine))
        self.record("repo", machine.name, argv, result)
        if ok and result.code != 0:
            raise Failed(
                f"{self.now:%F %R} trust repo {' '.join(argv)} --path {machine}: exit {result.code}\n"
                f"{result.out}\n{result.err}"
            )
        return result

    def concurrently(self, *commands: list[str]) -> list[Result]:
        """`trust ARGV` as real processes started together (sharing this process's clock)."""
        procs = [
            subprocess.Popen(
                [sys.executable, "-m", "stella_trust", *argv],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                env={**os.environ, **{f"STELLA_{k}_PASSPHRASE": v for k, v in PASSPHRASES.items()}},
                cwd=self.base,
            )
            for argv in commands
        ]
        results = []
        for proc, argv in zip(procs, commands, strict=True):
            out, err = proc.communicate(timeout=300)
            result = Result(proc.returncode, out, err)
            self.record("concurrent", Path(argv[argv.index("--path") + 1]).name, tuple(argv), result)
            results.append(result)
        return results

    def follow(self, result: Result) -> list[Result]:
        """Run every `trust ...` command a refusal's hint (and its warnings) printed, exactly as
        printed; the issue: every refusal's hint, followed literally, ends green."""
        done = []
        for command in result.hint_commands():
            argv = shlex.split(command)
            self.hints_followed.append(command)
            outcome = self.trust(*argv[1:])
            self.record("hint", "", tuple(argv), outcome)
            if outcome.code != 0:
                raise Failed(
                    f"the hint `{command}` failed: exit {outcome.code}\n{outcome.out}\n{outcome.err}"
                )
            done.append(outcome)
        if not done:
            raise Failed(f"a refusal printed no command to follow:\n{result.err}")
        return done

    def record(self, kind: str, machine: str, argv: tuple[str, ...] | list[str], result: Result) -> None:
        self.log.append(
            {
                "at": f"{self.now:%Y-%m-%d %H:%M}",
                "kind": kind,
                "machine": machine,
                "argv": list(argv),
                "code": result.code,
                "err": result.err[-600:] if result.code else "",
            }
        )

    # ---- the served directory and its clients ---------------------------------------------
    def plain_copy(self, drive: Path) -> None:
        """`aws s3 sync drive s3://bucket`: every file copied over, nothing deleted, no check."""
        for source in sorted(drive.rglob("*")):
            if source.is_file():
                target = self.www / source.relative_to(drive)
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(source, target)
        self.after("plain copy of " + drive.name, tool=False)

    def carry(self, source: Path, target: Path) -> None:
        """Copy a directory onto a drive or machine as a person does (replacing what is there)."""
        if target.exists():
            shutil.rmtree(target)
        shutil.copytree(source, target)

    def client(self, *argv: str) -> Result:
        return self.trust(
            "--config",
            str(self.client_home / "trust.yaml"),
            "--cache-dir",
            str(self.client_home / "cache"),
            *argv,
        )

    def sync(self, step: str) -> None:
        if not (self.client_home / "trust.yaml").exists():
            return  # (the client is initialised once the first release is served)
        result = self.client("sync", "--json")
        if result.code == 0:
            if self._refused_since is not None:
                self.refusals.append(
                    {
                        "from": f"{self._refused_since:%F %R}",
                        "until": f"{self.now:%F %R}",
                        "hours": (self.now - self._refused_since).total_seconds() / 3600,
                        "after": self._last_documented,
                        "error": self._refusal_error,
                    }
                )
                if self.now - self._refused_since > INTERVAL:
                    raise Failed(
                        f"a client was refused from {self._refused_since} to {self.now} "
                        f"(after {self._last_documented}): {self._refusal_error}"
                    )
                self._refused_since = None
        else:
            if self._refused_since is None:
                self._refused_since = self.now
                self._refusal_error = (result.err.splitlines() or ["?"])[0]
            if self.now - self._refused_since > INTERVAL:
                raise Failed(f"{step}: the client is refused since {self._refused_since}: {result.err}")
        if self.hook:
            self.run_hook(step)

    def run_hook(self, step: str) -> None:
        assert self.hook is not None
        done = subprocess.run(
            [
                *shlex.split(self.hook),
                self.url,
                str(self.www / "metadata" / "1.root.json"),
                str(self.base / "hook-client"),
            ],
            capture_output=True,
            text=True,
            timeout=120,
            # node's own timers run on the monotonic clock: leave it real (Date.now() is faked)
            env={**os.environ, "FAKETIME_DONT_FAKE_MONOTONIC": "1"},
        )
        if done.returncode == 0:
            if self._hook_refused_since is not None:
                hours = (self.now - self._hook_refused_since).total_seconds() / 3600
                self.hook_refusals.append(
                    {
                        "from": f"{self._hook_refused_since:%F %R}",
                        "hours": hours,
                        "after": self._last_documented,
                        "error": self._hook_error,
                    }
                )
                if self.now - self._hook_refused_since > INTERVAL:
                    raise Failed(f"the independent client was refused for {hours} h")
                self._hook_refused_since = None
        else:
            if self._hook_refused_since is None:
                self._hook_refused_since = self.now
                self._hook_error = (done.stdout + done.stderr).strip()[-300:]
            if self.now - self._hook_refused_since > INTERVAL:
                raise Failed(f"{step}: the independent client is refused: {done.stdout}{done.stderr}")

    def served_versions(self) -> dict[str, int]:
        versions = {}
        for role in ("timestamp", "snapshot", "targets"):
            versions[role] = json.loads((self.www / "metadata" / f"{role}.json").read_text())["signed"][
                "version"
            ]
        versions["root"] = max(
            int(p.name.split(".")[0])
            for p in (self.www / "metadata").glob("*.root.json")
            if p.name.split(".")[0].isdigit()
        )
        return versions

    def after(self, step: str, *, tool: bool = True, documented: bool = True) -> None:
        """The invariants, after every step."""
        if documented:
            self._last_documented = step
        versions = self.served_versions()
        if tool:
            for role, version in versions.items():
                if version < self.max_served.get(role, 0):
                    raise Failed(
                        f"{step}: served {role} went back to v{version} from v{self.max_served[role]}"
                    )
        for role, version in versions.items():
            self.max_served[role] = max(self.max_served.get(role, 0), version)
        for place in (self.www, self.d("repository")):
            for path in place.rglob("*"):
                if path.is_file() and b"PRIVATE KEY" in path.read_bytes():
                    raise Failed(f"{step}: key material on {path}")
        self.sync(step)

    # ---- the timer and the monitor ----------------------------------------------------------
    def unit_command(self) -> list[str]:
        """ExecStart of systemd/stella-trust-bump-online.service, paths mapped to this year's."""
        unit = (REPO_ROOT / "systemd" / "stella-trust-bump-online.service").read_text()
        line = next(x for x in unit.splitlines() if x.startswith("ExecStart="))
        argv = shlex.split(line.removeprefix("ExecStart="))[1:]
        mapping = {"/srv/stella-trust-signer": str(self.timer), "/srv/www/tuf": str(self.www)}
        return [mapping.get(a, a) for a in argv]

    def timer_run(self) -> Result:
        argv = self.unit_command()
        result = self.trust(*argv)
        self.record("timer", self.timer.name, argv, result)
        if result.code != 0:
            self.timer_red = result
        return result

    def until(self, moment: datetime, *, monitor: bool = True) -> None:
        """Let time pass: the timer fires at 00, 06, 12 and 18 h and the client syncs after
        it; the daily monitor runs `repo check` at 07:00 and renews targets when it says so."""
        while True:
            nxt = self.now.replace(minute=0, second=0) + timedelta(hours=1)
            while nxt.hour % 6 != 0 and not (monitor and nxt.hour == 7):
                nxt += timedelta(hours=1)
            if nxt > moment:
                break
            self.set_clock(nxt)
            if nxt.hour % 6 == 0:
                result = self.timer_run()
                if result.code != 0:
                    raise Failed(f"{nxt}: the timer failed: {result.err}")
                self.after("timer", documented=False)
            elif monitor:
                self.monitor()
        self.set_clock(moment)

    def monitor(self) -> None:
        """`trust repo check --within W` from CI every day, on a pulled copy with no keys;
        a red targets is renewed the way the check says (threshold 2: CI stages, offline signs)."""
        mon = self.m("monitor")
        self.repo(mon, "pull", "--from", str(self.www))
        check = self.repo(mon, "check", "--within", self.profile.within, "--json", ok=False)
        if check.code == 0:
            return
        roles = json.loads(check.out)["result"]["roles"]
        red = [r for r in roles if r["state"] != "ok"]
        self.checks_red.append(f"{self.now:%F}: " + ", ".join(f"{r['role']} {r['state']}" for r in red))
        for finding in red:
            if finding["role"] == "targets" and finding["state"] == "expiring":
                self.renew_targets()
            elif finding["role"] == "root" and finding["state"] == "expiring":
                self.root_rotation()
            elif finding["role"] == "builds" and finding["state"] == "expiring":
                self.repo(self.ci, "publish", "--resign", "builds", "--to", str(self.www))
                self.after("renew builds")
            else:
                raise Failed(f"the monitor is red: {finding}")
        again = self.repo(mon, "check", "--within", self.profile.within, ok=False)
        if again.code != 0:
            self.repo(mon, "pull", "--from", str(self.www))
            self.repo(mon, "check", "--within", self.profile.within)

    # ---- the cast ------------------------------------------------------------------------------
    @property
    def offline(self) -> Path:
        return self.m("offline")

    @property
    def ci(self) -> Path:
        return self.m("ci")

    @property
    def timer(self) -> Path:
        return self.m(self._timer_name)

    _timer_name: str = "online-host"
    timer_red: Result | None = None

    def setup(self) -> None:
        """README Procedure 1, step 1-2 (Fleet's handbook steps 1-6)."""
        off = self.offline
        self.set_clock(self.day(0) + timedelta(hours=9))
        self.repo(off, "init", "--root-keys", "3", "--root-threshold", "2", "--expires", self.profile.expires)
        # the ceremony's record of every key while all were together (for a drive lost later)
        (self.base / "ceremony-keys.json").write_text(self.repo(off, "keys", "--json").out)
        for n in (2, 3):
            self.d(f"root-{n}").mkdir()
            shutil.move(off / "keys" / f"root{n}.pem", self.d(f"root-{n}") / f"root{n}.pem")
        self.repo(off, "export-keys", str(self.d("signing")), "--roles", "targets,snapshot,timestamp")
        for name in ("targets", "snapshot", "timestamp"):
            (off / "keys" / f"{name}.pem").unlink()
        self.repo(off, "push", "--to", str(self.d("repository")))
        self.repo(off, "roots")
        self.plain_copy(self.d("repository"))  # (no client yet: after() syncs once one exists)
        root1 = str(self.www / "metadata" / "1.root.json")
        # the online host: a pulled workspace and only the snapshot and timestamp keys
        self.repo(self.timer, "pull", "--from", str(self.www), "--root", root1)
        (self.timer / "keys").mkdir(mode=0o700)
        for name in ("snapshot", "timestamp"):
            shutil.copy(self.d("signing") / "keys" / f"{name}.pem", self.timer / "keys" / f"{name}.pem")
        # the CI / signing drive's machine: targets (the CI's online key), snapshot, timestamp
        self.repo(self.ci, "pull", "--from", str(self.www), "--root", root1)
        shutil.copytree(self.d("signing") / "keys", self.ci / "keys")
        self.repo(self.m("monitor"), "pull", "--from", str(self.www), "--root", root1)
        self.release(self.ci, demo=True)
        from stella_trust.repository.serve import RepositoryServer

        self.server = RepositoryServer(self.www).start()
        self.url = self.server.url
        init = self.client("init", "--tuf-url", self.url, "--root", root1, "--pin", "rekor-key-v1")
        if init.code != 0:
            raise Failed(f"client init: {init.err}")
        self.after("setup")

    def release(self, machine: Path, *, demo: bool = False, name: str | None = None) -> Result:
        """README Procedure 1 step 3: add-target, publish --to the served directory."""
        content = self.base / "content"
        content.mkdir(exist_ok=True)
        files: dict[str, bytes] = {}
        if demo:
            from stella_trust.demo.repository import FULCIO_CHAIN, fulcio_chain, rekor_keys, service_map

            pem, _ = rekor_keys()
            files = {
                "rekor-key-v1.pub": pem,
                "sigstore-services-v1.json": service_map(pem),
                FULCIO_CHAIN: fulcio_chain(self.now),
            }
        else:
            files = {name or f"release-{self.now:%Y%m%d%H%M}.txt": f"release at {self.now}".encode()}
        for target, data in files.items():
            (content / target.replace("/", "_")).write_bytes(data)
            self.repo(machine, "add-target", str(content / target.replace("/", "_")), "--name", target)
        return self.repo(machine, "publish", "--to", str(self.www), ok=False)

    # ---- the events -------------------------------------------------------------------------
    def ev_release(self) -> None:
        self.repo(self.ci, "pull", "--from", str(self.www))
        result = self.release(self.ci)
        if result.code != 0:
            raise Failed(result.err)
        self.after("release")

    def ev_race_timer(self) -> None:
        """A timer run racing a release: both start at once against the served directory."""
        content = self.base / "content"
        (content / "race.txt").write_text(f"released during a timer run at {self.now}")
        self.repo(self.ci, "add-target", str(content / "race.txt"), "--name", "race.txt")
        timer, release = self.concurrently(
            [*self.unit_command(), "--force"],
            ["repo", "publish", "--to", str(self.www), "--path", str(self.ci)],
        )
        for result in (timer, release):
            if result.code != 0:
                raise Failed(f"a lost race was fatal: {result.err}")
        targets = json.loads((self.www / "metadata" / "targets.json").read_text())["signed"]["targets"]
        if "race.txt" not in targets:
            raise Failed("the release that raced the timer is not served")
        self.after("timer racing a release")

    def offline_pull(self) -> None:
        """The online operator copies the served directory to a drive; offline pulls it."""
        self.carry(self.www, self.d("served-copy"))
        self.repo(self.offline, "pull", "--from", str(self.d("served-copy")))

    def carry_staged(self, source: Path, target: Path) -> None:
        self.carry(source / "staged", target / "staged")

    def ev_offline_targets_key(self) -> None:
        """Foundries: targets threshold 2, the CI's online key and an offline key; README
        Procedure 2 step 2 (a staged set completed where the CI key is)."""
        self.offline_pull()
        off = self.offline
        self.repo(off, "root", "add-key", "--role", "targets", "--name", "targets-offline")
        self.repo(off, "root", "set-threshold", "targets", "2")
        self.repo(off, "sign", "root", "--key", str(off / "keys" / "root.pem"))
        self.repo(off, "sign", "root", "--key", str(self.d("root-2") / "root2.pem"))
        staged = self.repo(off, "commit", ok=False)
        if staged.code != 1 or "Still needed" not in staged.err or "targets key(s)" not in staged.err:
            raise Failed(f"the offline commit should stage the set: {staged.err}")
        self.carry_staged(off, self.ci)
        self.repo(off, "clean")  # the staged set travelled to the CI machine
        self.repo(self.ci, "commit", "--to", str(self.www))
        self.after("offline targets key added (threshold 2)")

    def threshold_two_release(self, *, delegate: bool = False) -> None:
        ci, off = self.ci, self.offline
        content = self.base / "content"
        (content / "release-t2.txt").write_text(f"a threshold-2 release at {self.now}")
        self.repo(ci, "add-target", str(content / "release-t2.txt"), "--name", f"release-{self.now:%m%d}.txt")
        if delegate:
            self.repo(ci, "keygen", "ci-builds")
            self.repo(ci, "delegate", "builds", "--paths", "builds/*", "--key", str(ci / "ci-builds.pub"))
        staged = self.repo(ci, "publish", "--from", str(self.www), ok=False)
        if staged.code != 1 or "1 of 2 signatures" not in staged.out:
            raise Failed(f"a threshold-2 release should stage 1 of 2: {staged.out}{staged.err}")
        self.offline_pull()
        self.carry_staged(ci, off)
        self.repo(off, "sign", "targets", "--key", str(off / "keys" / "targets-offline.pem"))
        shutil.copy(off / "staged" / "targets.json", ci / "staged" / "targets.json")
        self.repo(off, "clean")
        self.repo(ci, "publish", "--to", str(self.www))

    def ev_release_threshold_2(self) -> None:
        self.threshold_two_release(delegate=True)
        # a second CI machine releasing builds through the delegation
        ci2 = self.m("ci2")
        self.repo(ci2, "pull", "--from", str(self.www), "--root", str(self.www / "metadata" / "1.root.json"))
        (ci2 / "keys").mkdir(mode=0o700)
        for name in ("ci-builds", "snapshot", "timestamp"):
            shutil.copy(self.ci / "keys" / f"{name}.pem", ci2 / "keys" / f"{name}.pem")
        self.after("release through threshold 2 (and a delegation for builds)")

    def ev_releasers_race(self) -> None:
        content = self.base / "content"
        commands = []
        for machine in (self.ci, self.m("ci2")):
            (content / f"{machine.name}.bin").write_text(f"build by {machine.name} at {self.now}")
            self.repo(
                machine,
                "add-target",
                str(content / f"{machine.name}.bin"),
                "--name",
                f"builds/{machine.name}-{self.now:%m%d}.bin",
            )
            commands.append(["repo", "publish", "--to", str(self.www), "--path", str(machine)])
        for result in self.concurrently(*commands):
            if result.code != 0:
                raise Failed(f"a releaser lost a race: {result.err}")
        builds = json.loads((self.www / "metadata" / "builds.json").read_text())["signed"]["targets"]
        for machine in (self.ci, self.m("ci2")):
            if f"builds/{machine.name}-{self.now:%m%d}.bin" not in builds:
                raise Failed(f"{machine.name}'s build is not served")
        self.after("two releasers racing")

    def ev_releasers_fork(self) -> None:
        """Issue 26 #3: two releasers publish the same version; the second is refused at push,
        and every hint it is given, followed literally, ends green."""
        ci2, content = self.m("ci2"), self.base / "content"
        self.repo(ci2, "pull", "--from", str(self.www))
        self.fork_drive = self.d("ci2-old-drive")
        (content / "fork.bin").write_text(f"ci2's build at {self.now}")
        self.repo(
            ci2, "add-target", str(content / "fork.bin"), "--name", f"builds/ci2-fork-{self.now:%m%d}.bin"
        )
        self.repo(ci2, "publish")  # signed on its own repository/, not pushed yet
        self.carry(ci2 / "repository", self.fork_drive)  # an old copy of its drive, for later
        self.release(self.ci, name=f"builds/ci-{self.now:%m%d}-b.bin")
        self.after("a release while ci2 held an unpublished one")
        refused = self.repo(ci2, "push", "--to", str(self.www), ok=False)
        if refused.code == 0 or "already published with different content" not in refused.err:
            raise Failed(f"the forked push should be refused: {refused.err}")
        pulled = self.follow(refused)  # pull --force
        for outcome in pulled:
            self.follow(Result(0, "", outcome.err))  # stage it again, as the warning prints it
        self.repo(ci2, "publish", "--to", str(self.www))
        self.after("a forked releaser healed by its hints")

    def ev_lost_root_drive(self) -> None:
        """Root drive 3 is lost: its key is revoked and a new root key made (Fleet step 8's
        ceremony: staged root, signed, committed, carried back on the repository drive)."""
        off = self.offline
        self.offline_pull()
        record = json.loads((self.base / "ceremony-keys.json").read_text())["result"]["keys"]
        lost = next(k["keyid"] for k in record if k["file"] == "keys/root3.pem")
        self.repo(off, "root", "add-key", "--role", "root", "--name", "root4")
        self.repo(off, "root", "revoke-key", lost, "--role", "root")
        self.repo(off, "sign", "root", "--key", str(off / "keys" / "root.pem"))
        self.repo(off, "sign", "root", "--key", str(self.d("root-2") / "root2.pem"))
        self.repo(off, "commit", "--to", str(self.d("repository")))
        self.d("root-4").mkdir(exist_ok=True)
        shutil.move(off / "keys" / "root4.pem", self.d("root-4") / "root4.pem")
        shutil.rmtree(self.d("root-3"))
        # the drive travels online the next day: the timer published newer timestamps since,
        # so the plain copy rolls them back (issue 26 #2), and the timer's next run repairs it
        self.until(self.now + timedelta(days=1))
        self.plain_copy(self.d("repository"))

    def ev_replace_offline_key(self) -> None:
        off = self.offline
        self.offline_pull()
        self.repo(off, "root", "add-key", "--role", "targets", "--name", "targets-offline2")
        self.repo(off, "clean")  # an interrupted ceremony: the same add-key must work again
        self.repo(off, "root", "add-key", "--role", "targets", "--name", "targets-offline2")
        self.repo(off, "root", "revoke-key", "keys/targets-offline.pem", "--role", "targets")
        self.repo(off, "sign", "root", "--key", str(off / "keys" / "root.pem"))
        self.repo(off, "sign", "root", "--key", str(self.d("root-2") / "root2.pem"))
        staged = self.repo(off, "commit", ok=False)
        if staged.code != 1 or "targets" not in staged.err:
            raise Failed(f"the offline commit should stage the set: {staged.err}")
        self.carry_staged(off, self.ci)
        self.repo(off, "clean")
        self.repo(self.ci, "commit", "--to", str(self.www))
        self.after("offline targets key replaced")

    def ev_timestamp_compromise(self) -> None:
        """The online host is broken into: its timestamp key is rotated on the offline machine
        (Foundries: the same rotation revokes a stolen key); the host goes red, a new one is
        installed with the new key."""
        off = self.offline
        self.offline_pull()
        staged = self.repo(off, "rotate", "timestamp", ok=False)  # one root key here: 1 of 2
        if staged.code != 1:
            raise Failed(f"rotate should stage for the second root key: {staged.err}")
        self.repo(off, "sign", "root", "--key", str(self.d("root-2") / "root2.pem"))
        committed = self.repo(off, "commit", "--to", str(self.d("repository")))
        for command in committed.hint_commands():  # the new key's way to the online host
            argv = shlex.split(command.replace("DRIVE", str(self.d("new-timestamp-key"))))
            self.hints_followed.append(" ".join(argv))
            if self.trust(*argv[1:]).code != 0:
                raise Failed(f"{command} failed")
        self.plain_copy(self.d("repository"))
        red = self.timer_run()  # the broken-into host, exactly as its unit runs it
        if red.code == 0 or "removed it" not in red.err:
            raise Failed(f"a rotated-out host must go red: {red.out}{red.err}")
        self.red_message = red.err.splitlines()[0]
        # a new online host: a pulled workspace, the new timestamp key and the snapshot key
        self._timer_name = "online-host-2"
        self.repo(
            self.timer, "pull", "--from", str(self.www), "--root", str(self.www / "metadata" / "1.root.json")
        )
        (self.timer / "keys").mkdir(mode=0o700)
        shutil.copy(self.d("new-timestamp-key") / "keys" / "timestamp.pem", self.timer / "keys")
        shutil.copy(self.d("signing") / "keys" / "snapshot.pem", self.timer / "keys")
        for machine in (self.ci, self.m("ci2")):  # the releasers' copies of the old key go
            (machine / "keys" / "timestamp.pem").unlink()
            shutil.copy(self.d("new-timestamp-key") / "keys" / "timestamp.pem", machine / "keys")
        if self.timer_run().code != 0:
            raise Failed("the new online host cannot sign")
        self.after("timestamp key compromise: rotated, new online host")

    def ev_old_drive_resurfaces(self) -> None:
        """Issue 26 #4: an old copy of a drive is synced over the served directory."""
        self.plain_copy(self.fork_drive)
        # clients refuse the rolled-back timestamp until the timer's next run repairs it;
        # then releases go on (an older differing file is repaired, never blocks)
        self.until(self.now + INTERVAL)
        pushed = self.repo(self.ci, "push", "--to", str(self.www), ok=False)
        if pushed.code != 0:
            self.follow(pushed)
        self.release(self.ci, name=f"builds/after-old-drive-{self.now:%m%d}.bin")
        self.after("releases after an old drive resurfaced")

    def renew_targets(self) -> None:
        """The monitor said targets is inside its window: re-sign it (threshold 2)."""
        ci, off = self.ci, self.offline
        staged = self.repo(ci, "publish", "--resign", "targets", "--from", str(self.www), ok=False)
        if staged.code != 1:
            raise Failed(staged.err)
        self.offline_pull()
        self.carry_staged(ci, off)
        self.repo(off, "sign", "targets", "--key", str(off / "keys" / "targets-offline2.pem"))
        shutil.copy(off / "staged" / "targets.json", ci / "staged" / "targets.json")
        self.repo(off, "clean")
        self.repo(ci, "publish", "--to", str(self.www))
        self.after("targets renewed before expiry")

    def root_rotation(self) -> None:
        """Fleet step 9 / README Procedure 1 step 4: three new root keys, then the old revoked."""
        if getattr(self, "rotated", False):
            return
        self.rotated = True
        off = self.offline
        self.offline_pull()
        for n in (5, 6, 7):
            PASSPHRASES[f"ROOT{n}"] = f"root {n} secret"
        env = {f"STELLA_ROOT{n}_PASSPHRASE": f"root {n} secret" for n in (5, 6, 7)}
        os.environ.update(env)
        for n in (5, 6, 7):
            self.repo(off, "root", "add-key", "--role", "root", "--name", f"root{n}")
        for key in (off / "keys" / "root.pem", self.d("root-2") / "root2.pem", off / "keys" / "root5.pem"):
            self.repo(off, "sign", "root", "--key", str(key))
        self.repo(off, "commit", "--to", str(self.d("repository")))
        old = [
            str(off / "keys" / "root.pem"),
            str(self.d("root-2") / "root2.pem"),
            str(self.d("root-4") / "root4.pem"),
        ]
        for key in old:
            self.repo(off, "root", "revoke-key", key, "--role", "root")
        self.repo(off, "root", "set-threshold", "root", "2")
        for n in (5, 6, 7):
            self.repo(off, "sign", "root", "--key", str(off / "keys" / f"root{n}.pem"))
        self.repo(off, "commit", "--to", str(self.d("repository")))
        root = json.loads((self.d("repository") / "metadata" / "root.json").read_text())
        if sorted(root["signed"]["roles"]["root"]["keyids"]) != sorted(
            s["keyid"] for s in root["signatures"]
        ):
            raise Failed("root keyids and signatures differ after the rotation")
        self.plain_copy(self.d("repository"))

    def run(self) -> None:
        self.setup()
        handlers: dict[str, Callable[[], None]] = {
            "release": self.ev_release,
            "race-timer": self.ev_race_timer,
            "offline-targets-key": self.ev_offline_targets_key,
            "release-threshold-2": self.ev_release_threshold_2,
            "releasers-race": self.ev_releasers_race,
            "releasers-fork": self.ev_releasers_fork,
            "lost-root-drive": self.ev_lost_root_drive,
            "replace-offline-key": self.ev_replace_offline_key,
            "timestamp-compromise": self.ev_timestamp_compromise,
            "old-drive-resurfaces": self.ev_old_drive_resurfaces,
            "root-rotation": self.root_rotation,
        }

        def moment(day: float) -> datetime:
            return self.day(day) if day % 1 else self.day(day) + timedelta(hours=10)

        for event, day in sorted(self.profile.events.items(), key=lambda item: moment(item[1])):
            self.until(moment(day))
            self.events_done.append(f"{self.now:%F %R} {event}")
            handlers[event]()
        self.until(self.day(self.profile.days))
        if self._refused_since is not None:
            raise Failed(f"the client is still refused at the end: {self._refusal_error}")

    events_done: list[str] = field(default_factory=list)

    def report(self, error: str | None) -> dict[str, Any]:
        return {
            "profile": self.profile.name,
            "ok": error is None,
            "error": error,
            "simulated_days": (self.now - START).total_seconds() / 86400,
            "events": self.events_done,
            "timer_runs": sum(1 for e in self.log if e["kind"] == "timer"),
            "commands": len(self.log),
            "refused_commands": [e for e in self.log if e["code"] != 0],
            "client_refusals": self.refusals,
            "independent_client_refusals": self.hook_refusals,
            "hints_followed": self.hints_followed,
            "checks_red": self.checks_red,
            "red_message": getattr(self, "red_message", None),
            "max_served": self.max_served,
            "median_seconds": {k: statistics.median(v) for k, v in sorted(self.timings.items())},
            "count": {k: len(v) for k, v in sorted(self.timings.items())},
        }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--profile", choices=sorted(PROFILES), default="bounded")
    parser.add_argument("--base", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--hook", help="run after every step with URL ROOT STATE_DIR (e.g. a tuf-js client)")
    args = parser.parse_args()
    os.environ.update({f"STELLA_{k}_PASSPHRASE": v for k, v in PASSPHRASES.items()})
    year = Year(args.base, PROFILES[args.profile], hook=args.hook)
    error = None
    try:
        year.run()
    except Failed as exc:
        error = str(exc)
    finally:
        server = getattr(year, "server", None)
        if server is not None:
            server.stop()
    args.out.write_text(json.dumps(year.report(error), indent=1))
    sys.exit(0 if error is None else 1)


@contextlib.contextmanager
def _nothing() -> Iterator[None]:
    yield


def run_year(base: Path, profile: str, *, hook: str | None = None, timeout: float = 3600) -> dict[str, Any]:
    """Run the year in a child process under libfaketime; its report."""
    from tests.conftest import libfaketime  # the parent's helper: the child never needs it

    base.mkdir(parents=True, exist_ok=True)
    clock = base / "clock"
    clock.write_text(f"@{START:%Y-%m-%d %H:%M:%S}\n")
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("STELLA_") and k.lower() not in ("http_proxy", "https_proxy", "all_proxy")
    }
    env.update(
        LD_PRELOAD=libfaketime(),
        FAKETIME_TIMESTAMP_FILE=str(clock),
        FAKETIME_NO_CACHE="1",
        NO_PROXY="127.0.0.1,localhost",
        no_proxy="127.0.0.1,localhost",
        PYTHONPATH=str(REPO_ROOT),
    )
    report = base / "report.json"
    argv = [
        sys.executable,
        "-m",
        "tests.e2e.operator_year",
        "--profile",
        profile,
        "--base",
        str(base / "world"),
        "--out",
        str(report),
    ]
    if hook:
        argv += ["--hook", hook]
    started = time.monotonic()  # this process's clock is real
    done = subprocess.run(argv, env=env, cwd=REPO_ROOT, capture_output=True, text=True, timeout=timeout)
    if not report.exists():
        raise AssertionError(
            f"the year did not report: exit {done.returncode}\n{done.stdout}\n{done.stderr[-4000:]}"
        )
    result: dict[str, Any] = json.loads(report.read_text())
    result["stderr"] = done.stderr[-4000:]
    result["wall_seconds"] = time.monotonic() - started
    return result


if __name__ == "__main__":
    main()
