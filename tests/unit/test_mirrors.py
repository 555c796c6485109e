"""Mirrors in process (net/mirrors.py): failover per request, restart per sync, health.

Each mirror is an in-memory repository behind its own base URL (the simulator's fetcher, or a
frozen copy of an older state, or a fault); the host's real sync, python-tuf's Updater, the
offline verifier and the store run unchanged.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families
from tuf.api import exceptions as tuf_exceptions

from stella_trust._agent.metrics import AgentMetrics
from stella_trust._internal.cachestate import CacheState, MirrorHealth, mirror_report
from stella_trust._internal.net.fetcher import CountingFetcher
from stella_trust._internal.reader import load_view
from stella_trust._internal.settings import TrustRepoSettings, load_settings
from stella_trust._internal.store import Store
from stella_trust._internal.sync import sync
from stella_trust.demo.repository import DemoRepository
from stella_trust.errors import RepositoryUnreachableError, SignatureVerificationError
from tests.unit.simulator import BASE_URL, Host, RepositoryFetcher, Simulated

A, B, C = "http://mirror-a.invalid", "http://mirror-b.invalid", "http://mirror-c.invalid"

# What a mirror is: a repository's files, or a fault raised for every request.
Served = RepositoryFetcher | dict[str, bytes] | tuf_exceptions.DownloadError


class Network(CountingFetcher):
    """Routes each URL to the mirror whose base it starts with; records what each was asked."""

    def __init__(self, mirrors: dict[str, Served]) -> None:
        super().__init__()
        self.mirrors = mirrors
        self.asked: dict[str, list[str]] = {base: [] for base in mirrors}

    def _fetch(self, url: str) -> Iterator[bytes]:
        self.requests += 1
        self.urls.append(url)
        base = next(b for b in self.mirrors if url.startswith(b + "/"))
        path = url[len(base) + 1 :]
        self.asked[base].append(path)
        served = self.mirrors[base]
        if isinstance(served, tuf_exceptions.DownloadError):
            raise served
        if isinstance(served, RepositoryFetcher):
            return served._fetch(f"{BASE_URL}/{path}")
        if path not in served:
            raise tuf_exceptions.DownloadHTTPError(f"HTTP 404 for {url}", 404)
        return iter([served[path]])

    def take(self, base: str) -> list[str]:
        taken, self.asked[base] = self.asked[base], []
        return taken


def with_mirrors(host: Host, *mirrors: str) -> TrustRepoSettings:
    settings, _ = host
    return settings.model_copy(update={"mirrors": list(mirrors)})


def first_sync(host: Host, demo: DemoRepository) -> None:
    """The host's first sync, straight from the origin (no mirrors yet)."""
    settings, store = host
    store.write_anchor(demo.repo.root_bytes(1))
    sync(settings, store, fetcher=Network({BASE_URL: RepositoryFetcher(demo.repo)}))


def cache_bytes(store: Store) -> set[bytes]:
    return {p.read_bytes() for p in store.root.rglob("*") if p.is_file() and not p.is_symlink()}


REFUSED = tuf_exceptions.DownloadError("connection refused")
UNAVAILABLE = tuf_exceptions.DownloadHTTPError("HTTP 503", 503)
STALLED = tuf_exceptions.SlowRetrievalError("timed out fetching (deadline)")


@pytest.mark.parametrize(
    "fault", [REFUSED, UNAVAILABLE, STALLED], ids=["connection-refused", "http-503", "deadline"]
)
def test_an_unanswering_mirror_fails_over_per_request_and_health_is_recorded(
    host: Host, simulated: Simulated, fault: tuf_exceptions.DownloadError
) -> None:
    demo, _ = simulated
    first_sync(host, demo)
    _, store = host
    settings = with_mirrors(host, A, B)
    demo.repo.publish()  # something new to fetch
    net = Network({A: fault, B: RepositoryFetcher(demo.repo), BASE_URL: RepositoryFetcher(demo.repo)})
    result = sync(settings, store, fetcher=net)
    assert result.changed and result.versions["timestamp"] == demo.repo.timestamp.signed.version
    # one request to the dead mirror; the rest of the sync stays on the next one
    assert net.take(A) == ["metadata/2.root.json"]
    assert net.take(B)[:2] == ["metadata/2.root.json", "metadata/timestamp.json"]
    assert net.take(BASE_URL) == []
    by_url = {m["url"]: m for m in result.to_json()["mirrors"]}
    assert by_url[A]["error"] and by_url[A]["requests"] == 0
    assert by_url[B]["error"] is None and by_url[B]["requests"] >= 2
    health = {h.url: h for h in store.read_state().mirrors}
    assert health[A].healthy is False and health[A].last_error_at is not None
    assert health[B].healthy is True and health[BASE_URL].healthy is None  # the origin was not needed
    # the next five syncs: idle, one refused request to A and exactly two on B each time
    for _ in range(5):
        idle = sync(settings, store, fetcher=net)
        assert not idle.changed
        assert net.take(A) == ["metadata/2.root.json"]
        assert net.take(B) == ["metadata/2.root.json", "metadata/timestamp.json"]
    assert load_view(settings, store).usable


