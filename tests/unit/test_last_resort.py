"""The last-resort handlers: an unexpected exception is one line, never a traceback."""

from __future__ import annotations

import json
import logging

import pytest
import typer

from stella_trust._agent.loop import Agent
from stella_trust._cli.options import reported
from stella_trust._internal.settings import TrustRepoSettings
from stella_trust.errors import InternalError


def test_cli_turns_an_unexpected_exception_into_one_line(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("STELLA_DEBUG", raising=False)
    with pytest.raises(typer.Exit) as exit_, reported(as_json=True):
        raise ValueError("boom")
    assert exit_.value.exit_code == 1
    out, err = capsys.readouterr()
    assert err.splitlines()[0] == "error: internal error: ValueError: boom"
    assert err.splitlines()[1].startswith("hint: this is a bug") and "Traceback" not in err
    document = json.loads(out)
    assert document["ok"] is False and document["error"]["message"] == "internal error: ValueError: boom"
    assert document["error"]["exit_code"] == 1


def test_debug_shows_the_traceback(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STELLA_DEBUG", "1")
    with pytest.raises(typer.Exit), reported():
        raise KeyError("k")
    assert "Traceback" in capsys.readouterr().err


def test_agent_cycle_survives_a_bug(monkeypatch: pytest.MonkeyPatch, tmp_path: object) -> None:
    settings = TrustRepoSettings(tuf_url="file:///nowhere", local_cache_path=str(tmp_path))
    agent = Agent(lambda: settings, logger=logging.getLogger("test-agent"))

    def broken() -> None:
        raise RuntimeError("cycle bug")

    monkeypatch.setattr(agent, "cycle", broken)
    outcome = agent.guarded_cycle()
    assert isinstance(outcome.error, InternalError)
    assert outcome.error.message == "internal error: RuntimeError: cycle bug"
    assert outcome.exit_code == 1 and agent.failures == 1
