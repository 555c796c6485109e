"""`trust verify`: a Sigstore bundle, verified offline with this host's verified trust."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

import typer

from stella_trust._cli.options import (
    InstanceOption,
    JsonOption,
    globals_of,
    instances_of,
    load,
    reported,
    several,
)


def _jsonable(value: Any) -> Any:
    """Datetimes as ISO 8601 with Z (and inside lists), so a verification result prints as JSON."""
    if isinstance(value, datetime):
        from stella_trust._internal.timefmt import iso

        return iso(value)
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value


def verify(
    ctx: typer.Context,
    artifact: Annotated[
        str, typer.Argument(metavar="ARTIFACT|sha256:HEX", help="The artifact, or its SHA-256 digest.")
    ],
    bundle: Annotated[Path, typer.Option("--bundle", help="The Sigstore bundle (.sigstore.json).")],
    certificate_identity: Annotated[
        str | None, typer.Option("--certificate-identity", help="Expected signer identity (SAN), exact.")
    ] = None,
    certificate_identity_regexp: Annotated[
        str | None,
        typer.Option("--certificate-identity-regexp", help="Expected signer identity, a full-match regexp."),
    ] = None,
    certificate_oidc_issuer: Annotated[
        str | None, typer.Option("--certificate-oidc-issuer", help="Expected OIDC issuer, exact.")
    ] = None,
    certificate_oidc_issuer_regexp: Annotated[
        str | None,
        typer.Option("--certificate-oidc-issuer-regexp", help="Expected OIDC issuer, a full-match regexp."),
    ] = None,
    key: Annotated[
        Path | None,
        typer.Option("--key", help="A managed public key (PEM) instead of a certificate identity."),
    ] = None,
    trusted_root: Annotated[
        Path | None,
        typer.Option("--trusted-root", help="Use this trusted_root.json instead of the cache (one-off use)."),
    ] = None,
    instance: InstanceOption = None,
    as_json: JsonOption = False,
) -> None:
    """Verify a Sigstore bundle offline: never opens a socket.

    Trust is this host's re-verified cache (stale trust is refused, exit 3), or
    --trusted-root FILE. On a host with several instances, the one whose trust holds the
    bundle's log key (or, for a bundle naming no log, its certificate's CA) verifies it, and
    the output names it; --instance NAME forces one. Bundles v0.1-v0.3, message signatures and DSSE in-toto
    statements (a subject must carry the artifact's digest), Rekor v1 and v2 entries,
    SCTs, RFC 3161 timestamps. A failure exits 1 naming the check: identity, digest,
    signature, log inclusion, SCT, timestamp or chain.

    Examples:

      trust verify --bundle a.sigstore.json --certificate-identity ci@example.com
      --certificate-oidc-issuer https://token.actions.githubusercontent.com a.txt

      trust verify --bundle a.sigstore.json --certificate-identity-regexp '.*@example\\.com'
      --certificate-oidc-issuer https://accounts.google.com
      sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08

      trust verify --bundle b.sigstore.json --key rekor-signed-key.pem b.tar.gz --json

      trust verify --instance staging --bundle c.sigstore.json --certificate-identity I
      --certificate-oidc-issuer U c.txt
    """
    with reported(as_json) as env:
        from stella_trust._internal.verifiers import verify_with_trust
        from stella_trust._internal.verify_inputs import artifact_input, make_policy, read_input

        policy = make_policy(
            identity=certificate_identity,
            identity_regexp=certificate_identity_regexp,
            issuer=certificate_oidc_issuer,
            issuer_regexp=certificate_oidc_issuer_regexp,
            key_pem=read_input(key, "public key") if key is not None else None,
        )
        _refuse_malformed_digest(artifact)
        subject = artifact_input(artifact, need_bytes=key is not None)
        data = read_input(bundle, "bundle")
        if trusted_root is not None:
            root, source = read_input(trusted_root, "trusted root"), str(trusted_root)
        chosen: Chosen | None = None
        if trusted_root is None:
            chosen = _trust_for(ctx, data)
            view, store = chosen.view, chosen.store
            root, source = view.trusted_root_json, f"cache {chosen.settings.local_cache_path}"
        outcome = verify_with_trust(root, data, subject, policy)
        log_checks = _sealed_log_checks(data, view, store) if trusted_root is None else []
        document = {k: _jsonable(v) for k, v in asdict(outcome).items()}
        named = {"instance": chosen.name} if chosen is not None and chosen.said else {}
        env.result = {"verified": True, "trust": source, **named, **document, "sealed_log_checks": log_checks}
        who = outcome.signer or outcome.key_id or "?"
        issuer = f" ({outcome.issuer})" if outcome.issuer else ""
        env.say(
            f"verified: {outcome.artifact_digest} signed by {who}{issuer}; "
            f"checks: {', '.join(outcome.checks)}"
        )
        if chosen is not None and chosen.said:
            env.say(f"  instance {chosen.name}: {chosen.why}")
        for said in log_checks:
            env.say(f"  {said}")


@dataclass(frozen=True)
class Chosen:
    """The instance whose trust verifies the bundle; `said`: name it in the output (a host with
    several instances, or `--instance`); a host with only `default` prints what it always did."""

    name: str
    settings: Any
    store: Any
    view: Any
    said: bool
    why: str


def _trust_for(ctx: typer.Context, bundle: bytes) -> Chosen:
    """The usable trust to verify `bundle` with (decision 23): `--instance`'s, the only
    instance's, else the first instance (in `host_instances` order) whose trust holds the
    bundle's log key, or, for a bundle naming no log, the CA that issued its certificate. None
    holding them is refused in one line naming every instance tried; a bundle that does not
    parse goes to the first usable instance, whose verification refuses it in its own words."""
    from stella_trust._internal.policy.freshness import require_usable
    from stella_trust._internal.reader import load_view
    from stella_trust._internal.sigstore.instance import bundle_origin, holds
    from stella_trust._internal.store import Store
    from stella_trust._internal.timefmt import utcnow
    from stella_trust.errors import StellaError

    forced = globals_of(ctx).instance
    if forced is not None or not several(ctx):
        settings = load(ctx)
        store = Store.of(settings)
        view = require_usable(load_view(settings, store), utcnow())
        name = forced or "default"
        return Chosen(name, settings, store, view, forced is not None, "named with --instance")
    origin = bundle_origin(bundle)
    tried: list[str] = []
    unusable: list[StellaError] = []
    for name in instances_of(ctx):
        try:
            settings = load(ctx, name)
            store = Store.of(settings)
            view = load_view(settings, store)
        except StellaError as exc:
            tried.append(f"{name} (unusable: {exc.message})")
            exc.message = f"instance {name}: {exc.message}"
            unusable.append(exc)
            continue
        logs = view.sigstore.transparency_logs
        cas = [authority.chain_pems for authority in view.sigstore.certificate_authorities]
        if origin is None or holds(origin, (log.log_id for log in logs), cas):
            what = "log key" if origin is None or origin.log_ids else "certificate authority"
            return Chosen(
                name,
                settings,
                store,
                require_usable(view, utcnow()),
                True,
                f"its trust holds the bundle's {what}",
            )
        tried.append(f"{name} (logs {', '.join(sorted({log.base_url for log in logs})) or 'none'})")
    from stella_trust._internal.sigstore.errors import BundleVerificationError

    if origin is None:  # no instance is usable at all: the first one's reason
        raise unusable[0]
    named = f"log {origin.log_ids[0][:16]}…" if origin.log_ids else "the CA of its certificate"
    raise BundleVerificationError(
        "log inclusion",
        f"no instance's trust holds the bundle's {named}; tried {'; '.join(tried)}",
        hint="the bundle was signed on another Sigstore instance: add its trust with "
        "`trust init --instance NAME --tuf-url URL --root ROOT.json`, or force one with --instance NAME",
    )


HEX_DIGITS = frozenset("0123456789abcdefABCDEF")
SHA256_HEX_LENGTH = 64


def _refuse_malformed_digest(artifact: str) -> None:
    """`sha256:abc` is a digest typed wrong, not a file name: say so (a usage error) rather
    than "cannot read artifact sha256:abc". A file that really has such a name is still read."""
    prefix, colon, rest = artifact.partition(":")
    if not colon or prefix.lower() != "sha256" or Path(artifact).exists():
        return
    well_formed = len(rest) == SHA256_HEX_LENGTH and set(rest) <= HEX_DIGITS
    if well_formed and prefix == "sha256":
        return
    from stella_trust.errors import UsageError

    bad = "".join(sorted({c for c in rest if c not in HEX_DIGITS}))
    if well_formed:
        problem = f"write the prefix as sha256: (lowercase), not {prefix}:"
    else:
        problem = f"sha256: must be followed by {SHA256_HEX_LENGTH} hex characters (got {len(rest)}" + (
            f", with non-hex {bad[:10]!r})" if bad else ")"
        )
    shown = artifact if len(artifact) <= 80 else f"{artifact[:77]}..."
    raise UsageError(
        f"malformed digest {''.join(c if c.isprintable() else '?' for c in shown)!r}: {problem}",
        hint="give the artifact's path, or its digest as sha256:<64 hex> (`sha256sum FILE` prints it)",
    )


def _sealed_log_checks(bundle: bytes, view: Any, store: Any) -> list[str]:
    """The bundle's log entries against the sealed log states this host holds (decision 15:
    re-verified now with the view's log keys). A contradiction fails the verification."""
    from stella_trust._internal.sigstore.errors import BundleVerificationError
    from stella_trust._internal.sigstore.logcheck import check_entries, entry_facts
    from stella_trust._internal.sigstore.sealedlogs import LogForkError, read_sealed
    from stella_trust._internal.sigstore.tlogerrors import TransparencyLogError

    sealed = read_sealed(store.sealed_logs_dir, view.sigstore.transparency_logs)
    try:
        return check_entries(entry_facts(bundle), sealed)
    except TransparencyLogError as exc:
        hint = (
            "the log showed this bundle another history than the sealed one: do not use the artifact; "
            "keep the bundle as evidence and report it to the log's operator (the held trust and "
            "log state are unchanged)"
            if isinstance(exc, LogForkError)
            else None
        )
        raise BundleVerificationError(
            "log inclusion", f"the entry contradicts the sealed log state: {exc.message}", hint
        ) from exc
