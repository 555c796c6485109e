"""The operator's repository workspace behind `trust repo`.

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
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

from securesystemslib.signer import CryptoSigner, Key, Signer
from tuf.api.metadata import Metadata, Root, Targets
from tuf.api.serialization import DeserializationError

from stella_trust._internal.fs import atomic_write
from stella_trust._internal.timefmt import expiry_phrase, human_duration, parse_duration
from stella_trust.errors import UsageError
from stella_trust.repository.expiry import ExpiryRule, read_rule, rule_for_lifetime
from stella_trust.repository.keyring import KeyFile, key_file, key_files, read_index
from stella_trust.repository.keys import passphrase, save_key
from stella_trust.repository.ledger import Ledger
from stella_trust.repository.metadata import Expiries, Repository, generate_signer
from stella_trust.repository.outcome import Outcome, RepoError
from stella_trust.repository.published import Published, push_lock, release, served_directory
from stella_trust.repository.pulling import Pulled, pull
from stella_trust.repository.source import Source, versions_in

ROLES = ("root", "targets", "snapshot", "timestamp")
# what reading a damaged or missing metadata file raises (DeserializationError is not a ValueError)
BAD_METADATA = (OSError, ValueError, DeserializationError)
DEFAULT_EXPIRES = {"root": "365d", "targets": "180d", "snapshot": "14d", "timestamp": "1d"}
LOW_LIFETIME = 0.25  # warn when a signed role has less than this share of its lifetime left


RESTORE_HINT = "restore the workspace file from your backup (or the other machine's copy)"


def parse_expires(text: str | None) -> dict[str, str]:
    """`root=365d,timestamp=1d` -> lifetimes per role (defaults for the others)."""
    lifetimes = dict(DEFAULT_EXPIRES)
    for part in filter(None, (text or "").split(",")):
        role, _, value = part.partition("=")
        role = role.strip()
        if role not in ROLES or not value:
            raise UsageError(f"--expires: {part!r} is not ROLE=DURATION with ROLE in {', '.join(ROLES)}")
        try:
            parse_duration(value)
        except ValueError as exc:
            raise UsageError(f"--expires: {exc}") from exc
        lifetimes[role] = value.strip()
    return lifetimes


class WorkspaceBase:
    """The workspace's files and keys; the operator steps build on it (publish, ceremony,
    rotation, reports), each in its own module.

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
        return str(self.config().get("key_type", "ed25519"))

    def rules(self, repo: Repository) -> dict[str, ExpiryRule]:
        """Each role's rhythm, as signed into its metadata (repository/expiry.py)."""
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
    def _load(self) -> Repository:
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

    def source_of(self) -> Source | None:
        if self.source is None or isinstance(self.source, Source):
            return self.source
        self.source = Source(self.source)
        return self.source

    def _pull_source(self) -> Pulled:
        source = self.source_of()
        assert source is not None
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

    # ---- keys -------------------------------------------------------------------------------
    def index(self) -> dict[str, str]:
        return read_index(self.keys_dir)

    def _save_index_entry(self, name: str, role: str, key: Key, origin: str | None = None) -> None:
        """keys/index.json: name -> keyid (a cache), and for a key added from a public key
        file, that file (`where_held` names it in messages)."""
        path = self.keys_dir / "index.json"
        try:
            data = json.loads(path.read_text())
            if not isinstance(data, dict):
                data = {}
        except (OSError, ValueError):
            data = {}
        data[name] = {"role": role, "keyid": key.keyid, "scheme": key.scheme}
        if origin is not None:
            data[name]["from"] = origin
        atomic_write(path, json.dumps(data, indent=2).encode() + b"\n")

    def _drop_index_entry(self, name: str) -> None:
        path = self.keys_dir / "index.json"
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            return
        if isinstance(data, dict) and data.pop(name, None) is not None:
            atomic_write(path, json.dumps(data, indent=2).encode() + b"\n")

    def _register(self, name: str, role: str, signer: Signer, secret: bytes) -> None:
        assert isinstance(signer, CryptoSigner)
        self.keys_dir.mkdir(parents=True, exist_ok=True)
        os.chmod(self.keys_dir, 0o700)
        save_key(self.keys_dir / f"{name}.pem", signer, secret)
        self._save_index_entry(name, role, signer.public_key)

    def key_files(self) -> list[KeyFile]:
        return key_files(self.keys_dir)

    @staticmethod
    def role_keys(
        repo: Repository | None, role: str, root: Root | None = None
    ) -> tuple[dict[str, Key], list[str], int]:
        """(keys, keyids, threshold) a role is verified with: the root's for top-level roles,
        the delegating targets' for a delegated role."""
        if role in ROLES:
            assert root is not None or repo is not None
            root = root or repo.root.signed  # type: ignore[union-attr]
            return dict(root.keys), list(root.roles[role].keyids), root.roles[role].threshold
        assert repo is not None
        delegations = repo.targets.signed.delegations
        if delegations is None or not delegations.roles or role not in delegations.roles:
            raise UsageError(
                f"{role!r} is not a role of this repository",
                hint="see `trust repo status`",
            )
        delegated = delegations.roles[role]
        return dict(delegations.keys), list(delegated.keyids), delegated.threshold

    def signatures(
        self, repo: Repository, role: str, md: Metadata[Any], root: Root | None = None
    ) -> tuple[int, int]:
        """(valid signatures by distinct listed keys, threshold), per python-tuf's check."""
        delegator: Any = (root or repo.root.signed) if role in ROLES else repo.targets.signed
        result = delegator.get_verification_result(role, md.signed_bytes, md.signatures)
        return len(result.signed), int(result.threshold)

    def keys_at_hand(self, role: str, repo: Repository | None = None, root: Root | None = None) -> list[str]:
        """Names of this machine's key files whose public key `role` lists."""
        if repo is None and root is None:
            repo = self._load()
        keys, keyids, _ = self.role_keys(repo, role, root)
        return sorted(kf.name for kf in self.key_files() if kf.matching(keys, keyids))

    def _signers(self, role: str, repo: Repository | None = None, root: Root | None = None) -> list[Signer]:
        """A signer for every key file at hand that `role` lists (one per keyid)."""
        keys, keyids, _ = self.role_keys(repo, role, root)
        signers: dict[str, Signer] = {}
        for kf in self.key_files():
            keyid = kf.matching(keys, [k for k in keyids if k not in signers])
            if keyid is not None:
                signers[keyid] = kf.signer_for(keyid, keys[keyid])
        return list(signers.values())

    def signer_from_file(self, path: Path, keys: dict[str, Key], keyids: list[str], what: str) -> Signer:
        """The signer of one key file, refused unless `what` lists its key: a signature by a
        key the role does not list is useless, and exit 0 would say it counted."""
        kf = key_file(path, self.index())
        keyid = kf.matching(keys, keyids)
        if keyid is None and kf.public_pem is None:
            # an old key file without its public block: decrypt it to know which key it is
            from securesystemslib.signer import SSlibKey

            from stella_trust.repository.keys import load_private

            private = load_private(path)
            for candidate in keyids:
                key = keys.get(candidate)
                if (
                    key is not None
                    and SSlibKey.from_crypto(private.public_key(), scheme=key.scheme).keyval == key.keyval
                ):
                    assert isinstance(key, SSlibKey)
                    return CryptoSigner(private, key)
        if keyid is None:
            raise RepoError(
                f"refused: {path} is not one of the keys {what} lists",
                hint=f"see `trust repo keys {self.hint_path()}` for which file serves which role",
            )
        return kf.signer_for(keyid, keys[keyid])

    # ---- init ---------------------------------------------------------------------------
    def init(
        self,
        *,
        root_keys: int = 3,
        root_threshold: int = 2,
        targets_keys: int = 1,
        targets_threshold: int = 1,
        key_type: str = "ed25519",
        expires: dict[str, str] | None = None,
        now: datetime | None = None,
    ) -> Outcome:
        if (self.repo_dir / "metadata").exists() or self.config_path.exists():
            raise UsageError(f"{self.path} already holds a repository workspace")
        if any(self.keys_dir.glob("*.pem")):
            raise UsageError(
                f"{self.keys_dir} already holds key files: init would bury them among new ones",
                hint="to work on an existing repository, `trust repo pull --from URL|DIR --root "
                "1.root.json` here; to create a new one, use an empty directory",
            )
        if not 1 <= root_threshold <= root_keys:
            raise UsageError("--root-threshold must be between 1 and --root-keys")
        if not 1 <= targets_threshold <= targets_keys:
            raise UsageError("--targets-threshold must be between 1 and --targets-keys")
        lifetimes = expires or dict(DEFAULT_EXPIRES)
        try:
            rules = {role: rule_for_lifetime(role, parse_duration(lifetimes[role])) for role in ROLES}
        except ValueError as exc:
            raise UsageError(f"--expires: {exc}") from exc
        names = {
            "root": ["root" if i == 0 else f"root{i + 1}" for i in range(root_keys)],
            "targets": ["targets" if i == 0 else f"targets{i + 1}" for i in range(targets_keys)],
            "snapshot": ["snapshot"],
            "timestamp": ["timestamp"],
        }
        secrets = {name: passphrase(name, confirm=True) for role in ROLES for name in names[role]}
        signers: dict[str, list[Signer]] = {
            role: [generate_signer(key_type) for _ in names[role]] for role in ROLES
        }
        (self.staged_dir / "targets").mkdir(parents=True, exist_ok=True)
        atomic_write(self.config_path, json.dumps({"key_type": key_type}, indent=2).encode() + b"\n")
        for role in ROLES:
            for name, signer in zip(names[role], signers[role], strict=True):
                self._register(name, role, signer, secrets[name])
        from stella_trust.repository.expiry import FIELD

        Repository.create(
            self.repo_dir,
            root_keys=root_keys,
            root_threshold=root_threshold,
            key_type=key_type,
            expiries=Expiries(**{role: rules[role].lifetime for role in ROLES}),
            now=now,
            signers=signers,
            thresholds={"targets": targets_threshold},
            fields={role: {FIELD: rules[role].field()} for role in ROLES},
        )
        return Outcome(
            f"created {self.repo_dir} (root v1: {root_keys} keys, threshold {root_threshold}; "
            f"targets threshold {targets_threshold}); keys in {self.keys_dir}"
        )

    def _require(self, role: str, repo: Repository | None = None, root: Root | None = None) -> list[Signer]:
        signers = self._signers(role, repo, root)
        _, _, threshold = self.role_keys(repo, role, root)
        if len(signers) < threshold:
            version = (root or repo.root.signed).version if (root or repo) else "?"  # type: ignore[union-attr]
            raise RepoError(
                f"{role} needs {threshold} key(s) listed by root v{version}; "
                f"{len(signers)} at hand in {self.keys_dir}",
                hint=f"run this where the {role} key lives (any file name; see "
                f"`trust repo keys {self.hint_path()}`)",
            )
        return signers

    def lifetime_warnings(self, repo: Repository, now: datetime) -> list[str]:
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


def staged_targets_of(path: Path) -> Metadata[Targets]:
    return Metadata[Targets].from_file(str(path))