def test_404_for_the_next_root_is_an_answer_not_a_failover(host: Host, simulated: Simulated) -> None:
    """TUF 5.3.3: "no N+1.root.json" ends the walk. A mirror saying so is not failing."""
    demo, _ = simulated
    first_sync(host, demo)
    _, store = host
    net = Network({A: RepositoryFetcher(demo.repo), BASE_URL: RepositoryFetcher(demo.repo)})
    sync(with_mirrors(host, A), store, fetcher=net)
    assert net.take(A) == ["metadata/2.root.json", "metadata/timestamp.json"]
    assert net.take(BASE_URL) == []
    assert [h.healthy for h in store.read_state().mirrors] == [True, None]


def tampered_timestamp(demo: DemoRepository) -> bytes:
    document = json.loads(RepositoryFetcher(demo.repo).files()["metadata/timestamp.json"])
    document["signed"]["version"] += 1  # signatures kept: they no longer match
    return json.dumps(document).encode()


def test_a_tampered_timestamp_restarts_the_sync_on_the_next_mirror(host: Host, simulated: Simulated) -> None:
    demo, _ = simulated
    first_sync(host, demo)
    _, store = host
    demo.repo.publish()
    tampered = tampered_timestamp(demo)
    evil = RepositoryFetcher(demo.repo)
    evil.overrides["metadata/timestamp.json"] = tampered
    net = Network({A: evil, B: RepositoryFetcher(demo.repo), BASE_URL: RepositoryFetcher(demo.repo)})
    settings = with_mirrors(host, A, B)
    result = sync(settings, store, fetcher=net)
    assert result.changed and result.versions["timestamp"] == demo.repo.timestamp.signed.version
    # A's attempt was dropped whole: B walked the repository again from the held trust
    assert net.take(A) == ["metadata/2.root.json", "metadata/timestamp.json"]
    assert net.take(B)[:2] == ["metadata/2.root.json", "metadata/timestamp.json"]
    assert tampered not in cache_bytes(store)
    served = RepositoryFetcher(demo.repo).files()["metadata/timestamp.json"]
    assert served in cache_bytes(store)
    health = {h.url: h for h in store.read_state().mirrors}
    assert health[A].last_error is not None and "Signature" in health[A].last_error
    assert health[B].healthy is True
    assert load_view(settings, store).roles["timestamp"].version == demo.repo.timestamp.signed.version


def test_an_older_snapshot_or_an_old_repository_is_refused_and_the_next_mirror_used(
    host: Host, simulated: Simulated
) -> None:
    demo, _ = simulated
    first_sync(host, demo)
    _, store = host
    old_state = RepositoryFetcher(demo.repo).files()  # what the host holds now
    old_snapshot = old_state[f"metadata/{demo.repo.snapshot.signed.version}.snapshot.json"]
    demo.repo.publish()
    demo.repo.publish()
    new = RepositoryFetcher(demo.repo)
    rolled_back = RepositoryFetcher(demo.repo)  # the current timestamp, an older snapshot behind it
    rolled_back.overrides[f"metadata/{demo.repo.snapshot.signed.version}.snapshot.json"] = old_snapshot
    settings = with_mirrors(host, A, B, C)
    net = Network({A: rolled_back, B: new, C: new, BASE_URL: new})
    result = sync(settings, store, fetcher=net)
    assert result.changed and result.versions["snapshot"] == demo.repo.snapshot.signed.version
    health = {h.url: h for h in store.read_state().mirrors}
    assert health[A].healthy is False and health[B].healthy is True and health[C].healthy is None
    assert health[A].last_error is not None and "hash mismatch" in health[A].last_error
    # later, a mirror frozen at an older repository (timestamp rolled back): refused, C serves
    net.mirrors = {A: new, B: old_state, C: new, BASE_URL: new}
    demo.repo.publish()
    again = sync(settings, store, fetcher=net)
    assert again.changed and again.versions["timestamp"] == demo.repo.timestamp.signed.version
    health = {h.url: h for h in store.read_state().mirrors}
    assert health[A].healthy is True  # A recovered: it served this sync first
    net.take(B)
    # B is not reached at all while A answers
    sync(settings, store, fetcher=net)
    assert net.take(B) == []


