"""Who must have signed a bundle: a certificate identity (SAN + OIDC issuer) or a managed key.

These are sigstore-python's verification policies (its word, kept in the class names); the
module is named for what they describe, so that "policy" in this project means the
trust-selection layer (`_internal/policy/`) and, on the publishing side, each role's rhythm
(`repository/policy.py`).

Exact identity/issuer checks are sigstore-python's own `Identity` policy. Regular expressions
(cosign's `--certificate-identity-regexp` / `--certificate-oidc-issuer-regexp`) are one small
class implementing sigstore's `VerificationPolicy` protocol; it reads the same certificate
fields sigstore's policies read, through cryptography. Unlike cosign (which *searches*), a
pattern must match the whole value (`re.fullmatch`): an unanchored `example.com` must not
accept `example.com.attacker.net`. Every pattern that passes here also passes cosign.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from stella_trust.errors import UsageError

if TYPE_CHECKING:
    from cryptography.x509 import Certificate

_OIDC_ISSUER_V1 = "1.3.6.1.4.1.57264.1.1"  # raw UTF-8 bytes
_OIDC_ISSUER_V2 = "1.3.6.1.4.1.57264.1.8"  # DER UTF8String
_OTHERNAME_SAN = "1.3.6.1.4.1.57264.1.7"  # Sigstore "other name" SAN (raw UTF-8)


@dataclass(frozen=True, kw_only=True)
class IdentityPolicy:
    """Certificate identity (SAN) and OIDC issuer, each exact or a full-match regexp; both required."""

    identity: str | None = None
    identity_regexp: str | None = None
    issuer: str | None = None
    issuer_regexp: str | None = None
    _patterns: tuple[re.Pattern[str] | None, re.Pattern[str] | None] = field(
        init=False, repr=False, compare=False, default=(None, None)
    )

    def __post_init__(self) -> None:
        for name in ("identity", "identity_regexp", "issuer", "issuer_regexp"):
            value = getattr(self, name)
            if value is not None and not value.strip():
                # sigstore's Identity skips an empty issuer check: an empty value would
                # silently accept any issuer, so it is refused.
                raise UsageError(f"certificate {name.replace('_', ' ')} must not be empty")
        if (self.identity is None) == (self.identity_regexp is None):
            raise UsageError("give exactly one of certificate identity or certificate identity regexp")
        if (self.issuer is None) == (self.issuer_regexp is None):
            raise UsageError("give exactly one of OIDC issuer or OIDC issuer regexp")
        try:
            patterns = tuple(
                re.compile(p) if p is not None else None for p in (self.identity_regexp, self.issuer_regexp)
            )
        except re.error as exc:
            raise UsageError(f"invalid regular expression: {exc}") from None
        object.__setattr__(self, "_patterns", patterns)

    def sigstore_policy(self) -> object:
        """A sigstore `VerificationPolicy`: its own `Identity` when both values are exact."""
        if self.identity is not None and self.issuer is not None:
            from sigstore.verify.policy import Identity

            return Identity(identity=self.identity, issuer=self.issuer)
        return _RegexpIdentity(self)


@dataclass(frozen=True, kw_only=True)
class KeyPolicy:
    """A managed (long-lived) public key, PEM; the bundle must carry no certificate."""

    public_key_pem: bytes


Policy = IdentityPolicy | KeyPolicy


def issuer_of(cert: Certificate) -> str | None:
    """The OIDC issuer Fulcio recorded: the v1 extension (raw) or else the v2 one (DER UTF8String)."""
    from cryptography.hazmat import asn1
    from cryptography.x509 import ExtensionNotFound, ObjectIdentifier

    for oid in (_OIDC_ISSUER_V1, _OIDC_ISSUER_V2):
        try:
            value: bytes = cert.extensions.get_extension_for_oid(ObjectIdentifier(oid)).value.value  # type: ignore[attr-defined]
        except ExtensionNotFound:
            continue
        return value.decode() if oid == _OIDC_ISSUER_V1 else str(asn1.decode_der(str, value))
    return None


def identities_of(cert: Certificate) -> list[str]:
    """SAN values sigstore's `Identity` policy accepts: e-mail, URI and Sigstore other-name."""
    from cryptography.x509 import OtherName, RFC822Name, SubjectAlternativeName, UniformResourceIdentifier

    san = cert.extensions.get_extension_for_class(SubjectAlternativeName).value
    values = list(san.get_values_for_type(RFC822Name))
    values += list(san.get_values_for_type(UniformResourceIdentifier))
    values += [
        other.value.decode()
        for other in san.get_values_for_type(OtherName)
        if other.type_id.dotted_string == _OTHERNAME_SAN
    ]
    return values


class _RegexpIdentity:
    """sigstore `VerificationPolicy` for identity/issuer where at least one side is a regexp."""

    def __init__(self, policy: IdentityPolicy) -> None:
        self._policy = policy

    @staticmethod
    def _matches(exact: str | None, pattern: re.Pattern[str] | None, value: str) -> bool:
        return value == exact if pattern is None else pattern.fullmatch(value) is not None

    def verify(self, cert: Certificate) -> None:
        """sigstore's policy hook, called on the verified signing certificate: raise its
        `VerificationError` (a failed verification, named "identity") unless the issuer and
        one SAN match."""
        from sigstore.errors import VerificationError

        identity_pattern, issuer_pattern = self._policy._patterns
        issuer = issuer_of(cert)
        if issuer is None or not self._matches(self._policy.issuer, issuer_pattern, issuer):
            wanted = self._policy.issuer or f"/{self._policy.issuer_regexp}/"
            raise VerificationError(
                f"Certificate's OIDCIssuer does not match (got {issuer!r}, expected {wanted})"
            )
        sans = identities_of(cert)
        if not any(self._matches(self._policy.identity, identity_pattern, san) for san in sans):
            wanted = self._policy.identity or f"/{self._policy.identity_regexp}/"
            raise VerificationError(f"Certificate's SANs do not match {wanted}; actual SANs: {sans}")
