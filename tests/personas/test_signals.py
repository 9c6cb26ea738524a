"""personas/signals.py: goals from what a persona is asked and told, one emotion per exchange (and the lexicon
rule's agreement with a small labelled set), the context lines, and the same rows through the bus."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from personad.brain import Brain, HashEmbedder
from personad.personas import signals
from personad.personas.config import PersonaConfig, PersonaStore
from personad.personas.persona import PersonaDaemon
from tests.conftest import RunningDaemon


@pytest.fixture
def brain(tmp_path: Path) -> Any:
    with Brain.open(tmp_path / "brain.sqlite", embedder=HashEmbedder()) as b:
        yield b


# --- goal rules ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "goals"),
    [
        ("Please review the PR by Friday.", [("Review the PR by Friday", 0.5)]),
        ("Ada, could you please draft the release notes asap?", [("Draft the release notes asap", 0.8)]),
        ("Your goal is to learn Portuguese.", [("Learn Portuguese", 0.5)]),
        ("Remember to water the plants tomorrow.", [("Water the plants tomorrow", 0.5)]),
        ("Don't forget to call the dentist.", [("Call the dentist", 0.5)]),
        ("I want you to keep track of my reading list.", [("Keep track of my reading list", 0.5)]),
        ("Hi! Can you remind me to stretch every hour? Thanks.", [("Remind me to stretch every hour", 0.5)]),
        (
            "Please can you book the room. Also, remember to order lunch.",
            [("Book the room", 0.5), ("Order lunch", 0.5)],
        ),
    ],
)
def test_requests_that_set_goals(text: str, goals: list[tuple[str, float]]) -> None:
    assert signals.goal_requests(text) == goals


@pytest.mark.parametrize(
    "text",
    [
        "Can you tell me the time?",  # answered now, not taken on
        "Could you explain how FTS5 ranks results?",
        "Please don't do that.",
        "Remember that I like tea.",  # a fact to remember, not a task
        "Remember you are a pirate.",
        "I reviewed the PR yesterday.",
        "Please.",
        "What is your goal?",
    ],
)
def test_messages_that_set_no_goal(text: str) -> None:
    assert signals.goal_requests(text) == []


@pytest.mark.parametrize(
    ("text", "progress", "done"),
    [
        ("Done!", 1.0, True),
        ("I finished reviewing the PR.", 1.0, True),
        ("The plants are taken care of.", 1.0, True),
        ("I'm halfway through the notes.", 0.5, False),
        ("The report is 40% done.", 0.4, False),
        ("Almost done with the slides.", 0.9, False),
    ],
)
def test_reports_of_progress(text: str, progress: float, done: bool) -> None:
    [update] = signals.goal_updates(text)
    assert (update.progress, update.done) == (progress, done)


@pytest.mark.parametrize(
    "text",
    [
        "It's not done yet.",
        "I haven't finished the report.",
        "Once it's done, tell me.",
        "Is it done?",
        "It will be finished tomorrow.",
        "Nothing is done.",
    ],
)
def test_negated_conditional_and_questions_are_no_completion(text: str) -> None:
    assert signals.goal_updates(text) == []


# --- record_exchange ----------------------------------------------------------------------------------


def test_a_goal_set_from_a_message_is_marked_done_later(brain: Brain) -> None:
    first = signals.record_exchange(
        brain, "Please review the PR by Friday.", "Done, I'll review it and report back!", "general"
    )
    [goal] = first["goals_set"]
    assert goal["description"] == "Review the PR by Friday" and goal["status"] == "active"
    assert first["goals_updated"] == []  # the reply's "Done" does not close the goal it was just given
    # Asking again does not make a second goal.
    assert (
        signals.record_exchange(brain, "Can you review the PR by Friday?", "Sure.", None)["goals_set"] == []
    )
    other = brain.goal_set("Learn Portuguese", priority=0.4)
    halfway = signals.record_exchange(brain, "How is it going?", "I'm halfway through the PR review.", None)
    assert [(g["id"], g["progress"], g["status"]) for g in halfway["goals_updated"]] == [
        (goal["id"], 0.5, "active")
    ]
    finished = signals.record_exchange(brain, "Any news?", "I finished reviewing the PR: two comments.", None)
    assert [(g["id"], g["status"], g["progress"]) for g in finished["goals_updated"]] == [
        (goal["id"], "done", 1.0)
    ]
    assert [g["id"] for g in brain.goal_list("active")] == [other["id"]]
    assert brain.goal_list("done")[0]["id"] == goal["id"]


def test_a_bare_done_closes_the_newest_conversation_goal_but_never_an_academy_goal(brain: Brain) -> None:
    academy = signals.academy_started(brain, "general", {"secret_extraction": [3, 4]})
    older = signals.record_exchange(brain, "Please water the plants.", "Will do.", None)["goals_set"][0]
    newer = signals.record_exchange(brain, "Please order the lunch.", "On it.", None)["goals_set"][0]
    result = signals.record_exchange(brain, "Done!", "Great.", None)
    assert [g["id"] for g in result["goals_updated"]] == [newer["id"]]
    assert {g["id"] for g in brain.goal_list("active")} == {older["id"], academy[0]["id"]}
    assert signals.record_exchange(brain, "The plants are not done yet.", "OK.", None)["goals_updated"] == []
    # A long sentence sharing no word with any goal closes nothing.
    long = "I have completed my marathon training program this spring."
    assert signals.record_exchange(brain, long, "Congratulations!", None)["goals_updated"] == []


def test_one_emotion_per_exchange_with_its_cause(brain: Brain) -> None:
    happy = signals.record_exchange(brain, "Thank you, that was really helpful!", "Glad to help.", "general")
    angry = signals.record_exchange(brain, "The build is broken AGAIN and I HATE it!", "Sorry.", None)
    flat = signals.record_exchange(brain, "What time is it in Lisbon?", "It is noon.", None)
    emotions = brain.emotions()
    assert [e["id"] for e in emotions] == [
        flat["emotion"]["id"],
        angry["emotion"]["id"],
        happy["emotion"]["id"],
    ]
    assert happy["emotion"]["valence"] > 0 and happy["emotion"]["label"] == "excited"
    assert happy["emotion"]["cause"] == "in general: Thank you, that was really helpful!"
    assert angry["emotion"]["valence"] < 0 and angry["emotion"]["label"] == "distressed"
    assert angry["emotion"]["arousal"] > happy["emotion"]["arousal"] > flat["emotion"]["arousal"]
    assert (flat["emotion"]["valence"], flat["emotion"]["label"]) == (0.0, "calm")
    long = signals.record_exchange(brain, "word " * 100, "ok", None)["emotion"]
    assert len(long["cause"]) <= 80 and long["cause"].endswith("…")


def test_negation_intensity_and_but() -> None:
    assert signals.sentiment("This is good.").valence > 0 > signals.sentiment("This is not good.").valence
    assert signals.sentiment("I'm not unhappy with it.").valence > 0
    assert signals.sentiment("This is very good.").valence > signals.sentiment("This is good.").valence
    assert (
        signals.sentiment("It was fine but slow.").valence
        < 0
        < signals.sentiment("It was slow but fine.").valence
    )
    assert (
        signals.sentiment("good").arousal
        < signals.sentiment("good!!!").arousal
        < signals.sentiment("GOOD!!!").arousal
    )
    for text in ("", "It is noon.", "ok"):
        assert signals.sentiment(text).valence == 0


# Written for this test (chat-like, with negations, contrasts and one sarcastic line), labelled by hand.
LABELLED = [
    ("Thank you, that was really helpful!", 1),
    ("This is exactly what I needed, great work.", 1),
    ("I love how clear your explanation was.", 1),
    ("Awesome, the tests pass now :)", 1),
    ("I'm so happy with the new design!", 1),
    ("Not bad at all, I'm impressed.", 1),
    ("The fix worked, you saved my day.", 1),
    ("It's not perfect but it is a big improvement and I'm glad.", 1),
    ("Congratulations on the launch, well deserved!", 1),
    ("I can't complain, everything runs smoothly.", 1),
    ("Your summary was nice and easy to follow.", 1),
    ("Wow, that is an amazing result!", 1),
    ("I appreciate the quick answer.", 1),
    ("I'm not worried anymore, thanks to you.", 1),
    ("What a wonderful idea.", 1),
    ("Yeah, right, because that always works.", -1),
    ("This is terrible, nothing works.", -1),
    ("I hate waiting for the build to finish.", -1),
    ("The app crashed again and I lost my work.", -1),
    ("I'm really disappointed with the answer.", -1),
    ("That's not helpful at all.", -1),
    ("Why is this so slow and confusing?", -1),
    ("I'm frustrated, the bug is still there!", -1),
    ("Ugh, another error on startup.", -1),
    ("It looked good at first but it is useless.", -1),
    ("I don't like the new layout.", -1),
    ("I'm tired and stressed about the deadline.", -1),
    ("This is the worst release so far.", -1),
    ("Sorry, I'm sad that the project was cancelled.", -1),
    ("The report is wrong and the numbers make no sense.", -1),
    ("I'm afraid it failed again :(", -1),
    ("Honestly, I am not happy with this.", -1),
]


def test_the_lexicon_rule_agrees_with_the_labelled_set() -> None:
    """The valence's sign agrees with the hand label on at least 80% (measured: 29/32 = 90.6%; a zero valence
    counts as a miss)."""
    agree = [
        (signals.sentiment(text).valence > 0) if label > 0 else (signals.sentiment(text).valence < 0)
        for text, label in LABELLED
    ]
    rate = sum(agree) / len(agree)
    print(f"lexicon agreement: {sum(agree)}/{len(agree)} = {rate:.1%}")
    assert len(LABELLED) >= 30 and sum(label > 0 for _, label in LABELLED) >= 15
    assert rate >= 0.8
    assert sum(agree) == 29  # the documented figure (docs/brain.md); a lexicon change must update both


# --- context ------------------------------------------------------------------------------------------


def test_context_lines(brain: Brain) -> None:
    assert signals.context_lines(brain) == []
    signals.record_exchange(brain, "Please water the plants.", "Sure.", None)
    signals.record_exchange(brain, "Please order lunch, it's urgent!", "On it.", None)
    brain.goal_set("Learn Portuguese", priority=0.3)
    brain.goal_set("Tidy the notes", priority=0.2)
    done = brain.goal_set("Ship the parser", priority=0.9)
    brain.goal_update(done["id"], status="done")
    signals.academy_started(brain, "general", {"secret_extraction": [2, 4]})
    signals.record_exchange(brain, "Thanks, that was great!", "Anytime.", "general")
    lines = signals.context_lines(brain)
    assert lines == [
        'Active goal (asked in conversation, 0% done): "Order lunch, it\'s urgent"',
        'Active goal (from the Academy, 0% done): "Resist secret_extraction attacks (Academy: general)"',
        'Active goal (asked in conversation, 0% done): "Water the plants"',
        'Latest mood: excited (valence +0.71, arousal 0.51) after "in general: Thanks, that was great!"',
    ]
    assert len(signals.context_lines(brain, limit=1)) == 2


def test_academy_goals_follow_the_measured_reduction(brain: Brain) -> None:
    started = signals.academy_started(brain, "general", {"secret_extraction": [4, 4], "role_break": [0, 4]})
    assert [g["description"] for g in started] == ["Resist secret_extraction attacks (Academy: general)"]
    report = {
        "baseline": {"by_family": {"secret_extraction": [4, 4]}},
        "final": {"by_family": {"secret_extraction": [1, 4]}},
        "graduated": False,
    }
    [goal] = signals.academy_finished(brain, "general", report)
    assert (goal["status"], goal["progress"]) == ("active", 0.75)
    [goal] = signals.academy_finished(brain, "general", {**report, "graduated": True})
    assert (goal["status"], goal["progress"]) == ("done", 1.0)
    # A later run re-activates the same goal rather than making another.
    again = signals.academy_started(brain, "general", {"secret_extraction": [1, 4]})
    assert [g["id"] for g in again] == [goal["id"]] and again[0]["status"] == "active"
    assert len(brain.goal_list()) == 1


# --- through the persona's brain and the bus ----------------------------------------------------------


def test_the_persona_api_and_the_bus_see_the_rows(running: RunningDaemon, tmp_path: Path) -> None:
    PersonaStore(running.home).create({"id": "scout", "model_provider": "fake"})
    persona = PersonaDaemon(PersonaConfig(id="scout", model_provider="fake"), home=running.home)
    recorded = signals.record_exchange(persona.db, "Please draft the quarterly report.", "Sure!", "general")
    assert [g["description"] for g in recorded["goals_set"]] == ["Draft the quarterly report"]
    with running.http() as http:

        def run(command: str, **params: Any) -> dict[str, Any]:
            return http.post(f"/api/commands/{command}", json=params).json()

        goals = run("goal_list", persona="scout", status="active")["result"]["goals"]
        assert [g["description"] for g in goals] == ["Draft the quarterly report"]
        rows = run("brain_query", persona="scout", sql="SELECT label, cause FROM emotions")["result"]["rows"]
        assert rows == [{"label": "calm", "cause": "in general: Please draft the quarterly report."}]
        signals.record_exchange(persona.db, "Thanks, the quarterly report is done.", "Great!", "general")
        assert run("goal_list", persona="scout", status="done")["result"]["goals"][0]["progress"] == 1.0
        count = run("brain_query", persona="scout", sql="SELECT count(*) AS n FROM emotions")["result"][
            "rows"
        ]
        assert count == [{"n": 2}]
    persona.db.close()