def test_a_mirror_frozen_before_the_held_trust_is_passed_over(host: Host, simulated: Simulated) -> None:
    """A mirror frozen at an older state than the host holds (TUF 5.4.3: rollback)."""
    demo, _ = simulated
    first_sync(host, demo)
    _, store = host
    frozen = RepositoryFetcher(demo.repo).files()
    demo.repo.publish()
    sync(host[0], store, fetcher=Network({BASE_URL: RepositoryFetcher(demo.repo)}))
    held = load_view(host[0], store).roles["timestamp"].version
    demo.repo.publish()
    settings = with_mirrors(host, A, B)
    net = Network({A: frozen, B: RepositoryFetcher(demo.repo), BASE_URL: RepositoryFetcher(demo.repo)})
    result = sync(settings, store, fetcher=net)
    assert result.versions["timestamp"] == held + 1
    health = {h.url: h for h in store.read_state().mirrors}
    assert health[A].last_error is not None and "Rollback" in health[A].last_error


def test_every_mirror_failing_is_one_error_and_the_held_trust_is_kept(
    host: Host, simulated: Simulated
) -> None:
    demo, _ = simulated
    first_sync(host, demo)
    _, store = host
    before = load_view(host[0], store)
    generation = store.current()
    assert generation is not None
    demo.repo.publish()
    evil = RepositoryFetcher(demo.repo)
    evil.overrides["metadata/timestamp.json"] = tampered_timestamp(demo)
    settings = with_mirrors(host, A, B)
    net = Network({A: REFUSED, B: evil, BASE_URL: UNAVAILABLE})
    with pytest.raises(RepositoryUnreachableError) as caught:
        sync(settings, store, fetcher=net)
    message = caught.value.message
    assert "\n" not in message and message.startswith("every mirror failed (3 tried in order)")
    for base in (A, B, BASE_URL):
        assert base in message
    assert "Signature verification failed" in message and "503" in message
    assert "trust status" in caught.value.hint and "cached trust is unchanged" in caught.value.hint
    assert store.current().path == generation.path
    after = load_view(host[0], store)
    assert after.usable and after.roles["timestamp"].version == before.roles["timestamp"].version
    state = store.read_state()
    assert state.last_error == message and [h.healthy for h in state.mirrors] == [False, False, False]
    # the next sync, with the origin back, heals the host and the origin's health
    net.mirrors[BASE_URL] = RepositoryFetcher(demo.repo)
    healed = sync(settings, store, fetcher=net)
    assert healed.changed and [h.healthy for h in store.read_state().mirrors] == [False, False, True]


def test_only_the_last_mirror_signing_wrong_reports_its_own_kind(host: Host, simulated: Simulated) -> None:
    """The exhausted error keeps the last failure's kind (its exit code and hint apply)."""
    demo, _ = simulated
    first_sync(host, demo)
    _, store = host
    demo.repo.publish()
    evil = RepositoryFetcher(demo.repo)
    evil.overrides["metadata/timestamp.json"] = tampered_timestamp(demo)
    with pytest.raises(SignatureVerificationError, match="every mirror failed"):
        sync(with_mirrors(host, A), store, fetcher=Network({A: REFUSED, BASE_URL: evil}))


def test_settings_mirrors_from_yaml_env_and_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "trust.yaml"
    config.write_text(
        "attestor:\n  trust_repo:\n    tuf_url: https://origin.example/\n"
        "    mirrors: [http://relay.site:8080/, https://origin.example, http://relay.site:8080]\n"
    )
    settings = load_settings(config)
    assert settings.mirrors == ["http://relay.site:8080", "https://origin.example"]
    assert settings.repository_bases == ("http://relay.site:8080", "https://origin.example")
    monkeypatch.setenv("STELLA_MIRRORS", "file:///media/usb/tuf, http://relay.b")
    from_env = load_settings(config)
    assert from_env.repository_bases == ("file:///media/usb/tuf", "http://relay.b", "https://origin.example")
    offline = load_settings(config, {"offline_mode": True})
    assert offline.repository_bases == ("file:///media/usb/tuf",)
    monkeypatch.setenv("STELLA_MIRRORS", "ftp://nope")
    with pytest.raises(Exception, match="environment variable STELLA_MIRRORS"):
        load_settings(config)


