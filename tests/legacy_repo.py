"""A private Sigstore instance's TUF repository in the legacy layout (cosign `pkg/cosign/tuf`,
sigstore/scaffolding, RHTAS): every key and chain of the real staging instance
(../shared/fixtures/sigstore/staging/trusted_root.json) published as its own target, marked with
custom metadata `{"sigstore": {"usage", "status", "uri"}}`, and no trusted_root.json."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat, load_der_public_key
from cryptography.x509 import load_der_x509_certificate

from stella_trust.repository import Repository

STAGING = Path(__file__).resolve().parents[1].parent / "shared" / "fixtures" / "sigstore" / "staging"
REKOR_V1_LOG_ID = "d32f30a3c32d639c2b762205a21c7bb07788e68283a4ae6f42118723a1bea496"
REKOR_V2_LOG_ID = "f30d5a999d92e662484244263f174cb8eacbfe8264bc583d32741799e3825dc9"


def _pem_key(entry: dict[str, Any]) -> bytes:
    key = load_der_public_key(base64.b64decode(entry["publicKey"]["rawBytes"]))
    return key.public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)


def _pem_cert(raw: str) -> bytes:
    return load_der_x509_certificate(base64.b64decode(raw)).public_bytes(Encoding.PEM)


def mark(usage: str, status: str = "Active", uri: str | None = None) -> dict[str, Any]:
    """The custom metadata cosign reads (`usage`, `status`, optional `uri`)."""
    sigstore: dict[str, Any] = {"usage": usage, "status": status}
    if uri is not None:
        sigstore["uri"] = uri
    return {"sigstore": sigstore}


def staging_targets(rekor_status: str = "Active") -> dict[str, tuple[bytes, dict[str, Any]]]:
    """name -> (bytes, custom) for every key and chain of the staging trusted root."""
    root = json.loads((STAGING / "trusted_root.json").read_text())
    rekor_v1, rekor_v2 = root["tlogs"]
    ctlogs = [log for log in root["ctlogs"] if log["publicKey"]["keyDetails"].startswith("PKIX_")]
    fulcio = root["certificateAuthorities"][0]["certChain"]["certificates"]  # intermediate, root
    tsa = root["timestampAuthorities"][0]["certChain"]["certificates"]  # leaf, root
    out = {
        "rekor.pub": (_pem_key(rekor_v1), mark("Rekor", rekor_status, rekor_v1["baseUrl"])),
        "rekor-log2025-alpha1.pub": (_pem_key(rekor_v2), mark("Rekor", "Active", rekor_v2["baseUrl"])),
        "fulcio_v1.crt.pem": (
            _pem_cert(fulcio[-1]["rawBytes"]),
            mark("Fulcio", uri="https://fulcio.sigstage.dev"),
        ),
        "fulcio_intermediate_v1.crt.pem": (
            _pem_cert(fulcio[0]["rawBytes"]),
            mark("Fulcio", uri="https://fulcio.sigstage.dev"),
        ),
        "tsa_leaf.crt.pem": (
            _pem_cert(tsa[0]["rawBytes"]),
            mark("TSA", uri=root["timestampAuthorities"][0]["uri"]),
        ),
        "tsa_root.crt.pem": (_pem_cert(tsa[-1]["rawBytes"]), mark("TSA")),
        "artifact.pub": (_pem_key(rekor_v1), mark("Unknown")),  # not trust material: ignored
    }
    for number, log in enumerate(ctlogs):
        status = "Active" if "end" not in log["publicKey"].get("validFor", {}) else "Expired"
        out[f"ctfe_{number}.pub"] = (_pem_key(log), mark("CTFE", status, log["baseUrl"]))
    return out


def legacy_repository(path: Path, rekor_status: str = "Active") -> Repository:
    """A published repository holding only the legacy targets."""
    repo = Repository.create(path)
    for name, (data, custom) in staging_targets(rekor_status).items():
        repo.add_target(name, data, custom)
    repo.publish()
    return repo


def mark_rekor(repo: Repository, status: str) -> None:
    """Publish the v1 Rekor key again with another status (a new targets version)."""
    data, custom = staging_targets(status)["rekor.pub"]
    repo.add_target("rekor.pub", data, custom)
    repo.publish()
