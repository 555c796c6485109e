"""Sigstore bundles whose log entry sits in a `SyntheticLog` (tests only), for `trust verify --key`.

A managed-key bundle (v0.3, message signature) with one Rekor v2 `hashedrekord` 0.0.2 entry:
its canonicalized body is the log's entry at `index`, its inclusion proof is RFC 9162 PATH
from the log (tests/tlog_log.py, computed from the spec's definitions), its checkpoint is
signed by the log's key. Unlike a real Rekor v2 entry it also carries an inclusion promise
(SET, signed by the log key over RFC 8785 JSON as Rekor v1 does): managed-key verification
needs one verified time and this avoids a timestamp authority. sigstore-python checks all of
it (`TransparencyLogEntry._verify`); what it does not check is what the tests are about.

A malicious log can sign whatever it likes, so `bundle_for` takes the claims to forge:
another log ID, a key hint, a SET-signed log index, a checkpoint size.
"""

from __future__ import annotations

import base64
import hashlib
import json
from typing import Any

import rfc8785
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from stella_trust._internal.sigstore.signednote import sign_note
from tests.tlog_log import SyntheticLog


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def signer_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)


def entry_body(artifact: bytes, key: ec.EllipticCurvePrivateKey) -> tuple[bytes, bytes]:
    """(canonicalized Rekor v2 hashedrekord 0.0.2 body, the artifact's ECDSA signature)."""
    signature = key.sign(artifact, ec.ECDSA(hashes.SHA256()))
    spki = key.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    body = {
        "apiVersion": "0.0.2",
        "kind": "hashedrekord",
        "spec": {
            "hashedRekordV002": {
                "data": {"algorithm": "SHA2_256", "digest": b64(hashlib.sha256(artifact).digest())},
                "signature": {
                    "content": b64(signature),
                    "verifier": {
                        "keyDetails": "PKIX_ECDSA_P256_SHA_256",
                        "publicKey": {"rawBytes": b64(spki)},
                    },
                },
            }
        },
    }
    return json.dumps(body, separators=(",", ":"), sort_keys=True).encode(), signature


def bundle_for(
    log: SyntheticLog,
    index: int,
    artifact: bytes,
    signature: bytes,
    log_id: bytes,
    integrated_time: int,
    *,
    named_log_id: bytes | None = None,
    hint: bytes | None = None,
    signed_index: int | None = None,
    checkpoint_size: int | None = None,
) -> bytes:
    """The bundle JSON for the log's entry at `index`, proved in the log's current tree.

    `named_log_id` replaces the bundle's logId (the SET signs it, as a log would), `hint` the
    checkpoint signature line's 4-byte key ID (unsigned), `signed_index` the SET-signed
    logIndex, `checkpoint_size` the size the log signs in its checkpoint (root unchanged)."""
    size = log.size
    body = log.entries[index]
    named = named_log_id if named_log_id is not None else log_id
    logged_index = signed_index if signed_index is not None else index
    promise = rfc8785.dumps(
        {"body": b64(body), "integratedTime": integrated_time, "logID": named.hex(), "logIndex": logged_index}
    )
    text = log.checkpoint_text(size)
    if checkpoint_size is not None:
        text = text.replace(f"\n{size}\n", f"\n{checkpoint_size}\n", 1)
    checkpoint = sign_note(text, log.origin, log.key)
    if hint is not None:
        head, line = checkpoint.rsplit("\u2014 ", 1)
        name, encoded = line.split(" ")
        raw = base64.b64decode(encoded)
        checkpoint = f"{head}\u2014 {name} {b64(hint + raw[4:])}\n"
    document: dict[str, Any] = {
        "mediaType": "application/vnd.dev.sigstore.bundle.v0.3+json",
        "verificationMaterial": {
            "publicKey": {"hint": "synthetic"},
            "tlogEntries": [
                {
                    "logIndex": str(logged_index),
                    "logId": {"keyId": b64(named)},
                    "kindVersion": {"kind": "hashedrekord", "version": "0.0.2"},
                    "integratedTime": str(integrated_time),
                    "inclusionPromise": {"signedEntryTimestamp": b64(log.key.sign(promise))},
                    "inclusionProof": {
                        "logIndex": str(index),
                        "rootHash": b64(log.root(size)),
                        "treeSize": str(size),
                        "hashes": [b64(h) for h in log.inclusion_path(index, size)],
                        "checkpoint": {"envelope": checkpoint},
                    },
                    "canonicalizedBody": b64(body),
                }
            ],
        },
        "messageSignature": {
            "messageDigest": {"algorithm": "SHA2_256", "digest": b64(hashlib.sha256(artifact).digest())},
            "signature": b64(signature),
        },
    }
    return json.dumps(document, indent=1).encode()