def test_health_survives_state_json_and_feeds_status_and_metrics() -> None:
    state = CacheState(
        mirrors=[
            MirrorHealth("http://***@relay", "2026-12-05T10:00:00Z", "HTTP 503", "2026-12-05T09:00:00Z"),
            MirrorHealth("https://origin", None, 'refused "x"', "2026-12-05T10:00:00Z"),
        ]
    )
    document = state.to_json()
    document["mirrors"] += ["junk", {"url": "http://x", "last_error": 5}]  # dropped, never fatal
    parsed = CacheState.from_json(json.loads(json.dumps(document)))
    assert [m.url for m in parsed.mirrors] == ["http://***@relay", "https://origin"]
    report = mirror_report(["http://***@relay", "https://origin", "http://new"], parsed.mirrors)
    assert [(r["position"], r["healthy"]) for r in report] == [(1, True), (2, False), (3, None)]
    fields = MirrorHealth.FIELDS
    text = AgentMetrics(mirrors=[MirrorHealth(**{k: r[k] for k in fields}) for r in report]).render()
    samples = {
        (s.name, s.labels.get("mirror")): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name.startswith("stella_trust_mirror")
    }
    assert samples[("stella_trust_mirror_up", "http://***@relay")] == 1.0
    assert samples[("stella_trust_mirror_up", "https://origin")] == 0.0
    assert ("stella_trust_mirror_up", "http://new") not in samples  # never tried: no sample
    assert (
        samples[("stella_trust_mirror_last_error_timestamp_seconds", "https://origin")]
        == datetime(2026, 12, 5, 10, tzinfo=UTC).timestamp()
    )
    assert ("stella_trust_mirror_last_success_timestamp_seconds", "https://origin") not in samples


def test_a_mirror_serving_a_forked_repository_is_refused_and_the_next_one_used(
    host: Host, simulated: Simulated, tmp_path: Path
) -> None:
    """A mirror serving another history (another repository's root v2, signed by keys the held
    root does not name): refused at the root step (TUF 5.3.4), nothing of it kept."""
    demo, _ = simulated
    first_sync(host, demo)
    _, store = host
    fork = DemoRepository(tmp_path / "fork")
    fork.rotate("timestamp")  # the fork has a 2.root.json the host will be offered
    forked_files = RepositoryFetcher(fork.repo).files()
    assert "metadata/2.root.json" in forked_files
    demo.repo.publish()
    settings = with_mirrors(host, A, B)
    net = Network({A: forked_files, B: RepositoryFetcher(demo.repo), BASE_URL: RepositoryFetcher(demo.repo)})
    result = sync(settings, store, fetcher=net)
    assert result.versions["root"] == 1 and result.versions["timestamp"] == demo.repo.timestamp.signed.version
    assert net.take(A) == ["metadata/2.root.json"]
    assert forked_files["metadata/2.root.json"] not in cache_bytes(store)
    health = {h.url: h for h in store.read_state().mirrors}
    assert health[A].last_error is not None and "Signature verification failed" in health[A].last_error
    assert load_view(settings, store).usable


def test_credentials_in_a_mirror_url_never_leave_the_config(host: Host, simulated: Simulated) -> None:
    """Decision 18: a mirror's userinfo and secret query values are redacted in state.json, the
    sync's result and its errors."""
    demo, _ = simulated
    first_sync(host, demo)
    _, store = host
    secret_a = "http://deploy:s3cret-a@mirror-a.invalid"
    secret_b = "http://mirror-b.invalid/tuf?token=s3cret-b"
    settings = with_mirrors(host, secret_a, secret_b)
    net = Network({secret_a: REFUSED, secret_b: UNAVAILABLE, BASE_URL: RepositoryFetcher(demo.repo)})
    result = sync(settings, store, fetcher=net)
    shown = json.dumps(result.to_json()) + store.state_path.read_text()
    net.mirrors[BASE_URL] = REFUSED
    with pytest.raises(RepositoryUnreachableError) as caught:
        sync(settings, store, fetcher=net)
    shown += caught.value.message + caught.value.hint + store.state_path.read_text()
    assert "s3cret" not in shown
    assert "http://***@mirror-a.invalid" in shown and "token=***" in shown


def test_a_mirror_caught_mid_update_404s_the_new_snapshot_and_the_sync_restarts(
    host: Host, simulated: Simulated
) -> None:
    """A 404 is an answer, so no per-request failover; but a 404 for the snapshot the timestamp
    names fails TUF 5.5 on that mirror, and the sync restarts on the next one."""
    demo, _ = simulated
    first_sync(host, demo)
    _, store = host
    demo.repo.publish()
    half_copied = RepositoryFetcher(demo.repo).files()
    missing = f"metadata/{demo.repo.snapshot.signed.version}.snapshot.json"
    del half_copied[missing]
    net = Network({A: half_copied, B: RepositoryFetcher(demo.repo), BASE_URL: RepositoryFetcher(demo.repo)})
    result = sync(with_mirrors(host, A, B), store, fetcher=net)
    assert result.changed and result.versions["snapshot"] == demo.repo.snapshot.signed.version
    assert net.take(A) == ["metadata/2.root.json", "metadata/timestamp.json", missing]
    assert net.take(B)[:3] == ["metadata/2.root.json", "metadata/timestamp.json", missing]
    health = {h.url: h for h in store.read_state().mirrors}
    assert health[A].last_error is not None and "404" in health[A].last_error
