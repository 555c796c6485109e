"""`trust verify`: a Sigstore bundle, verified offline with this host's verified trust.

No `from __future__ import annotations` (as in client.py): typer reads every parameter's
annotation of the command a run builds, and strings would be compiled and evaluated again at
every run, `typer.Option(...)` calls included. Names imported only for type checking are quoted.
"""

import contextlib
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, NamedTuple

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

if TYPE_CHECKING:
    from stella_trust._cli.envelope import Envelope
    from stella_trust._internal.settings import TrustRepoSettings
    from stella_trust._internal.sigstore.outcome import VerificationOutcome
    from stella_trust._internal.sigstore.signers import Policy
    from stella_trust._internal.store import Store
    from stella_trust._internal.verify_many import Prepared, SealedCheck, Subject
    from stella_trust._internal.verify_worker import VerifyWorker
    from stella_trust.view import TrustView


def verify(
    ctx: typer.Context,
    artifacts: Annotated[
        list[str],
        typer.Argument(
            metavar="ARTIFACT|sha256:HEX",
            help="The artifacts (each with its bundle at ARTIFACT.sigstore.json), or one artifact or "
            "SHA-256 digest with --bundle.",
        ),
    ],
    bundle: Annotated[
        Path | None,
        typer.Option(
            "--bundle", help="The Sigstore bundle of a single artifact (default: ARTIFACT.sigstore.json)."
        ),
    ] = None,
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
    """Verify Sigstore bundles offline: never opens a socket.

    Several artifacts in one run (a release): each bundle is read from ARTIFACT.sigstore.json
    (sigstore-python's convention), the trust is read and re-verified once, one line per
    artifact, exit 1 if any failed (the others are still checked). --bundle names the bundle
    of a single artifact.

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

      trust verify --certificate-identity ci@example.com
      --certificate-oidc-issuer https://token.actions.githubusercontent.com dist/*.tar.gz
    """
    with reported(as_json) as env:
        from stella_trust._internal.verify_inputs import make_policy, read_input
        from stella_trust._internal.verify_many import prepare, sealed_log_check, subjects

        policy = make_policy(
            identity=certificate_identity,
            identity_regexp=certificate_identity_regexp,
            issuer=certificate_oidc_issuer,
            issuer_regexp=certificate_oidc_issuer_regexp,
            key_pem=read_input(key, "public key") if key is not None else None,
        )
        for artifact in artifacts:
            _refuse_malformed_digest(artifact)
        items = subjects(artifacts, bundle)
        with _worker_for(policy) as worker:  # imports sigstore-python's verifier meanwhile
            single = prepare(items[0], policy) if len(items) == 1 else None  # its input errors first
            if trusted_root is not None:
                root, source = read_input(trusted_root, "trusted root"), str(trusted_root)
                sealed = sealed_log_check(None, ())
                chosen = None
            else:  # one trust for the run: the instance the first artifact's bundle names (a release)
                first = single.bundle if single is not None else _first_readable(items)
                chosen = _trust_for(ctx, first)
                view, store = chosen.view, chosen.store
                root, source = view.trusted_root_json, f"cache {chosen.settings.local_cache_path}"
                sealed = sealed_log_check(store.sealed_logs_dir, view.sigstore.transparency_logs)
            _report(env, items, single, root, source, policy, sealed, chosen, worker)


@contextlib.contextmanager
def _worker_for(policy: "Policy") -> "Iterator[VerifyWorker | None]":
    """The run's verify worker, started by the entry point (launch.py, verify_worker.py), ended
    and reaped when the run ends, however it ends; None where none can help (one CPU, a managed
    key, a run through `app.main([...])`). `--debug` says which."""
    import sys

    from stella_trust._cli.envelope import debugging
    from stella_trust._cli.launch import started_worker
    from stella_trust._internal.sigstore.signers import KeyPolicy

    worker = started_worker()
    if worker is not None and isinstance(policy, KeyPolicy):  # the artifacts are bytes: not piped
        worker.close()
        worker = None
    if debugging():
        where = f"worker process {worker.pid}" if worker is not None else "this process"
        print(f"debug: sigstore-python's checks run in {where}", file=sys.stderr)
    try:
        yield worker
    finally:
        if worker is not None:
            worker.close()


def _first_readable(items: "Sequence[Subject]") -> bytes:
    """The first bundle of the run that reads (which instance to use); a missing or unreadable
    one is that artifact's own failure, reported in its line, never the run's."""
    from stella_trust._internal.verify_inputs import read_input
    from stella_trust.errors import StellaError

    for item in items:
        try:
            return read_input(item.bundle, "bundle")
        except (StellaError, OSError):
            continue
    return b""  # none reads: the first usable instance, whose run reports each failure


def _report(
    env: "Envelope",
    items: "Sequence[Subject]",
    single: "Prepared | None",
    root: bytes,
    source: str,
    policy: "Policy",
    sealed: "SealedCheck",
    chosen: "Chosen | None" = None,
    worker: "VerifyWorker | None" = None,
) -> None:
    """One line per artifact (the single-artifact line and JSON as before, plus `artifacts[]`);
    a run with any failure ends with one error naming them (exit 1). On a host with several
    instances (or with --instance) the instance used is named, in text and JSON."""
    from stella_trust._internal.verify_many import failed_summary, verify_each, verify_one

    named = {"instance": chosen.name} if chosen is not None and chosen.said else {}
    if single is not None:
        checked = verify_one(single, root, policy, sealed, worker=worker)  # a failure is the command's error
        assert checked.outcome is not None
        entry = checked.document()
        env.result = {"verified": True, "trust": source, **named, **entry, "artifacts": [entry]}
        del env.result["artifact"], env.result["bundle"]
        env.say(_line(checked.outcome))
        if chosen is not None and chosen.said:
            env.say(f"  instance {chosen.name}: {chosen.why}")
        for said in checked.log_checks:
            env.say(f"  {said}")
        return
    results = verify_each(items, root, policy, sealed, worker)
    failure = failed_summary(results)
    env.result = {
        "verified": failure is None,
        "trust": source,
        **named,
        "artifacts": [r.document() for r in results],
    }
    if chosen is not None and chosen.said:
        env.say(f"instance {chosen.name}: {chosen.why}")
    for result in results:
        if result.outcome is not None:
            env.say(f"{result.subject.artifact}: {_line(result.outcome)}")
            for said in result.log_checks:
                env.say(f"  {said}")
        else:
            assert result.error is not None
            env.say(f"{result.subject.artifact}: FAILED: {result.error.message}")
    if failure is not None:
        env.fail(failure)


def _line(outcome: "VerificationOutcome") -> str:
    who = outcome.signer or outcome.key_id or "?"
    issuer = f" ({outcome.issuer})" if outcome.issuer else ""
    return f"verified: {outcome.artifact_digest} signed by {who}{issuer}; checks: {', '.join(outcome.checks)}"


class Chosen(NamedTuple):
    """The instance whose trust verifies the bundle; `said`: name it in the output (a host with
    several instances, or `--instance`); a host with only `default` prints what it always did.
    (A NamedTuple: a frozen dataclass costs every start-up ~0.8 ms to build.)"""

    name: str
    settings: "TrustRepoSettings"
    store: "Store"
    view: "TrustView"
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
