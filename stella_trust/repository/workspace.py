"""The operator's repository workspace behind `trust repo`: its files, its keys, and the
published state every command starts from and ends with.

Layout of `--path DIR`::

    keys/<name>.pem        public key in clear + passphrase-encrypted PKCS#8 private key
                           (0600); found by the public key, whatever the file is called
    keys/index.json        a cache of file name -> keyid (never the truth)
    keys/retired/          keys replaced by a rotation
    repo.json              optional: the key type for new keys (and legacy lifetimes)
    staged/                work in progress: root under ceremony, targets awaiting
                           signatures, target files and changes to publish
    repository/            the publishable HTTP layout (metadata/, targets/)

The safe path is the easy one: nothing reaches `repository/` unless a python-tuf client
starting from the published root accepts it (repository/clientcheck.py), root edits go
through a staged root that the old and the new root thresholds must both sign, and each
staged file can be carried between machines so keys never have to meet. Any directory
holding `repository/` is a workspace: a drive with only `keys/timestamp.pem` and the
served repository is enough for the timer host.

`Workspace` is the state only (python-tuf's `Repository` is the model): the commands are
plain functions over it, one module per job in repository/commands/ (create, edits,
publish, online, ceremony, signing, commit, rotate, reports, keypairs).
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

from tuf.api.metadata import Metadata

from stella_trust._internal.timefmt import expiry_phrase, human_duration
from stella_trust.errors import UsageError
from stella_trust.repository.expiry import ExpiryRule, read_rule
from stella_trust.repository.keyring import Keyring
from stella_trust.repository.ledger import Ledger
from stella_trust.repository.metadata import Expiries, Repository
from stella_trust.repository.outcome import Outcome, RepoError
from stella_trust.repository.published import Published, served_directory
from stella_trust.repository.pulling import Pulled, pull
from stella_trust.repository.pushing import push_lock, release
from stella_trust.repository.roles import ROLES
from stella_trust.repository.source import Source, versions_in
from stella_trust.repository.staging import Staging
from stella_trust.repository.state import BAD_METADATA

LOW_LIFETIME = 0.25  # warn when a signed role has less than this share of its lifetime left
RESTORE_HINT = "restore the workspace file from your backup (or the other machine's copy)"


class Workspace:
    """One operator workspace: its directories, its keys (`keys`), its staged work
    (`staging`), and the published state a command loads, signs over and releases.

    `source` (`--from URL|DIR`): the published repository this machine must start from;
    every signing command pulls it (verified) before it signs, so machines never fork the
    version counters. `destination` (`--to DIR`): the served directory a signing command
    publishes into, before it writes its own repository/ (and which it starts from when
    no `--from` is given and DIR serves a repository already).
    """

    def __init__(
        self, path: Path, source: str | Source | None = None, destination: Path | None = None
    ) -> None:
        self.path = Path(path)
        self.keys_dir = self.path / "keys"
        self.staged_dir = self.path / "staged"
        self.repo_dir = self.path / "repository"
        self.config_path = self.path / "repo.json"
        self.destination = Path(destination) if destination is not None else None
        if source is None and self.destination is not None and (self.destination / "metadata").is_dir():
            source = str(self.destination)  # (a first publication into an empty directory pulls nothing)
        self.source: Source | str | None = source
        self.pulled: Pulled | None = None
        self.rebase = False  # the timer: forks are settled by taking the served state (pull --force)
        self.keys = Keyring(self.keys_dir, self.hint_path())
        self.staging = Staging(self.staged_dir, self.hint_path())

    @contextlib.contextmanager
    def session(self) -> Iterator[None]:
        """The whole command under the served directory's lock (`--to DIR`): between reading
        the served state and writing the result no other push can interleave, so a timer run
        and a release never race each other into a refusal."""
        if self.destination is None:
            yield
            return
        with push_lock(self.destination):
            yield

    def hint_path(self) -> str:
        """`--path WS`, absolute, for hints a person pastes as they are."""
        return f"--path {self.path.absolute()}"

    def resolve(self, argument: Path) -> Path:
        """A KEY or FILE argument: an absolute path as it is; a relative one against --path
        first (`change-passphrase keys/snapshot.pem --path WS`, as the help shows), else
        against the current directory."""
        if argument.is_absolute():
            return argument
        inside = self.path / argument
        return inside if inside.exists() or not argument.exists() else argument

    @property
    def ledger(self) -> Ledger:
        """The versions this workspace has seen and signed (repository/ledger.py)."""
        return Ledger.of(self.path)

    def marks(self) -> dict[str, int]:
        """Per role, the version every new signature must be above (repository/ledger.py):
        the ledger, the versions this repository/ holds, and those a served directory lists."""
        marks = dict(self.ledger.high)
        places = [self.repo_dir / "metadata"]
        if self.destination is not None:
            places.append(self.destination / "metadata")
        if isinstance(self.source, Source) and self.source.directory is not None:
            places.append(self.source.directory / "metadata")
        for role in ("timestamp", "snapshot", "targets"):
            for place in places:
                found = versions_in(place, role)
                if found:
                    marks[role] = max(marks.get(role, 0), found[-1])
        return marks

    # ---- configuration ------------------------------------------------------------------
    def config(self) -> dict[str, Any]:
        """repo.json when present (key type, legacy lifetimes); a directory with only a
        published `repository/` is a workspace too (the timer host, a releaser's drive)."""
        try:
            data = json.loads(self.config_path.read_text())
        except FileNotFoundError:
            if (self.repo_dir / "metadata" / "root.json").is_file() or self.source:
                return {}
            raise UsageError(
                f"{self.path} is not a trust repository workspace (no repository/ here)",
                hint="pass --path, or make one from the published repository: "
                "`trust repo pull --from URL|DIR --root 1.root.json` (`trust repo init` only "
                "creates a NEW repository)",
            ) from None
        except (OSError, ValueError) as exc:
            raise RepoError(
                f"{self.config_path} is unreadable or not JSON ({exc})", hint=RESTORE_HINT
            ) from exc
        expires = data.get("expires", {}) if isinstance(data, dict) else None
        if not isinstance(expires, dict) or not all(isinstance(v, str) for v in expires.values()):
            raise RepoError(
                f"{self.config_path} is corrupt: 'expires' must map roles to durations",
                hint=RESTORE_HINT,
            )
        config: dict[str, Any] = data
        return config

    def key_type(self) -> str:
        """The key type new keys get (repo.json; ed25519 when it does not say)."""
        return str(self.config().get("key_type", "ed25519"))

    def rules(self, repo: Repository) -> dict[str, ExpiryRule]:
        """Each role's expiry rule, as signed into its metadata (repository/expiry.py)."""
        legacy = self.config().get("expires", {})
        roles: dict[str, Metadata[Any]] = {
            "root": repo.root,
            "targets": repo.targets,
            "snapshot": repo.snapshot,
            "timestamp": repo.timestamp,
        }
        rules = {role: read_rule(md, role, legacy.get(role)) for role, md in roles.items()}
        for name, md in repo.delegated.items():
            rules[name] = read_rule(md, "targets")
        return rules

    # ---- the published state --------------------------------------------------------------
    def load(self) -> Repository:
        """The published state this command starts from (pulled first with `--from`), with
        the version marks every signature must be above."""
        self.config()
        if self.source:
            self._pull_source()
        try:
            repo = Repository.load(self.repo_dir)
        except BAD_METADATA as exc:
            raise RepoError(
                f"cannot load {self.repo_dir}: {exc}",
                hint="restore it from the served copy: "
                f"`trust repo pull --from URL|DIR --force {self.hint_path()}`",
            ) from exc
        rules = self.rules(repo)
        repo.expiries = Expiries(**{role: rules[role].lifetime for role in ROLES})
        repo.floors = self.marks()
        return repo

    def _pull_source(self) -> Pulled:
        source = self.source if isinstance(self.source, Source) else Source(str(self.source))
        self.pulled = pull(source, self.repo_dir, rebase=self.rebase)
        self.source = None  # once per command
        return self.pulled

    def published(self) -> Published:
        """What this command must move forward from: the served directory it publishes into
        (`--to`), else this workspace's own repository/."""
        if self.destination is not None:
            served = served_directory(
                self.destination, Repository.load(self.repo_dir).root_history, self.path
            )
            if served is not None:
                return served
        return Published.of(self.repo_dir)

    def release(
        self, repo: Repository, published: Published, download: list[str] | None = None
    ) -> Outcome | None:
        """Write `repo` only if a client holding `published` accepts it (and it moves forward):
        into the served directory first with `--to`, then into repository/."""
        return release(repo, published, download=download, destination=self.destination, ledger=self.ledger)

    def finished(self, outcome: Outcome, pushed: Outcome | None) -> Outcome:
        """A step's outcome with what its pull noted and what its push did."""
        if self.pulled is not None:
            outcome.warnings[:0] = self.pulled.outcome.warnings
        if pushed is not None:
            outcome.message += f"\n{pushed.message}"
            outcome.warnings += pushed.warnings
            outcome.details["pushed"] = pushed.details
        return outcome

    def lifetime_warnings(self, repo: Repository, now: datetime) -> list[str]:
        """A warning for every role with less than a quarter of its lifetime left: a
        signing step says so while the key holder is at hand, not when clients refuse it."""
        warnings = []
        rules = self.rules(repo)
        roles: list[tuple[str, Metadata[Any]]] = [
            ("root", repo.root),
            ("targets", repo.targets),
            ("snapshot", repo.snapshot),
            ("timestamp", repo.timestamp),
        ]
        roles += list(repo.delegated.items())
        for role, md in roles:
            lifetime = rules[role].lifetime
            left = md.signed.expires - now
            if left < lifetime * LOW_LIFETIME:
                warnings.append(
                    f"{role} v{md.signed.version} {expiry_phrase(md.signed.expires, now)} (of a "
                    f"{human_duration(lifetime)} lifetime): re-sign it "
                    + ("now: clients refuse it" if left.total_seconds() <= 0 else "soon")
                )
        return warnings
