"""C2SP signed notes (c2sp.org/signed-note) and checkpoints (c2sp.org/tlog-checkpoint).

Why our own: no maintained public Python API parses and verifies signed notes for Python
3.11; sigstore-python's parser is private (`sigstore._internal.rekor.checkpoint`), checks no
key name and splits at the first blank line where the spec says the last.
The cryptography is `cryptography`'s; this module only frames the bytes it signs.

Keys the verifier understands (signed-note §"Signature types"):

* `0x01` Ed25519: key ID = SHA-256(name || 0x0A || 0x01 || 32-byte public key)[:4]. Rekor v2
  (tile-based, e.g. `log2025-1.rekor.sigstore.dev`) signs its checkpoints this way, with the
  key name equal to the origin; its trusted_root `logId.keyId` is that whole SHA-256.
* `0x02` ECDSA: key ID = SHA-256(DER SubjectPublicKeyInfo)[:4], i.e. the first four bytes of
  the RFC 6962 log ID. Rekor v1 signs its checkpoints this way (P-256, SHA-256, ASN.1 DER
  signature; key name `rekor.sigstore.dev`, origin `rekor.sigstore.dev - <tree ID>`), which
  sigstore-python matches with `sig_hash == log_id[:4]`. Only P-256 is accepted.

Everything here is pure: text or bytes in, values out; failures raise TransparencyLogError.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from collections.abc import Sequence
from typing import NamedTuple

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat, load_der_public_key

from stella_trust._internal.sigstore.merkle import HASH_SIZE, MAX_TREE_SIZE
from stella_trust._internal.sigstore.tlogerrors import TransparencyLogError

# signed-note §Format: verifiers SHOULD bound the note; they MUST accept 16 signatures of up
# to ~5 kB (post-quantum) each. 256 KiB and 100 signature lines (Go's x/mod/sumdb/note limit)
# leave room for that and nothing more.
MAX_NOTE_BYTES = 256 * 1024
MAX_SIGNATURES = 100
MAX_TEXT_LINES = 1000

SIG_TYPE_ED25519 = 0x01
SIG_TYPE_ECDSA = 0x02
KEY_ID_SIZE = 4

_SIG_PREFIX = "\u2014 "  # em dash, space
_SIZE_RE = re.compile(r"0|[1-9][0-9]{0,19}")
_VKEY_ID_RE = re.compile(r"[0-9a-f]{8}")

LogPublicKey = Ed25519PublicKey | ec.EllipticCurvePublicKey
LogPrivateKey = Ed25519PrivateKey | ec.EllipticCurvePrivateKey


class NoteSignature(NamedTuple):
    """One signature line: key name, 4-byte key ID, and the signature proper."""

    name: str
    key_id: bytes
    signature: bytes


class Note(NamedTuple):
    """A parsed, not yet verified, signed note. `text` ends with its final newline."""

    text: str
    signatures: tuple[NoteSignature, ...]


class Checkpoint(NamedTuple):
    """tlog-checkpoint §"Note text": origin, tree size, root hash, extension lines."""

    origin: str
    size: int
    root_hash: bytes
    extensions: tuple[str, ...] = ()


class NoteVerifier(NamedTuple):
    """A known key: the (name, key ID) pair signature lines are matched on, and the key."""

    name: str
    key_id: bytes
    public_key: LogPublicKey

    @property
    def algorithm(self) -> str:
        """The signature algorithm, for messages: a note's key type decides how it verifies."""
        return "Ed25519" if isinstance(self.public_key, Ed25519PublicKey) else "ECDSA P-256"

    def accepts(self, signature: bytes, text: bytes) -> bool:
        """Whether `signature` is this key's signature over the note text (via `cryptography`)."""
        try:
            if isinstance(self.public_key, Ed25519PublicKey):
                self.public_key.verify(signature, text)
            else:
                self.public_key.verify(signature, text, ec.ECDSA(hashes.SHA256()))
        except InvalidSignature:
            return False
        return True


# ---------------------------------------------------------------------------------------------
# Keys


