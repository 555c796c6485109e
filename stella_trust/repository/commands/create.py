"""`trust repo init`: a new repository workspace: its keys (encrypted, one passphrase
each), `repo.json`, `staged/`, and root v1 with the first targets, snapshot and timestamp,
each carrying its expiry rule in its own signed metadata.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import TYPE_CHECKING

from securesystemslib.signer import Signer

from stella_trust._internal.fs import atomic_write
from stella_trust._internal.timefmt import parse_duration
from stella_trust.errors import UsageError
from stella_trust.repository.expiry import DEFAULT_EXPIRES, FIELD, rule_for_lifetime
from stella_trust.repository.keys import passphrase
from stella_trust.repository.metadata import Expiries, Repository, generate_signer
from stella_trust.repository.outcome import Outcome
from stella_trust.repository.roles import ROLES

if TYPE_CHECKING:
    from stella_trust.repository.workspace import Workspace


def init(
    ws: Workspace,
    *,
    root_keys: int = 3,
    root_threshold: int = 2,
    targets_keys: int = 1,
    targets_threshold: int = 1,
    key_type: str = "ed25519",
    expires: dict[str, str] | None = None,
    now: datetime | None = None,
) -> Outcome:
    """Create a new repository workspace: keys first (each with its own passphrase, asked
    before anything is written), then root v1 and the first roles, each carrying its expiry
    rule. Refused over an existing workspace or key files, which it would bury."""
    if (ws.repo_dir / "metadata").exists() or ws.config_path.exists():
        raise UsageError(f"{ws.path} already holds a repository workspace")
    if any(ws.keys_dir.glob("*.pem")):
        raise UsageError(
            f"{ws.keys_dir} already holds key files: init would bury them among new ones",
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
    (ws.staged_dir / "targets").mkdir(parents=True, exist_ok=True)
    atomic_write(ws.config_path, json.dumps({"key_type": key_type}, indent=2).encode() + b"\n")
    for role in ROLES:
        for name, signer in zip(names[role], signers[role], strict=True):
            ws.keys.register(name, role, signer, secrets[name])

    Repository.create(
        ws.repo_dir,
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
        f"created {ws.repo_dir} (root v1: {root_keys} keys, threshold {root_threshold}; "
        f"targets threshold {targets_threshold}); keys in {ws.keys_dir}"
    )
