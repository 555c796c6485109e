"""The root ceremony: edit a staged root, collect signatures one key at a time (or from a
hardware key through `payload`/`add-signature`), commit only when the old and the new
root thresholds are both met (TUF spec 5.3.4) and a client accepts the result."""

from __future__ import annotations

import os
import shutil
from datetime import datetime
from pathlib import Path
from typing import Any

from securesystemslib.signer import Key, Signature, SSlibKey
from tuf.api.exceptions import UnsignedMetadataError
from tuf.api.metadata import Metadata, Root, Targets
from tuf.api.serialization.json import JSONSerializer

from stella_trust._internal.fs import atomic_write
from stella_trust._internal.timefmt import utcnow
from stella_trust.errors import UsageError
from stella_trust.repository.keyring import public_block
from stella_trust.repository.keys import key_name, passphrase
from stella_trust.repository.metadata import Repository, generate_signer
from stella_trust.repository.outcome import Outcome, RepoError
from stella_trust.repository.policy import FIELD, RolePolicy, stamp_policy
from stella_trust.repository.publish import PublishSteps
from stella_trust.repository.workspace import BAD_METADATA, ROLES

NEXT = ".next"  # keys/<name>.next.pem: a rotation's new key until its root is committed


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
                f"{path} is not root metadata ({exc})", hint="`trust repo clean` drops it"
            ) from exc
        if md.signed.version != repo.root.signed.version + 1:
            raise RepoError(
                f"staged root v{md.signed.version} is stale: root v{repo.root.signed.version} is published "
                "(committed on another machine?)",
                hint="drop it with `trust repo clean` (after `trust repo pull` if another machine published)",
            )
        return md

    def _new_staged_root(self, repo: Repository, now: datetime) -> Metadata[Root]:
        md = Metadata[Root].from_bytes(repo.root.to_bytes())
        md.signed.version += 1
        md.signed.expires = (now + self.policies(repo)["root"].lifetime).replace(microsecond=0)
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
        """A key made here (keys/NAME.pem, encrypted), or one made elsewhere (`--public-key`)."""
        if public_key is not None:
            from cryptography.hazmat.primitives import serialization

            try:
                pem = public_block(public_key.read_bytes())
                if pem is None:
                    raise ValueError("no BEGIN PUBLIC KEY block")
                key = SSlibKey.from_crypto(serialization.load_pem_public_key(pem))
            except (OSError, ValueError, TypeError) as exc:
                raise UsageError(f"{public_key} is not a PEM public key ({exc})") from exc
            return key, f"{key.keyid[:12]}… ({public_key.name})"
        name = name or self._free_name(role)
        if (self.keys_dir / f"{name}.pem").exists():
            raise UsageError(f"keys/{name}.pem exists already")
        signer = generate_signer(key_type or self.key_type())
        self._register(name, role, signer, passphrase(name, confirm=True))
        return signer.public_key, name

    def _keyid_of(self, name: str, root: Root, role: str) -> str:
        """A keyid, a key file name or a key file path -> the keyid ROLE lists."""
        if name in root.roles[role].keyids:
            return name
        for kf in self.key_files():
            if kf.name == name or str(kf.path) == name:
                keyid = kf.matching(dict(root.keys), root.roles[role].keyids)
                if keyid:
                    return keyid
        matches = [k for k in root.roles[role].keyids if k.startswith(name)]
        if len(matches) == 1 and len(name) >= 8:
            return matches[0]
        raise UsageError(f"{name} is not a {role} key of the staged root", hint="see `trust repo keys`")

    def _free_name(self, role: str) -> str:
        taken = set(self.index()) | {key_name(p) for p in self.keys_dir.glob("*.pem")}
        number = 1
        while (candidate := role if number == 1 else f"{role}{number}") in taken:
            number += 1
        return candidate

    def set_expiry(self, role: str, policy: RolePolicy, now: datetime | None = None) -> Outcome:
        """Change a role's rhythm: online roles are re-signed now; targets and delegated roles
        take it at their next publication; root in the staged root (the next ceremony)."""
        now = now or utcnow()
        repo = self._load()
        if role in ("snapshot", "timestamp"):
            md = repo.snapshot if role == "snapshot" else repo.timestamp
            stamp_policy(md, policy)
            outcome = self.bump_online(now, force=True, repo=repo)
            return Outcome(
                f"{role} lifetime {policy.field()['lifetime']}, renewed when "
                f"{policy.field()['resign-within']} are left; {outcome.message}",
                warnings=outcome.warnings,
            )
        if role == "root":
            md_root = self.staged_root(repo) or self._new_staged_root(repo, now)
            had = len(md_root.signatures)
            md_root.signed.unrecognized_fields[FIELD] = policy.field()
            md_root.signed.expires = (now + policy.lifetime).replace(microsecond=0)
            md_root.signatures.clear()
            self._save_staged_root(md_root)
            return Outcome(
                f"staged root v{md_root.signed.version}: lifetime {policy.field()['lifetime']} (expires "
                f"{md_root.signed.expires:%Y-%m-%d}); sign it with `trust repo sign root --key FILE`",
                warnings=[f"the edit discarded {had} signature(s) on the staged root"] if had else [],
            )
        self.role_keys(repo, role)  # refuses an unknown role
        changes = self._changes()
        changes["expiry"][role] = {
            "lifetime": policy.lifetime.total_seconds(),
            "resign_within": policy.resign_within.total_seconds(),
        }
        self._save_changes(changes)
        self._drop_staged_role(role)
        return Outcome(
            f"staged: {role} lifetime {policy.field()['lifetime']} from its next publication; "
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

    # ---- commit -----------------------------------------------------------------------------
    def commit(self, now: datetime | None = None) -> Outcome:
        """Publish the staged root when both root thresholds are met, re-signing with the keys
        at hand every role the new root no longer accepts; refused (nothing written) when a
        client would reject the result."""
        now = now or utcnow()
        repo = self._load()
        published = self.published()
        md = self.staged_root(repo)
        if md is None:
            raise UsageError("no staged root to commit", hint="`trust repo status` shows what is staged")
        try:
            repo.root.signed.verify_delegate("root", md.signed_bytes, md.signatures)
            md.signed.verify_delegate("root", md.signed_bytes, md.signatures)
        except UnsignedMetadataError:
            raise RepoError(
                f"commit refused: {self.root_status(repo, md)}",
                hint="collect more signatures with `trust repo sign root --key FILE`",
            ) from None
        old_root = repo.root.signed
        repo.root = md
        repo.record_root()
        resigned = self._resign_for_new_root(repo, md.signed, now)
        self.release(repo, published)
        (self.staged_dir / "root.json").unlink()
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
        return Outcome(message, warnings=warnings, details={"root": md.signed.version, "resigned": resigned})

    def _resign_for_new_root(self, repo: Repository, root: Root, now: datetime) -> list[str]:
        """Every role the new root's keys or thresholds no longer accept is re-signed here,
        or the commit is refused: a root that orphans targets fails every client."""
        resigned: list[str] = []
        have, need = self.signatures(repo, "targets", repo.targets, root=root)
        if have < need:
            signers = self._signers("targets", repo, root=root)
            if len(signers) < need:
                raise RepoError(
                    f"commit refused: root v{root.version} does not accept targets "
                    f"v{repo.targets.signed.version} ({have}/{need} of its targets keys signed it) and "
                    f"{len(signers)} of the new targets keys "
                    "are at hand to re-sign it",
                    hint="commit where the new targets key(s) are (or add them: keys are found by their "
                    "public key), so targets is re-signed in the same publication",
                )
            targets = repo.targets
            targets.signed.version += 1
            targets.signed.expires = (now + self.policies(repo)["targets"].lifetime).replace(microsecond=0)
            targets.signatures.clear()
            for signer in signers:
                targets.sign(signer, append=True)
            resigned.append(f"targets v{targets.signed.version}")
        stale_online = [
            role
            for role, other in (("snapshot", repo.snapshot), ("timestamp", repo.timestamp))
            if self.signatures(repo, role, other, root=root)[0] < root.roles[role].threshold
        ]
        if resigned or stale_online:
            for role in ("snapshot", "timestamp"):
                signers = self._signers(role, repo, root=root)
                if len(signers) < root.roles[role].threshold:
                    raise RepoError(
                        f"commit refused: root v{root.version} needs a new {role} signed by its "
                        f"{role} key(s), and {len(signers)} are at hand",
                        hint=f"commit where the {role} key is (keys are found by their public key)",
                    )
                repo.signers[role] = signers
            for name in repo.delegated:
                repo.signers.pop(name, None)
            repo.sign_snapshot_and_timestamp(now)
            resigned += [
                f"snapshot v{repo.snapshot.signed.version}",
                f"timestamp v{repo.timestamp.signed.version}",
            ]
        return resigned

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
        """Drop staged state (root under ceremony, staged roles, target changes); `.next` keys
        of an abandoned rotation are kept in keys/retired/ (they are never deleted)."""
        dropped = [
            p.name
            for p in (
                self.staged_dir / "root.json",
                self.staged_dir / "targets.json",
                self.staged_dir / "changes.json",
            )
            if p.exists()
        ]
        dropped += [f"roles/{p.name}" for p in (self.staged_dir / "roles").glob("*.json")]
        for name in ("root.json", "targets.json", "changes.json"):
            (self.staged_dir / name).unlink(missing_ok=True)
        shutil.rmtree(self.staged_dir / "roles", ignore_errors=True)
        shutil.rmtree(self.staged_dir / "targets", ignore_errors=True)
        (self.staged_dir / "targets").mkdir(parents=True, exist_ok=True)
        for kf in self.key_files():
            if kf.name.endswith(NEXT):
                (self.keys_dir / "retired").mkdir(exist_ok=True)
                os.replace(kf.path, self.keys_dir / "retired" / kf.path.name)
                dropped.append(f"keys/{kf.path.name} (to keys/retired/)")
        return Outcome(
            f"dropped staged {', '.join(dropped)}" if dropped else "nothing was staged",
            details={"dropped": dropped},
        )


def _is_hex(text: bytes) -> bool:
    try:
        text.decode("ascii")
    except UnicodeDecodeError:
        return False
    return len(text) % 2 == 0 and all(c in b"0123456789abcdefABCDEF" for c in text)