def load_log_key(public_key: LogPublicKey | bytes, *, where: str = "log key") -> LogPublicKey:
    """The log key as a `cryptography` object: Ed25519, or ECDSA on P-256 (from DER SPKI bytes too)."""
    key: object = public_key
    if isinstance(public_key, bytes):
        try:
            key = load_der_public_key(public_key)
        except (ValueError, UnsupportedAlgorithm) as exc:
            raise TransparencyLogError(where, f"not a DER SubjectPublicKeyInfo ({exc})") from None
    if isinstance(key, Ed25519PublicKey):
        return key
    if isinstance(key, ec.EllipticCurvePublicKey):
        if not isinstance(key.curve, ec.SECP256R1):
            raise TransparencyLogError(where, f"ECDSA curve {key.curve.name} is not supported, only P-256")
        return key
    raise TransparencyLogError(where, f"{type(key).__name__} is not an Ed25519 or ECDSA P-256 key")


def ed25519_key_hash(name: str, public_key: Ed25519PublicKey) -> bytes:
    """signed-note §"Ed25519 signatures": SHA-256(name || 0x0A || 0x01 || 32-byte key).

    The key ID is its first four bytes; Rekor v2 publishes the whole hash as the log's
    `logId.keyId` in trusted_root.json, so comparing it checks the (origin, key) pair.
    """
    raw = public_key.public_bytes(Encoding.Raw, PublicFormat.Raw)
    return hashlib.sha256(name.encode() + b"\n" + bytes([SIG_TYPE_ED25519]) + raw).digest()


def key_id(name: str, public_key: LogPublicKey) -> bytes:
    """The 4-byte key ID signature lines carry (signed-note §"Signature types", 0x01 and 0x02)."""
    if isinstance(public_key, Ed25519PublicKey):
        return ed25519_key_hash(name, public_key)[:KEY_ID_SIZE]
    spki = public_key.public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    return hashlib.sha256(spki).digest()[:KEY_ID_SIZE]


def note_verifier(name: str, public_key: LogPublicKey | bytes, *, where: str = "log key") -> NoteVerifier:
    """A verifier for signatures by `public_key` under the key name `name`."""
    _require_name(name, where)
    key = load_log_key(public_key, where=where)
    return NoteVerifier(name=name, key_id=key_id(name, key), public_key=key)


def parse_vkey(vkey: str) -> NoteVerifier:
    """signed-note §"Verifier keys": `<name>+hex(key ID)+base64(0x01 || Ed25519 key)`.

    Only Ed25519 vkeys are defined by the spec; the key ID must be the one the key computes.
    """
    where = "verifier key"
    parts = vkey.split("+")
    if len(parts) != 3 or not _VKEY_ID_RE.fullmatch(parts[1]):
        raise TransparencyLogError(where, f"{_quote(vkey)} is not <name>+<8 hex digits>+<base64 key>")
    name, hex_id, encoded = parts
    _require_name(name, where)
    material = _b64decode(encoded, where, "key")
    if len(material) != 33 or material[0] != SIG_TYPE_ED25519:
        raise TransparencyLogError(where, f"{name}: only Ed25519 keys (type 0x01, 32 bytes) are supported")
    key = Ed25519PublicKey.from_public_bytes(material[1:])
    computed = key_id(name, key)
    if computed.hex() != hex_id:
        raise TransparencyLogError(
            where, f"{name}: key ID {hex_id} does not match the key ({computed.hex()})"
        )
    return NoteVerifier(name=name, key_id=computed, public_key=key)


# ---------------------------------------------------------------------------------------------
# Parsing and verifying notes


def parse_note(data: bytes | str, *, where: str = "note") -> Note:
    """signed-note §Format: text ending in newline, a blank line, then signature lines.

    The text is everything up to the last blank line (it may itself hold blank lines); each
    signature line is `— <name> <base64(key ID || signature)>`. Size, line and signature
    counts are bounded before anything else is looked at.
    """
    text = _decode(data, where)
    split = text.rfind("\n\n")
    if split < 0:
        raise TransparencyLogError(where, "no blank line between the text and the signature lines")
    body, block = text[: split + 1], text[split + 2 :]
    if not block:
        raise TransparencyLogError(where, "no signature lines")
    if not block.endswith("\n"):
        raise TransparencyLogError(where, "the last signature line does not end with a newline")
    lines = block[:-1].split("\n")
    if len(lines) > MAX_SIGNATURES:
        raise TransparencyLogError(
            where, f"{len(lines)} signature lines, more than the {MAX_SIGNATURES} allowed"
        )
    if body.count("\n") > MAX_TEXT_LINES:
        raise TransparencyLogError(where, f"more than {MAX_TEXT_LINES} lines of text")
    return Note(
        body, tuple(_parse_signature_line(line, number, where) for number, line in enumerate(lines, 1))
    )


