"""Settings in process: file, then environment, then flags; a malformed config names its file,
field and problem; the shipped example config is valid."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from stella_trust._internal.hostpolicy import trust_policy
from stella_trust._internal.settings import load_settings
from stella_trust.errors import ConfigError


def test_file_then_env_then_flags(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "trust.yaml"
    config.write_text(
        "attestor:\n  trust_repo:\n    tuf_url: http://file.example\n    offline_mode: false\n"
        "    refresh_interval_minutes: 15\n"
    )
    for name in ("STELLA_TUF_ROOT_URL", "STELLA_TUF_OFFLINE_MODE", "STELLA_SIGSTORE_SERVICE_MAP"):
        monkeypatch.delenv(name, raising=False)
    settings = load_settings(config)
    assert settings.tuf_url == "http://file.example"
    assert settings.refresh_interval_minutes == 15
    assert settings.freshness_threshold_days == 7
    assert settings.service_map_target == "sigstore-services-v1"
    policy = trust_policy(settings)
    assert policy.pins(("service-map",)) == ["rekor-key-v1"] and policy.pins(("sigstore",)) == []

    monkeypatch.setenv("STELLA_TUF_ROOT_URL", "http://env.example/")
    monkeypatch.setenv("STELLA_TUF_OFFLINE_MODE", "true")
    monkeypatch.setenv("STELLA_SIGSTORE_SERVICE_MAP", str(tmp_path / "map.json"))
    settings = load_settings(config)
    assert settings.tuf_url == "http://env.example"
    assert settings.offline_mode is True
    assert settings.service_map_file == tmp_path / "map.json"

    settings = load_settings(config, {"tuf_url": "http://flag.example", "offline_mode": False})
    assert settings.tuf_url == "http://flag.example"
    assert settings.offline_mode is False


def test_default_config_path_from_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from stella_trust._internal.settings import default_config_path

    monkeypatch.setenv("STELLA_TRUST_CONFIG", str(tmp_path / "x.yaml"))
    assert default_config_path() == tmp_path / "x.yaml"


def test_missing_config_file_means_defaults(tmp_path: Path) -> None:
    settings = load_settings(tmp_path / "absent.yaml", {"tuf_url": "https://x.example"})
    assert settings.enabled is True and settings.tuf_url == "https://x.example"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("attestor: [unclosed", "line 1"),
        (
            "attestor:\n  trust_repo:\n    refresh_interval_minutes: soon\n",
            "attestor.trust_repo.refresh_interval_minutes: Input should be a valid number",
        ),
        ("attestor:\n  trust_repo:\n    tuf_ulr: http://x\n", "attestor.trust_repo.tuf_ulr: unknown field"),
        ("attestor:\n  trust_repo:\n    tuf_url: ftp://x\n", "must start with http://, https:// or file://"),
        ("attestor:\n  trust_repo: [1, 2]\n", "attestor.trust_repo must be a mapping, not a list"),
        ("- just\n- a list\n", "the top level must be a mapping"),
        (
            "attestor:\n  trust_repo:\n    metadata_limits: {timestamp: -1}\n",
            "attestor.trust_repo.metadata_limits.timestamp: Input should be greater than 0",
        ),
        # nested deeper than any config: one line, never "internal error: RecursionError"
        ("attestor:\n  trust_repo:\n    x: " + "[" * 300_000 + "]" * 300_000 + "\n", "too deep"),
        ("attestor:\n  trust_repo:\n    x: " + "{a: " * 40 + "1" + "}" * 40 + "\n", "more than 16 deep"),
    ],
)
def test_malformed_config_names_file_field_and_problem(tmp_path: Path, text: str, expected: str) -> None:
    config = tmp_path / "bad.yaml"
    config.write_text(text)
    with pytest.raises(ConfigError) as caught:
        load_settings(config)
    assert str(config) in caught.value.message
    assert expected in caught.value.message


def test_shipped_example_config_is_valid() -> None:
    example = Path(__file__).resolve().parents[2] / "config" / "trust.yaml"
    settings = load_settings(example)
    assert settings.tuf_url == "https://tuf.example.internal"
    assert settings.metadata_limits.snapshot == 2_000_000


# ---- named instances (issue 23) -------------------------------------------------------------
def _instances_config(tmp_path: Path, instances: object) -> Path:
    import yaml

    config = tmp_path / "trust.yaml"
    section = {
        "tuf_url": "https://a.example",
        "local_cache_path": str(tmp_path / "cache"),
        "instances": instances,
    }
    config.write_text(yaml.safe_dump({"attestor": {"trust_repo": section}}))
    return config


def test_a_named_instance_reads_its_own_fields_and_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from stella_trust._internal.settings import host_instances, load_settings

    monkeypatch.setenv("STELLA_TUF_ROOT_URL", "https://env.example")
    config = _instances_config(
        tmp_path, {"b": {"tuf_url": "https://b.example", "freshness_threshold_days": 2}}
    )
    default = load_settings(config)
    named = load_settings(config, instance="b")
    assert default.tuf_url == "https://env.example"  # the fixed variables are the default's
    assert named.tuf_url == "https://b.example" and named.freshness_threshold_days == 2
    assert named.local_cache_path == tmp_path / "cache" / "instances" / "b"
    assert default.local_cache_path == tmp_path / "cache"
    assert host_instances(config) == ["default", "b"]


@pytest.mark.parametrize(
    ("instances", "words"),
    [
        ({"default": {}}, "'default' is the section's top level"),
        ({"../x": {}}, "is not an instance name"),
        ({"b\n": {}}, "is not an instance name"),  # `$` matched before a final newline
        ({"b": "https://b.example"}, "instances.b must be a mapping"),
        (["b"], "must be a mapping of instance names"),
        ({"b": {"tuf_ulr": "https://b.example"}}, "instances.b.tuf_ulr: unknown field"),
    ],
)
def test_a_malformed_instances_section_is_one_line_for_every_instance(
    tmp_path: Path, instances: object, words: str
) -> None:
    from stella_trust._internal.settings import load_settings

    config = _instances_config(tmp_path, instances)
    with pytest.raises(ConfigError, match=re.escape(words)):
        load_settings(config, instance="b" if "tuf_ulr" in words else None)


def test_an_instance_name_with_a_final_newline_is_refused_and_the_others_still_load(tmp_path: Path) -> None:
    """A name becomes a directory, a YAML key and a metrics label: a trailing newline (which the
    rule's `$` used to let through) would start a new line in the agent's metrics file."""
    from stella_trust._internal.settings import check_instance_name, is_instance_name

    assert not is_instance_name("b\n") and is_instance_name("b") and is_instance_name("a-1_b")
    with pytest.raises(ConfigError, match="instance name 'b\\\\n' is not allowed"):
        check_instance_name("b\n")
    config = _instances_config(tmp_path, {"b": {"tuf_url": "https://b.example"}})
    assert load_settings(config, instance="b").tuf_url == "https://b.example"  # held config intact
