"""The seed's memory shape: ``timestamp`` as a datetime or an ISO 8601 string, ``outcome`` (and the other
interaction fields) top-level on any memory type, all stored."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta, timezone

import pytest

from personad.brain import Brain
from personad.errors import BadRequestError
from tests.conftest import RunningDaemon

WHEN = datetime(2026, 12, 4, 10, 30, tzinfo=UTC)


def stored(brain: Brain, memory_id: str) -> dict[str, object]:
    row = brain.query("SELECT context, timestamp FROM memories WHERE id = ?", (memory_id,))[0]
    return {"context": json.loads(str(row["context"])), "timestamp": float(row["timestamp"])}


@pytest.mark.parametrize(
    "timestamp",
    [
        WHEN,
        WHEN.astimezone(timezone(timedelta(hours=-5))),
        "2026-12-04T10:30:00Z",
        "2026-12-04T11:30:00+01:00",
        WHEN.timestamp(),
    ],
)
def test_timestamp_forms_are_one_instant(brain: Brain, timestamp: object) -> None:
    memory = brain.remember({"type": "learning_experience", "content": "solved it", "timestamp": timestamp})
    assert stored(brain, memory["id"])["timestamp"] == WHEN.timestamp()


def test_naive_datetimes_and_dates_are_local_time(brain: Brain) -> None:
    naive = datetime(2026, 12, 4, 10, 30)
    first = brain.remember({"type": "fact", "content": "a", "timestamp": naive})
    second = brain.remember({"type": "fact", "content": "b", "timestamp": date(2026, 12, 4)})
    assert stored(brain, first["id"])["timestamp"] == naive.timestamp()
    assert stored(brain, second["id"])["timestamp"] == datetime(2026, 12, 4).timestamp()


@pytest.mark.parametrize("bad", ["yesterday", "2026-13-01", "", True, [2026]])
def test_bad_timestamps_say_what_works(brain: Brain, bad: object) -> None:
    with pytest.raises(BadRequestError) as info:
        brain.remember({"type": "fact", "content": "x", "timestamp": bad})
    assert info.value.code == "invalid_memory" and "ISO 8601" in info.value.message


def test_top_level_outcome_is_kept(brain: Brain) -> None:
    memory = brain.remember(
        {
            "type": "learning_experience",
            "content": "Successfully solved quantum mechanics problem",
            "context": {"domain": "physics", "difficulty": "advanced", "outcome": "unsure"},
            "outcome": "mastery_achieved",
            "learned": {"concept": "tunnelling"},
        }
    )
    context = stored(brain, memory["id"])["context"]
    assert context == {
        "domain": "physics",
        "difficulty": "advanced",
        "outcome": "mastery_achieved",  # top-level wins, as for collaborations
        "learned": {"concept": "tunnelling"},
    }


def test_remember_over_the_bus_takes_an_iso_timestamp(running: RunningDaemon) -> None:
    from personad.personas.config import PersonaStore

    PersonaStore(running.home).create({"id": "scout"})
    memory = {
        "type": "learning_experience",
        "content": "mapped the coast",
        "outcome": "mastery_achieved",
        "timestamp": "2026-12-04T10:30:00Z",
    }
    with running.ws() as ws:
        reply = ws.call("remember", {"persona": "scout", "memory": memory})
        assert reply["ok"], reply
        rows = ws.call("brain_query", {"persona": "scout", "sql": "SELECT context, timestamp FROM memories"})[
            "result"
        ]["rows"]
    assert rows == [{"context": '{"outcome": "mastery_achieved"}', "timestamp": WHEN.timestamp()}]