def verify_note(note: Note, verifier: NoteVerifier, *, where: str = "note") -> None:
    """signed-note §Signatures: the note carries a valid signature by `verifier`'s key.

    Lines are matched on (name, key ID): other keys are ignored, as the spec requires (they
    may be witnesses or a rotated key). Every line that matches must verify (the spec's
    SHOULD reject the whole note), and at least one must.
    """
    message = note.text.encode()
    matched = [s for s in note.signatures if s.name == verifier.name and s.key_id == verifier.key_id]
    if not matched:
        raise TransparencyLogError(
            where,
            f"no signature by {verifier.name} (key ID {verifier.key_id.hex()}); "
            f"signed by {_signers(note.signatures)}",
        )
    for signature in matched:
        if not verifier.accepts(signature.signature, message):
            raise TransparencyLogError(
                where,
                f"{verifier.algorithm} signature by {verifier.name} "
                f"(key ID {verifier.key_id.hex()}) does not verify",
            )


def signed_by(note: Note, public_key: LogPublicKey) -> bool:
    """Whether any signature line of `note` is a valid signature by `public_key` over its text.

    Names and key IDs are ignored: they are unsigned hints (signed-note §Signatures: "the key
    ID ... is not authenticated"), so the key that *verifies* is what identifies the signer.
    `trust verify` uses this to find which log of the trust signed a bundle's checkpoint,
    whatever log ID or key hint the bundle claims: a claim must not choose the key."""
    verifier = NoteVerifier(name="-", key_id=b"", public_key=public_key)
    message = note.text.encode()
    return any(verifier.accepts(signature.signature, message) for signature in note.signatures)


def parse_checkpoint_text(text: str, *, where: str = "checkpoint") -> Checkpoint:
    """tlog-checkpoint §"Note text": origin, decimal tree size, base64 root hash, extensions.

    All lines must be non-empty; the size has no leading zeros and fits 64 bits; the root
    hash is exactly 32 bytes (SHA-256, RFC 6962).
    """
    if not text.endswith("\n"):
        raise TransparencyLogError(where, "checkpoint text does not end with a newline")
    lines = text[:-1].split("\n")
    if len(lines) < 3:
        raise TransparencyLogError(
            where, f"{len(lines)} lines of text, a checkpoint needs origin, size, root hash"
        )
    for number, line in enumerate(lines, 1):
        if not line:
            raise TransparencyLogError(where, f"line {number} of the checkpoint text is empty")
    origin, size_text, root_text, *extensions = lines
    if not _SIZE_RE.fullmatch(size_text) or int(size_text) > MAX_TREE_SIZE:
        raise TransparencyLogError(
            where, f"tree size {_quote(size_text)} is not a decimal number below 2^64 without leading zeros"
        )
    root = _b64decode(root_text, where, "root hash")
    if len(root) != HASH_SIZE:
        raise TransparencyLogError(where, f"root hash is {len(root)} bytes, expected {HASH_SIZE}")
    return Checkpoint(origin=origin, size=int(size_text), root_hash=root, extensions=tuple(extensions))


def verify_checkpoint(
    data: bytes | str,
    *,
    origin: str,
    public_key: LogPublicKey | bytes,
    key_name: str | None = None,
    where: str = "checkpoint",
) -> Checkpoint:
    """A checkpoint signed by the log's key, whose origin line is `origin`.

    The signature line's key name must be `key_name`, which defaults to `origin`
    (tlog-checkpoint §Signatures: the key name SHOULD match the origin; Rekor v2 does, Rekor v1
    signs `rekor.sigstore.dev - <tree ID>` as `rekor.sigstore.dev`). The signature is checked
    before the text is read (signed-note: the text MUST be ignored unless verified).
    """
    note = parse_note(data, where=where)
    verify_note(
        note,
        note_verifier(key_name if key_name is not None else origin, public_key, where=where),
        where=where,
    )
    checkpoint = parse_checkpoint_text(note.text, where=where)
    if checkpoint.origin != origin:
        raise TransparencyLogError(
            where, f"origin {_quote(checkpoint.origin)} is not the expected {_quote(origin)}"
        )
    return checkpoint


