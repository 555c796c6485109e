"""The root ceremony: edit a staged root, collect signatures one key at a time (or from a
hardware key through `payload`/`add-signature`), commit only when the old and the new
root thresholds are both met (TUF spec 5.3.4) and a client accepts the result."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from datetime import datetime
from pathlib import Path
from typing import Any

from securesystemslib.signer import Key, Signature, SSlibKey
from tuf.api.exceptions import UnsignedMetadataError
from tuf.api.metadata import Metadata, Root, Snapshot, Targets, Timestamp
from tuf.api.serialization.json import JSONSerializer

from stella_trust._internal.fs import atomic_write
from stella_trust._internal.timefmt import utcnow
from stella_trust.errors import UsageError
from stella_trust.repository.expiry import FIELD, ExpiryRule, stamp_rule
from stella_trust.repository.keyring import key_file, public_block
from stella_trust.repository.keys import key_name, passphrase
from stella_trust.repository.metadata import Repository, generate_signer
from stella_trust.repository.outcome import Outcome, RepoError
from stella_trust.repository.publish import SET_FILE, PublishSteps
from stella_trust.repository.workspace import BAD_METADATA, ROLES

NEXT = ".next"  # keys/<name>.next.pem: a rotation's new key until its root is committed
CREATED_FILE = "created-keys.json"  # staged/: key files `root add-key` made for the staged root


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


class CeremonySteps(PublishSteps):
    # ---- the staged root ------------------------------------------------------------------
    def staged_root(self, repo: Repository) -> Metadata[Root] | None:
        """The root under ceremony, refused when it is stale (committed elsewhere, or made
        against an older root): its signatures would be collected for nothing."""
        path = self.staged_dir / "root.json"
        if not path.exists():
            return None
        try:
            md = Metadata[Root].from_file(str(path))
        except BAD_METADATA as exc:
            raise RepoError(
                f"{path} is not root metadata ({exc})", hint=f"`trust repo clean {self.hint_path()}` drops it"
            ) from exc
        if md.signed.version != repo.root.signed.version + 1:
            raise RepoError(
                f"staged root v{md.signed.version} is stale: root v{repo.root.signed.version} is published "
                "(committed on another machine?)",
                hint=f"drop it with `trust repo clean {self.hint_path()}` (a change committed elsewhere is "
                "published already)",
            )
        return md

    def _new_staged_root(self, repo: Repository, now: datetime) -> Metadata[Root]:
        md = Metadata[Root].from_bytes(repo.root.to_bytes())
        md.signed.version += 1
        md.signed.expires = (now + self.rules(repo)["root"].lifetime).replace(microsecond=0)
        md.signatures.clear()
        return md

    def _save_staged_root(self, md: Metadata[Root]) -> None:
        self.staged_dir.mkdir(parents=True, exist_ok=True)
        atomic_write(self.staged_dir / "root.json", md.to_bytes(JSONSerializer(compact=False)))

    def root_edit(
        self,
        action: str,
        *,
        role: str,
        name: str | None = None,
        threshold: int | None = None,
        key_type: str | None = None,
        public_key: Path | None = None,
        now: datetime | None = None,
    ) -> Outcome:
        """add-key / revoke-key / set-threshold on the staged root (signatures start over)."""
        if role not in ROLES:
            raise UsageError(f"role must be one of {', '.join(ROLES)}")
        now = now or utcnow()
        repo = self._load()
        md = self.staged_root(repo) or self._new_staged_root(repo, now)
        had = len(md.signatures)
        root = md.signed
        if action == "add-key":
            key, label = self._new_key(role, name, key_type, public_key)
            if key.keyid in root.roles[role].keyids:
                raise UsageError(f"that key is already a {role} key")
            root.add_key(key, role)
            message = f"staged root v{root.version}: added key {label} for {role}"
        elif action == "revoke-key":
            if not name:
                raise UsageError("revoke-key needs a key name or keyid")
            keyid = self._keyid_of(name, root, role)
            if len(root.roles[role].keyids) - 1 < root.roles[role].threshold:
                raise UsageError(
                    f"revoking {name} would leave {role} below its threshold "
                    f"{root.roles[role].threshold}; lower it first with set-threshold"
                )
            root.revoke_key(keyid, role)
            message = f"staged root v{root.version}: revoked {name} from {role}"
        elif action == "set-threshold":
            if threshold is None or not 1 <= threshold <= len(root.roles[role].keyids):
                raise UsageError(
                    f"threshold must be between 1 and the {len(root.roles[role].keyids)} {role} keys"
                )
            root.roles[role].threshold = threshold
            message = f"staged root v{root.version}: {role} threshold {threshold}"
        else:
            raise UsageError(f"unknown root action {action!r}")
        md.signatures.clear()
        self._save_staged_root(md)
        warnings = [f"the edit discarded {had} signature(s) on the staged root"] if had else []
        return Outcome(message + "; sign it with `trust repo sign root --key FILE`", warnings=warnings)

    def _new_key(
        self, role: str, name: str | None, key_type: str | None, public_key: Path | None
    ) -> tuple[Key, str]:
        """A key made here (keys/NAME.pem, encrypted), or one made elsewhere (`--public-key`).
        An existing keys/NAME.pem that no role lists (made by an add-key whose root change was
        dropped) is used again rather than refused."""
        if public_key is not None:
            public_key = self.resolve(public_key)
            key = _public_key_of(public_key)
            self._save_index_entry(public_key.name, role, key, origin=str(public_key))
            return key, f"{key.keyid[:12]}… ({public_key.name})"
        name = name or self._free_name(role)
        path = self.keys_dir / f"{name}.pem"
        if path.exists():
            key = _public_key_of(path)
            serving = self._roles_listing(key)
            if serving:
                raise UsageError(
                    f"keys/{name}.pem exists already and serves {', '.join(serving)}",
                    hint="choose another name: `trust repo root add-key --role "
                    f"{role} --name {name}-2 {self.hint_path()}`",
                )
            self._note_created(name)
            return key, f"{name} (keys/{name}.pem, made earlier and listed by no role: used again)"
        signer = generate_signer(key_type or self.key_type())
        self._register(name, role, signer, passphrase(name, confirm=True))
        self._note_created(name)
        return signer.public_key, name

    def _roles_listing(self, key: Key) -> list[str]:
        """Which roles of the published (and staged) root list `key`."""
        repo = Repository.load(self.repo_dir)
        roots = [repo.root.signed]
        staged = self.staged_dir / "root.json"
        if staged.exists():
            with contextlib.suppress(*BAD_METADATA):
                roots.append(Metadata[Root].from_file(str(staged)).signed)
        found = []
        for root in roots:
            for role in ROLES:
                if any(_same_key(key, root.keys.get(k)) for k in root.roles[role].keyids):
                    found.append(f"{role} (root v{root.version})")
        return found

    def _note_created(self, name: str) -> None:
        """Remember the key files made for the staged root: `clean` retires them with it."""
        path = self.staged_dir / CREATED_FILE
        created = _read_json(path).get("keys", [])
        if name not in created:
            created.append(name)
        atomic_write(path, json.dumps({"keys": created}).encode() + b"\n")

    def _keyid_of(self, name: str, root: Root, role: str) -> str:
        """A keyid, a key file name or a key file path -> the keyid ROLE lists."""
        if name in root.roles[role].keyids:
            return name
        resolved = self.resolve(Path(name))
        if resolved.is_file():  # a key file anywhere (a drive), matched by its public key
            keyid = key_file(resolved, self.index()).matching(dict(root.keys), root.roles[role].keyids)
            if keyid:
                return keyid
        for kf in self.key_files():
            if kf.name == name or kf.path == resolved:
                keyid = kf.matching(dict(root.keys), root.roles[role].keyids)
                if keyid:
                    return keyid
        matches = [k for k in root.roles[role].keyids if k.startswith(name)]
        if len(matches) == 1 and len(name) >= 8:
            return matches[0]
        raise UsageError(
            f"{name} is not a {role} key of the staged root", hint=f"see `trust repo keys {self.hint_path()}`"
        )

    def _free_name(self, role: str) -> str:
        taken = set(self.index()) | {key_name(p) for p in self.keys_dir.glob("*.pem")}
        number = 1
        while (candidate := role if number == 1 else f"{role}{number}") in taken:
            number += 1
        return candidate

    def set_expiry(self, role: str, rule: ExpiryRule, now: datetime | None = None) -> Outcome:
        """Change a role's rhythm: online roles are re-signed now; targets and delegated roles
        take it at their next publication; root in the staged root (the next ceremony)."""
        now = now or utcnow()
        repo = self._load()
        if role in ("snapshot", "timestamp"):
            md = repo.snapshot if role == "snapshot" else repo.timestamp
            stamp_rule(md, rule)
            outcome = self.bump_online(now, force=True, repo=repo)
            return Outcome(
                f"{role} lifetime {rule.field()['lifetime']}, renewed when "
                f"{rule.field()['resign-within']} are left; {outcome.message}",
                warnings=outcome.warnings,
            )
        if role == "root":
            md_root = self.staged_root(repo) or self._new_staged_root(repo, now)
            had = len(md_root.signatures)
            md_root.signed.unrecognized_fields[FIELD] = rule.field()
            md_root.signed.expires = (now + rule.lifetime).replace(microsecond=0)
            md_root.signatures.clear()
            self._save_staged_root(md_root)
            return Outcome(
                f"staged root v{md_root.signed.version}: lifetime {rule.field()['lifetime']} (expires "
                f"{md_root.signed.expires:%Y-%m-%d}); sign it with `trust repo sign root --key FILE`",
                warnings=[f"the edit discarded {had} signature(s) on the staged root"] if had else [],
            )
        self.role_keys(repo, role)  # refuses an unknown role
        changes = self._changes()
        changes["expiry"][role] = {
            "lifetime": rule.lifetime.total_seconds(),
            "resign_within": rule.resign_within.total_seconds(),
        }
        self._save_changes(changes)
        self._drop_staged_role(role)
        return Outcome(
            f"staged: {role} lifetime {rule.field()['lifetime']} from its next publication; "
            "run `trust repo publish` where its key is"
        )

    # ---- signatures -------------------------------------------------------------------------
    def _staged_for_signing(self, role: str, repo: Repository) -> tuple[Path, Metadata[Any], Any]:
        """(file, metadata, delegator) of what `sign ROLE` / `payload ROLE` act on."""
        if role == "root":
            md = self.staged_root(repo)
            if md is None:
                raise UsageError(
                    "no staged root to sign",
                    hint="stage a change first: `trust repo root add-key|revoke-key|set-threshold`, "
                    "`trust repo set-expiry root 365d` or `trust repo rotate ROLE`",
                )
            return self.staged_dir / "root.json", md, None
        if role in ("snapshot", "timestamp"):
            raise UsageError(f"{role} is an online role: `trust repo bump-online` signs it")
        self.role_keys(repo, role)
        path = self._role_path(role)
        if not path.exists():
            raise UsageError(
                f"no staged {role} to sign", hint="run `trust repo publish` first (it stages below threshold)"
            )
        return (
            path,
            Metadata[Targets].from_file(str(path)),
            repo.targets.signed if role != "targets" else None,
        )

    def sign(self, role: str, key_file: Path, now: datetime | None = None) -> Outcome:
        """Add one signature to the staged root, targets or delegated role with one key file;
        refused when the role does not list the key (the signature would not count)."""
        key_file = self.resolve(key_file)
        repo = self._load()
        path, md, _ = self._staged_for_signing(role, repo)
        if role == "root":
            keys = {**repo.root.signed.keys, **md.signed.keys}
            keyids = list(
                dict.fromkeys([*repo.root.signed.roles["root"].keyids, *md.signed.roles["root"].keyids])
            )
            signer = self.signer_from_file(
                key_file, keys, keyids, f"root v{repo.root.signed.version} or the staged root"
            )
            md.sign(signer, append=True)
            self._save_staged_root(md)
            status = self.root_status(repo, md)
            return Outcome(f"signed staged root v{md.signed.version} with {key_file.name}; {status}")
        keys, keyids, _ = self.role_keys(repo, role)
        signer = self.signer_from_file(key_file, keys, keyids, role)
        md.sign(signer, append=True)
        atomic_write(path, md.to_bytes(JSONSerializer(compact=False)))
        have, need = self.signatures(repo, role, md)
        return Outcome(f"signed staged {role} with {key_file.name}: {have} of {need} signatures")

    def payload(self, role: str) -> bytes:
        """The canonical bytes a hardware key signs for the staged ROLE (go-tuf `payload`)."""
        repo = self._load()
        _, md, _ = self._staged_for_signing(role, repo)
        return bytes(md.signed_bytes)

    def add_signature(self, role: str, keyid: str, signature: bytes) -> Outcome:
        """Add a signature made elsewhere; verified against the key before it is kept."""
        repo = self._load()
        path, md, _ = self._staged_for_signing(role, repo)
        if role == "root":
            keys = {**repo.root.signed.keys, **md.signed.keys}
            listed = {*repo.root.signed.roles["root"].keyids, *md.signed.roles["root"].keyids}
        else:
            all_keys, keyids, _ = self.role_keys(repo, role)
            keys, listed = all_keys, set(keyids)
        matches = [k for k in listed if k == keyid or (len(keyid) >= 8 and k.startswith(keyid))]
        if len(matches) != 1:
            raise RepoError(f"refused: {keyid} is not a key {role} lists", hint="see `trust repo keys`")
        keyid = matches[0]
        text = signature.strip()
        try:
            sig_hex = bytes.fromhex(text.decode()).hex() if _is_hex(text) else signature.hex()
        except ValueError:
            sig_hex = signature.hex()
        sig = Signature(keyid, sig_hex)
        try:
            keys[keyid].verify_signature(sig, md.signed_bytes)
        except Exception as exc:
            raise RepoError(
                f"refused: the signature does not verify with key {keyid[:12]}… "
                f"over `trust repo payload {role}`",
                hint="sign exactly the bytes `trust repo payload` writes",
            ) from exc
        md.signatures[keyid] = sig
        if role == "root":
            self._save_staged_root(md)
            return Outcome(f"added signature {keyid[:12]}…; {self.root_status(repo, md)}")
        atomic_write(path, md.to_bytes(JSONSerializer(compact=False)))
        have, need = self.signatures(repo, role, md)
        return Outcome(f"added signature {keyid[:12]}… to staged {role}: {have} of {need}")

    def root_status(self, repo: Repository, md: Metadata[Root]) -> str:
        old_have, old_need = self.signatures(repo, "root", md)
        new_have, new_need = self.signatures(repo, "root", md, root=md.signed)
        mark = {True: "met", False: "NOT met"}
        return (
            f"old root v{repo.root.signed.version} threshold {old_have}/{old_need} "
            f"{mark[old_have >= old_need]}, new root v{md.signed.version} threshold "
            f"{new_have}/{new_need} {mark[new_have >= new_need]}"
        )

    # ---- commit: a root change and the roles it invalidates, as one set ------------------------
    def commit(self, now: datetime | None = None) -> Outcome:
        """Publish the staged root when both root thresholds are met, together with every
        role the new root no longer accepts, re-signed with the keys here. When some of those
        keys are held elsewhere (an offline targets key beside the CI's online one; a new
        timestamp key made on the online host), the root and those roles are staged as one
        set and nothing is published: the machine holding the remaining keys completes it
        with `commit` (or `publish`). Refused (nothing written) when a client would reject
        the result."""
        now = now or utcnow()
        repo = self._load()
        published = self.published()
        md = self.staged_root(repo)
        if md is None:
            raise UsageError(
                "no staged root to commit",
                hint=f"`trust repo status {self.hint_path()}` shows what is staged",
            )
        try:
            repo.root.signed.verify_delegate("root", md.signed_bytes, md.signatures)
            md.signed.verify_delegate("root", md.signed_bytes, md.signatures)
        except UnsignedMetadataError:
            raise RepoError(
                f"commit refused: {self.root_status(repo, md)}",
                hint="collect more signatures with `trust repo sign root --key FILE` "
                "(on the machines holding the root keys, carrying staged/root.json)",
            ) from None
        old_root = repo.root.signed
        repo.root = md
        repo.record_root()
        resigned, missing = self._complete_set(repo, md.signed, now)
        if missing:
            self._save_set(repo, md.signed.version, resigned)
            where = "; ".join(missing)
            return Outcome(
                f"staged root v{md.signed.version} with {', '.join(resigned) or 'no other role'} as one "
                f"change; nothing was published. Still needed: {where}. Carry staged/ to the machine that "
                "holds them and run `trust repo commit` there (`--to DIR` publishes)",
                done=False,
                hint="carry staged/ to that machine; nothing was published until the whole change verifies",
                details={"staged_set": {"root": md.signed.version, "roles": resigned, "missing": missing}},
            )
        pushed = self.release(repo, published)
        self._drop_set()
        retired = self._retire_keys(old_root, md.signed)
        message = f"committed root v{md.signed.version}"
        if resigned:
            message += f"; re-signed {', '.join(resigned)} for it"
        warnings = self.lifetime_warnings(repo, now)
        if retired:
            warnings.append(
                f"moved {', '.join(retired)} to {self.keys_dir / 'retired'}: "
                "destroy them when clients have moved on"
            )
        for role in ("snapshot", "timestamp"):
            new = set(md.signed.roles[role].keyids) - set(old_root.roles[role].keyids)
            here = [kf.path.name for kf in self.key_files() if kf.matching(dict(md.signed.keys), new)]
            if new and here:
                warnings.append(
                    f"the new {role} key is {', '.join(here)} here: the online host needs it now "
                    f"(`trust repo export-keys DRIVE --roles {role} {self.hint_path()}`, then into its keys/)"
                )
        return self.finished(
            Outcome(message, warnings=warnings, details={"root": md.signed.version, "resigned": resigned}),
            pushed,
        )

    def _complete_set(self, repo: Repository, root: Root, now: datetime) -> tuple[list[str], list[str]]:
        """Re-sign, with the keys here, every role `root` no longer accepts, taking what other
        machines already signed from the staged set. Returns (roles signed or staged, what is
        still missing: role, keys and where they are held)."""
        staged_set = self.ceremony_set()
        resigned: list[str] = []
        missing: list[str] = []
        rules = self.rules(repo)
        targets_changed = False
        have, need = self.signatures(repo, "targets", repo.targets, root=root)
        if have < need:
            targets = self._set_targets(repo, staged_set, now)
            for signer in self._signers("targets", repo, root=root):
                if signer.public_key.keyid not in targets.signatures:
                    targets.sign(signer, append=True)
            repo.targets = targets
            targets_changed = True
            resigned.append(f"targets v{targets.signed.version}")
            have, need = self.signatures(repo, "targets", targets, root=root)
            if have < need:
                missing.append(
                    f"targets v{targets.signed.version} has {have} of {need} signatures under root "
                    f"v{root.version}: {self.missing_keys(repo, 'targets', targets, root)}"
                )

        def accepted(role: str) -> bool:
            md = repo.role_metadata(role)
            return self.signatures(repo, role, md, root=root)[0] >= root.roles[role].threshold

        snapshot_needed = targets_changed or not accepted("snapshot")
        timestamp_needed = snapshot_needed or not accepted("timestamp")
        for name in repo.delegated:
            repo.signers.pop(name, None)
        snapshot_ready = not snapshot_needed
        if snapshot_needed:
            signers = self._signers("snapshot", repo, root=root)
            staged = self._set_online(repo, "snapshot", staged_set, root)
            if len(signers) >= root.roles["snapshot"].threshold:
                repo.signers["snapshot"] = signers
                stamp_rule(repo.snapshot, rules["snapshot"])
                repo._sign_snapshot_only(now)
                snapshot_ready = True
            elif staged is not None:
                repo.snapshot = staged
                snapshot_ready = True
            else:
                missing.append(f"snapshot: {self.missing_keys(repo, 'snapshot', Metadata(Snapshot()), root)}")
            if snapshot_ready:
                resigned.append(f"snapshot v{repo.snapshot.signed.version}")
        if timestamp_needed:
            signers = self._signers("timestamp", repo, root=root)
            staged_ts = self._set_online(repo, "timestamp", staged_set, root)
            if snapshot_ready and len(signers) >= root.roles["timestamp"].threshold:
                repo.signers["timestamp"] = signers
                stamp_rule(repo.timestamp, rules["timestamp"])
                repo._sign_timestamp_only(now)
                resigned.append(f"timestamp v{repo.timestamp.signed.version}")
            elif staged_ts is not None and snapshot_ready:
                repo.timestamp = staged_ts
                resigned.append(f"timestamp v{repo.timestamp.signed.version}")
            elif len(signers) < root.roles["timestamp"].threshold:
                missing.append(
                    f"timestamp: {self.missing_keys(repo, 'timestamp', Metadata(Timestamp()), root)}"
                )
        return resigned, missing

    def _set_targets(self, repo: Repository, staged_set: dict[str, Any], now: datetime) -> Metadata[Targets]:
        """The targets of the set: the one another machine staged with it (its signatures
        kept), else the published one at a new version above every version seen."""
        path = self._role_path("targets")
        if path.exists():
            try:
                staged = Metadata[Targets].from_file(str(path))
            except BAD_METADATA as exc:
                raise RepoError(
                    f"{path} is not targets metadata ({exc})",
                    hint=f"drop it: `trust repo clean {self.hint_path()}`",
                ) from exc
            listed = staged_set.get("roles", {}).get("targets")
            if listed != staged.signed.version:
                raise RepoError(
                    f"a release is staged (staged/targets.json v{staged.signed.version}) beside the root "
                    "change, and the root change needs targets re-signed",
                    hint=f"publish the release first: `trust repo publish {self.hint_path()}` (then commit)",
                )
            floor = max(repo.targets.signed.version, repo.floors.get("targets", 0))
            if staged.signed.version > floor:
                return staged
            path.unlink()  # stale: a release was published since; sign the published one again
        md = Metadata[Targets].from_bytes(repo.targets.to_bytes())
        md.signed.version = repo.next_version("targets", md.signed.version)
        md.signed.expires = (now + self.rules(repo)["targets"].lifetime).replace(microsecond=0)
        md.signatures.clear()
        return md

    def _set_online(
        self, repo: Repository, role: str, staged_set: dict[str, Any], root: Root
    ) -> Metadata[Any] | None:
        """A snapshot or timestamp another machine signed for this set, if it still names what
        the set publishes (a snapshot: these targets versions; a timestamp: this snapshot)."""
        path = self.staged_dir / f"{role}.json"
        if not path.exists() or staged_set.get("roles", {}).get(role) is None:
            return None
        md: Metadata[Any] = Metadata.from_file(str(path))
        if self.signatures(repo, role, md, root=root)[0] < root.roles[role].threshold:
            return None
        if md.signed.version <= repo.floors.get(role, 0):
            return None
        if role == "snapshot":
            named = {"targets.json": repo.targets.signed.version}
            named.update({f"{n}.json": d.signed.version for n, d in repo.delegated.items()})
            if any(md.signed.meta.get(n) is None or md.signed.meta[n].version != v for n, v in named.items()):
                return None
        else:
            data = repo._bytes_of("snapshot", repo.snapshot, JSONSerializer(compact=False))
            try:
                md.signed.snapshot_meta.verify_length_and_hashes(data)
            except Exception:
                return None
        return md

    def _save_set(self, repo: Repository, root_version: int, resigned: list[str]) -> None:
        """staged/: root.json (signed), targets.json (with the signatures so far), snapshot.json
        and timestamp.json when signed here, and ceremony.json naming the set."""
        roles: dict[str, int] = {}
        serializer = JSONSerializer(compact=False)
        for text in resigned:
            role, _, version = text.partition(" v")
            roles[role] = int(version)
            md = repo.role_metadata(role)
            path = self._role_path(role) if role == "targets" else self.staged_dir / f"{role}.json"
            atomic_write(path, md.to_bytes(serializer))
        document = {"root": root_version, "roles": roles}
        atomic_write(self.staged_dir / SET_FILE, json.dumps(document, indent=2).encode() + b"\n")

    def _drop_set(self) -> None:
        if "targets" in self.ceremony_set().get("roles", {}):
            self._drop_staged_role("targets")
        for name in ("root.json", SET_FILE, "snapshot.json", "timestamp.json", CREATED_FILE):
            (self.staged_dir / name).unlink(missing_ok=True)

    def _retire_keys(self, old_root: Root, new_root: Root) -> list[str]:
        """Key files whose key the old root listed and the new root does not are moved to
        keys/retired/; a rotation's `NAME.next.pem` then takes its old name."""
        retired: list[str] = []
        new_keyids = {k for role in ROLES for k in new_root.roles[role].keyids}
        old_keyids = {k for role in ROLES for k in old_root.roles[role].keyids}
        for kf in self.key_files():
            gone = kf.matching(dict(old_root.keys), old_keyids - new_keyids)
            if gone is None:
                continue
            (self.keys_dir / "retired").mkdir(exist_ok=True)
            os.replace(kf.path, self.keys_dir / "retired" / f"{kf.name}-{gone[:12]}.pem")
            retired.append(kf.path.name)
        for kf in self.key_files():
            keyid = kf.matching(dict(new_root.keys), new_keyids) if kf.name.endswith(NEXT) else None
            if keyid is None:
                continue
            final = self.keys_dir / f"{kf.name.removesuffix(NEXT)}.pem"
            if not final.exists():
                os.replace(kf.path, final)
                role = next(r for r in ROLES if keyid in new_root.roles[r].keyids)
                self._save_index_entry(final.stem, role, new_root.keys[keyid])
                self._drop_index_entry(kf.name)
        return retired

    def clean(self) -> Outcome:
        """Drop staged state (root under ceremony, the roles staged with it, staged roles,
        target changes). `.next` keys of an abandoned rotation move to keys/retired/ (keys are
        never deleted; a new rotation makes new ones). A key file `root add-key` made is kept
        where it is: the same add-key uses it again (it may also be the key of a change
        another machine completed, so it is never moved on a guess)."""
        created = _read_json(self.staged_dir / CREATED_FILE).get("keys", [])
        names = ("root.json", "targets.json", "changes.json", SET_FILE, "snapshot.json", "timestamp.json")
        dropped = [name for name in names if (self.staged_dir / name).exists()]
        dropped += [f"roles/{p.name}" for p in (self.staged_dir / "roles").glob("*.json")]
        for name in (*names, CREATED_FILE):
            (self.staged_dir / name).unlink(missing_ok=True)
        shutil.rmtree(self.staged_dir / "roles", ignore_errors=True)
        shutil.rmtree(self.staged_dir / "targets", ignore_errors=True)
        (self.staged_dir / "targets").mkdir(parents=True, exist_ok=True)
        for kf in self.key_files():
            if not kf.name.endswith(NEXT):
                continue
            (self.keys_dir / "retired").mkdir(exist_ok=True)
            target = self.keys_dir / "retired" / kf.path.name
            if target.exists():
                target = self.keys_dir / "retired" / f"{kf.name}-{utcnow():%Y%m%dT%H%M%S}.pem"
            os.replace(kf.path, target)
            self._drop_index_entry(kf.name)
            dropped.append(f"keys/{kf.path.name} (to keys/retired/)")
        kept = [name for name in created if (self.keys_dir / f"{name}.pem").exists()]
        message = f"dropped staged {', '.join(dropped)}" if dropped else "nothing was staged"
        if kept:
            message += (
                f"; kept {', '.join(f'keys/{n}.pem' for n in kept)} (made for the dropped change: "
                "`trust repo root add-key --name NAME` uses it again)"
            )
        return Outcome(message, details={"dropped": dropped, "kept_keys": kept})


def _public_key_of(path: Path) -> Key:
    from cryptography.hazmat.primitives import serialization

    try:
        pem = public_block(path.read_bytes())
        if pem is None:
            raise ValueError("no BEGIN PUBLIC KEY block")
        return SSlibKey.from_crypto(serialization.load_pem_public_key(pem))
    except (OSError, ValueError, TypeError) as exc:
        raise UsageError(f"{path} is not a PEM public key ({exc})") from exc


def _same_key(key: Key, other: Key | None) -> bool:
    return other is not None and key.keytype == other.keytype and key.keyval == other.keyval


def _is_hex(text: bytes) -> bool:
    try:
        text.decode("ascii")
    except UnicodeDecodeError:
        return False
    return len(text) % 2 == 0 and all(c in b"0123456789abcdefABCDEF" for c in text)
