"""Rooms over the bus: members-only delivery, paging, persistence across a restart."""

from __future__ import annotations

from pathlib import Path

import pytest
from websockets.exceptions import ConnectionClosed

from personad.errors import BadRequestError
from personad.rooms.store import RoomStore, Sender
from tests.conftest import RunningDaemon, start_daemon


def test_messages_reach_members_only(running: RunningDaemon) -> None:
    with running.ws(name="alice") as alice, running.ws(name="bob") as bob, running.ws(name="eve") as eve:
        created = alice.call("room_create", {"room": "lab", "topic": "experiments"})
        assert created["ok"] and created["result"]["room"]["members"] == 1
        assert alice.call("room_create", {"room": "lab"})["error"]["code"] == "room_exists"
        assert bob.call("room_join", {"room": "lab"})["ok"]
        assert alice.wait_event("room_joined")["data"]["name"] == "alice"  # her own join on create
        assert alice.wait_event("room_joined")["data"]["name"] == "bob"
        sent = bob.call("chat", {"room": "lab", "text": "hello lab"})
        assert sent["result"]["delivered_sessions"] == 2
        for member in (alice, bob):
            event = member.wait_event("chat_message")
            assert event["data"]["text"] == "hello lab"
            assert event["data"]["sender"]["name"] == "bob"
        # eve is not a member: she cannot post or read, and nothing was pushed to her.
        assert eve.call("chat", {"room": "lab", "text": "let me in"})["error"]["code"] == "not_a_member"
        assert eve.call("chat_history", {"room": "lab"})["error"]["code"] == "not_a_member"
        with pytest.raises(TimeoutError):
            eve.wait_event("chat_message", timeout=0.5)
        listing = {r["id"]: r for r in eve.call("rooms")["result"]["rooms"]}
        assert listing["lab"]["joined"] is False and listing["lab"]["members"] == 2
        assert bob.call("room_leave", {"room": "lab"})["result"]["left"] is True
        alice.call("chat", {"room": "lab", "text": "bob left"})
        alice.wait_event("chat_message")
        with pytest.raises((TimeoutError, ConnectionClosed)):
            bob.wait_event("chat_message", timeout=0.5)


def test_invalid_room_names(running: RunningDaemon) -> None:
    with running.ws() as ws:
        for name in ["../x", "UPPER", "", "a" * 65, "sp ace"]:
            reply = ws.call("room_create", {"room": name})
            assert reply["ok"] is False and reply["error"]["code"] in ("invalid_room", "invalid_params"), name


def test_history_pages(running: RunningDaemon) -> None:
    with running.ws() as ws:
        ws.call("room_join", {"room": "general"})
        for i in range(25):
            assert ws.call("chat", {"room": "general", "text": f"m{i}"})["ok"]
        first = ws.call("chat_history", {"room": "general", "limit": 10})["result"]
        assert [m["text"] for m in first["messages"]] == [f"m{i}" for i in range(15, 25)]
        second = ws.call("chat_history", {"room": "general", "limit": 10, "before": first["next_before"]})
        assert [m["text"] for m in second["result"]["messages"]] == [f"m{i}" for i in range(5, 15)]
        last = ws.call(
            "chat_history", {"room": "general", "limit": 10, "before": second["result"]["next_before"]}
        )
        assert [m["text"] for m in last["result"]["messages"]] == [f"m{i}" for i in range(5)]
        assert last["result"]["next_before"] is None


def test_rooms_and_history_survive_restart(tmp_path: Path) -> None:
    home = tmp_path / "home"
    first = start_daemon(home)
    try:
        with first.ws(session="keeper") as ws:
            ws.call("room_create", {"room": "durable", "topic": "kept"})
            ws.call("chat", {"room": "durable", "text": "remember me"})
    finally:
        first.stop()
    second = start_daemon(home)
    try:
        with second.ws(session="keeper") as ws:
            rooms = {r["id"]: r for r in ws.call("rooms")["result"]["rooms"]}
            assert rooms["durable"]["topic"] == "kept" and rooms["durable"]["joined"] is True
            history = ws.call("chat_history", {"room": "durable"})["result"]["messages"]
            assert [m["text"] for m in history] == ["remember me"]
            # Membership survived too: a new message is pushed to the resumed session.
            ws.call("chat", {"room": "durable", "text": "after restart"})
            assert ws.wait_event("chat_message")["data"]["text"] == "after restart"
    finally:
        second.stop()


def test_exactly_full_last_page_has_no_next(running: RunningDaemon) -> None:
    with running.ws() as ws:
        ws.call("room_create", {"room": "twenty"})
        for i in range(20):
            ws.call("chat", {"room": "twenty", "text": f"m{i}"})
        first = ws.call("chat_history", {"room": "twenty", "limit": 10})["result"]
        second = ws.call("chat_history", {"room": "twenty", "limit": 10, "before": first["next_before"]})
        assert [m["text"] for m in second["result"]["messages"]] == [f"m{i}" for i in range(10)]
        assert second["result"]["next_before"] is None


def test_direct_rooms_are_private(running: RunningDaemon) -> None:
    with running.ws(name="ann") as ann, running.ws(name="bob", session="bob") as bob, running.ws() as eve:
        ann.call("room_create", {"room": "dm-ann-bob", "direct": True, "invite": ["bob"]})
        assert bob.wait_event("room_joined")["data"]["room"] == "dm-ann-bob"
        assert "dm-ann-bob" in {r["id"] for r in bob.call("rooms")["result"]["rooms"]}
        assert "dm-ann-bob" not in {r["id"] for r in eve.call("rooms")["result"]["rooms"]}
        assert eve.call("room_join", {"room": "dm-ann-bob"})["error"]["code"] == "direct_room"
        sent = bob.call("chat", {"room": "dm-ann-bob", "text": "hi ann"})["result"]["message"]
        assert sent["direct"] is True and sent["sender"]["name"] == "bob"
        ann.call("room_leave", {"room": "dm-ann-bob"})
        assert ann.call("room_join", {"room": "dm-ann-bob"})["ok"] is True  # its creator may come back


@pytest.mark.parametrize("name", ["\ud800", "💥", "a\x00b", "UPPER"])
def test_impossible_room_names_are_invalid_room_in_every_lookup(tmp_path: Path, name: str) -> None:
    """Found by the fuzz suite: a lone surrogate reached sqlite3 (UnicodeEncodeError -> internal_error)."""
    store = RoomStore(tmp_path / "rooms.sqlite")
    sender = Sender("s1", None, "api", "S")
    lookups = [
        lambda: store.get(name),
        lambda: store.join(name, sender),
        lambda: store.leave(name, "s1"),
        lambda: store.require_member(name, "s1"),
    ]
    try:
        for lookup in lookups:
            with pytest.raises(BadRequestError) as caught:
                lookup()
            assert caught.value.code == "invalid_room"
    finally:
        store.close()