# ---------------------------------------------------------------------------------------------
# Signing: for tests and operators (a synthetic log, a re-signed fixture), never on a client path


def format_checkpoint(origin: str, size: int, root_hash: bytes, extensions: Sequence[str] = ()) -> str:
    """The checkpoint note text (tlog-checkpoint §"Note text"), final newline included."""
    root = base64.b64encode(root_hash).decode()
    return "\n".join([origin, str(size), root, *extensions]) + "\n"


def signature_line(text: str, name: str, private_key: LogPrivateKey) -> str:
    """One `— <name> <base64(key ID || signature)>` line (with newline) over `text`."""
    _require_name(name, "signer")
    public = load_log_key(private_key.public_key(), where="signer")
    if isinstance(private_key, Ed25519PrivateKey):
        signature = private_key.sign(text.encode())
    else:
        signature = private_key.sign(text.encode(), ec.ECDSA(hashes.SHA256()))
    encoded = base64.b64encode(key_id(name, public) + signature).decode()
    return f"{_SIG_PREFIX}{name} {encoded}\n"


def sign_note(text: str, name: str, private_key: LogPrivateKey) -> str:
    """A signed note (signed-note §Format) of `text` with one signature; the note parses back."""
    _decode(text, "note text")
    if not text.endswith("\n"):
        raise TransparencyLogError("note text", "must end with a newline")
    return text + "\n" + signature_line(text, name, private_key)


# ---------------------------------------------------------------------------------------------
# Helpers


def _decode(data: bytes | str, where: str) -> str:
    """Bounded, UTF-8, and no ASCII control character but newline (signed-note §Format)."""
    size = len(data)
    if isinstance(data, str) and size <= MAX_NOTE_BYTES:
        size = len(data.encode())  # characters never outnumber UTF-8 bytes: cheap check first
    if size > MAX_NOTE_BYTES:
        raise TransparencyLogError(where, f"{size} bytes, more than the {MAX_NOTE_BYTES} allowed")
    if isinstance(data, bytes):
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise TransparencyLogError(where, f"not UTF-8 (byte {exc.start})") from None
    else:
        text = data
    for position, char in enumerate(text):
        if char < " " and char != "\n":
            raise TransparencyLogError(
                where,
                f"control character U+{ord(char):04X} at character {position} (only newline is allowed)",
            )
    return text


def _parse_signature_line(line: str, number: int, where: str) -> NoteSignature:
    if not line.startswith(_SIG_PREFIX):
        raise TransparencyLogError(
            where, f"signature line {number} does not start with an em dash and a space"
        )
    name, space, encoded = line[len(_SIG_PREFIX) :].partition(" ")
    if not space:
        raise TransparencyLogError(where, f"signature line {number} is not '\u2014 <name> <base64>'")
    _require_name(name, f"{where}: signature line {number}")
    raw = _b64decode(encoded, where, f"signature line {number}")
    if len(raw) <= KEY_ID_SIZE:
        raise TransparencyLogError(
            where, f"signature line {number} has {len(raw)} bytes, needs a 4-byte key ID and a signature"
        )
    return NoteSignature(name=name, key_id=raw[:KEY_ID_SIZE], signature=raw[KEY_ID_SIZE:])


def _require_name(name: str, where: str) -> None:
    """signed-note §Format: key names are non-empty, without Unicode spaces or '+'."""
    if not name or "+" in name or any(char.isspace() for char in name):
        raise TransparencyLogError(where, f"key name {_quote(name)} is empty or has a space or '+'")


def _b64decode(text: str, where: str, what: str) -> bytes:
    """Standard base64 with padding (RFC 4648 §4), as the C2SP specs use; nothing else accepted."""
    try:
        return base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError):
        raise TransparencyLogError(where, f"{what} is not standard base64") from None


def _signers(signatures: Sequence[NoteSignature]) -> str:
    shown = [f"{s.name} ({s.key_id.hex()})" for s in signatures[:3]]
    more = f" and {len(signatures) - 3} more" if len(signatures) > 3 else ""
    return ", ".join(shown) + more


def _quote(value: str, limit: int = 64) -> str:
    """A value from hostile input, shortened and quoted for a one-line message."""
    return repr(value if len(value) <= limit else value[:limit] + "...")
