"""Each exchange a persona answers records an emotion and sets or updates goals (personas/signals.py), and
its goals and latest mood reach its model in the quoted memory note."""

from __future__ import annotations

from personad.personas.persona import PersonaDaemon
from tests.conftest import RunningDaemon


async def test_exchanges_write_goals_and_emotions_and_feed_the_context(persona_daemon: RunningDaemon) -> None:
    persona = PersonaDaemon({"id": "clerk", "modelProvider": "fake"}, home=persona_daemon.home)
    await persona.start()
    try:
        chat = persona.handle_message
        await chat(
            {"type": "chat_message", "data": {"message": "Please file the patent application by Friday."}}
        )
        goals = persona.db.goal_list("active")
        emotions = persona.db.emotions()
        context = await chat({"type": "chat_message", "data": {"message": "memory?"}})
        await chat({"type": "chat_message", "data": {"message": "Great, the patent application is done!"}})
        after = persona.db.goal_list()
        with persona_daemon.ws() as ws:
            listed = ws.call("persona_emotions", {"persona": "clerk"})["result"]
    finally:
        await persona.stop()
    assert [g["description"] for g in goals] == ["File the patent application by Friday"], goals
    assert len(emotions) == 1 and emotions[0]["cause"]
    assert (
        'Active goal (asked in conversation, 0% done): "File the patent application by Friday"'
        in context["reply"]
    )
    assert "Latest mood:" in context["reply"]
    assert after[0]["status"] == "done", after
    assert len(listed["emotions"]) == 3 and listed["emotions"][0]["valence"] > 0
