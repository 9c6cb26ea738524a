"""Room commands: ``room_create``, ``room_join``, ``room_leave``, ``rooms``, ``chat``, ``chat_history``."""

from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from personad.bus.commands import CommandRegistry, NoParams
from personad.bus.processor import CommandContext
from personad.errors import ForbiddenError, NotFoundError
from personad.rooms.store import Sender

CAPABILITY = "chat"
MAX_TEXT = 16_000
MAX_META = 4096


class RoomParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    room: str = Field(description="room name: lowercase letters, digits, '_', '-', '.'")


class RoomCreateParams(RoomParams):
    topic: str = Field(default="", max_length=500)
    join: bool = Field(default=True, description="join the new room at once")
    direct: bool = Field(default=False, description="a direct room: personas in it answer every message")
    invite: list[str] = Field(
        default_factory=list, max_length=50, description="session or persona ids to add"
    )


class RoomInviteParams(RoomParams):
    session: str = Field(description="the session or persona id to add to the room")


class ChatParams(RoomParams):
    text: str = Field(min_length=1, max_length=MAX_TEXT, description="the message")
    meta: dict[str, Any] | None = Field(default=None, description="small JSON metadata kept with the message")

    @field_validator("meta")
    @classmethod
    def _small_meta(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        if value is not None and len(json.dumps(value, default=str)) > MAX_META:
            raise ValueError(f"meta must serialise to at most {MAX_META} bytes")
        return value


class ChatDeltaParams(RoomParams):
    stream_id: str = Field(min_length=1, max_length=100, description="groups the deltas of one reply")
    delta: str = Field(max_length=MAX_TEXT, description="the next piece of the reply")


class ChatHistoryParams(RoomParams):
    before: int | None = Field(default=None, ge=1, description="only messages with a smaller id (paging)")
    limit: int = Field(default=50, ge=1, le=500)


def _sender(ctx: CommandContext) -> Sender:
    return Sender(ctx.session.id, ctx.client_id, ctx.session.kind, ctx.session.name)


async def room_create(ctx: CommandContext, params: RoomCreateParams) -> dict[str, Any]:
    """Create a room (and join it unless join=false).

    Returns `{"room": {id, topic, created_by, created_at, members}, "joined": bool}`; `room_exists` if taken.
    """
    rooms = ctx.daemon.rooms
    for invitee in params.invite:
        _invitee(ctx, invitee)  # refuse unknown invitees before anything is created
    room = rooms.create(params.room, topic=params.topic, created_by=ctx.session.id, direct=params.direct)
    if params.join:
        room = rooms.join(params.room, _sender(ctx))
        _announce(ctx, "room_joined", params.room)
    for invitee in params.invite:
        room = rooms.join(params.room, _invitee(ctx, invitee))
        _announce_invite(ctx, params.room, invitee)
    # Everyone connected may want to join a new room: tell every live session.
    ctx.daemon.events.publish("room_created", {"room": room}, to=[s.id for s in ctx.daemon.sessions])
    return {"room": room, "joined": params.join}


async def room_invite(ctx: CommandContext, params: RoomInviteParams) -> dict[str, Any]:
    """Add another session or a persona to a room this session has joined.

    Returns `{"room": {...}, "invited": id}`; the invitee gets a `room_joined` event like every member.
    """
    ctx.daemon.rooms.require_member(params.room, ctx.session.id)
    room = ctx.daemon.rooms.join(params.room, _invitee(ctx, params.session))
    _announce_invite(ctx, params.room, params.session)
    return {"room": room, "invited": params.session}


def _invitee(ctx: CommandContext, session_id: str) -> Sender:
    live = ctx.daemon.sessions.find(session_id)
    if live is not None:
        return Sender(live.id, None, live.kind, live.name)
    persona = ctx.daemon.persona_identity(session_id)
    if persona is not None:
        return persona
    raise NotFoundError(f"no live session or persona {session_id!r} to invite", code="session_not_found")


def _announce_invite(ctx: CommandContext, room: str, session_id: str) -> None:
    members = ctx.daemon.rooms.members(room)
    data = {"room": room, "session_id": session_id, "invited_by": ctx.session.id}
    ctx.daemon.events.publish("room_joined", data, to=members)


async def room_join(ctx: CommandContext, params: RoomParams) -> dict[str, Any]:
    """Join a room: its messages are pushed to this session from now on. Direct rooms are invitation-only.

    Returns `{"room": {...}, "joined": true}`; members get a `room_joined` event.
    """
    rooms = ctx.daemon.rooms
    found = rooms.get(params.room)
    invited = rooms.is_member(params.room, ctx.session.id) or found["created_by"] == ctx.session.id
    if found["direct"] and not invited:
        raise ForbiddenError(
            f"room {params.room!r} is a direct room; only its members can invite others", code="direct_room"
        )
    room = rooms.join(params.room, _sender(ctx))
    _announce(ctx, "room_joined", params.room)
    return {"room": room, "joined": True}


async def room_leave(ctx: CommandContext, params: RoomParams) -> dict[str, Any]:
    """Leave a room.

    Returns `{"room": id, "left": bool}` (false when this session was not a member).
    """
    left = ctx.daemon.rooms.leave(params.room, ctx.session.id)
    if left:
        _announce(ctx, "room_left", params.room, include_self=True)
    return {"room": params.room, "left": left}


async def list_rooms(ctx: CommandContext, params: NoParams) -> dict[str, Any]:
    """List rooms, with member counts and whether this session has joined.

    Returns `{"rooms": [{id, topic, created_by, created_at, members, joined}]}`.
    """
    listed = ctx.daemon.rooms.list_rooms(ctx.session.id)
    # Direct rooms are private: only their members see them.
    return {"rooms": [r for r in listed if r["joined"] or not r["direct"]]}


async def chat(ctx: CommandContext, params: ChatParams) -> dict[str, Any]:
    """Post a message to a room this session has joined; members get a chat_message event.

    Returns `{"message": {id, room, text, ts, sender: {session_id, client_id, kind, name}},
    "delivered_sessions": n}`; `not_a_member` unless joined.
    """
    rooms = ctx.daemon.rooms
    rooms.require_member(params.room, ctx.session.id)
    room = rooms.get(params.room)
    message = rooms.post(params.room, _sender(ctx), params.text, params.meta)
    message["direct"] = room["direct"]
    delivered = ctx.daemon.events.publish("chat_message", message, to=rooms.members(params.room))
    return {"message": message, "delivered_sessions": delivered}


async def chat_delta(ctx: CommandContext, params: ChatDeltaParams) -> dict[str, Any]:
    """Stream a piece of a reply that is still being written; members get a chat_delta event.

    Not stored: the finished reply is posted with `chat` (its `meta.stream_id` names the stream).
    Returns `{"delivered_sessions": n}`.
    """
    rooms = ctx.daemon.rooms
    rooms.require_member(params.room, ctx.session.id)
    data = {
        "room": params.room,
        "stream_id": params.stream_id,
        "delta": params.delta,
        "sender": {"session_id": ctx.session.id, "kind": ctx.session.kind, "name": ctx.session.name},
    }
    return {
        "delivered_sessions": ctx.daemon.events.publish("chat_delta", data, to=rooms.members(params.room))
    }


async def chat_history(ctx: CommandContext, params: ChatHistoryParams) -> dict[str, Any]:
    """A page of a room's messages, oldest first; pass next_before as before for the previous page.

    Returns `{"room", "messages": [...], "next_before": id | null}`; members only.
    """
    rooms = ctx.daemon.rooms
    rooms.require_member(params.room, ctx.session.id)
    # One extra row tells whether an older page exists, so next_before is never a dead end.
    messages = rooms.history(params.room, before=params.before, limit=params.limit + 1)
    older = len(messages) > params.limit
    messages = messages[-params.limit :]
    next_before = messages[0]["id"] if older else None
    return {"room": params.room, "messages": messages, "next_before": next_before}


def _announce(ctx: CommandContext, event: str, room: str, *, include_self: bool = False) -> None:
    members = set(ctx.daemon.rooms.members(room))
    if include_self:
        members.add(ctx.session.id)
    data = {"room": room, "session_id": ctx.session.id, "kind": ctx.session.kind, "name": ctx.session.name}
    ctx.daemon.events.publish(event, data, to=members)


def register_commands(registry: CommandRegistry) -> None:
    registry.add("room_create", room_create, params=RoomCreateParams, capability=CAPABILITY)
    registry.add("room_join", room_join, params=RoomParams, capability=CAPABILITY)
    registry.add("room_leave", room_leave, params=RoomParams, capability=CAPABILITY)
    registry.add("rooms", list_rooms, params=NoParams, capability=CAPABILITY)
    registry.add("room_invite", room_invite, params=RoomInviteParams, capability=CAPABILITY)
    registry.add("chat", chat, params=ChatParams, capability=CAPABILITY)
    registry.add("chat_delta", chat_delta, params=ChatDeltaParams, capability=CAPABILITY)
    registry.add("chat_history", chat_history, params=ChatHistoryParams, capability=CAPABILITY)
