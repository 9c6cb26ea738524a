"""Room commands: ``room_create``, ``room_join``, ``room_leave``, ``rooms``, ``chat``, ``chat_history``."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from personad.bus.commands import CommandRegistry, NoParams
from personad.bus.processor import CommandContext
from personad.rooms.store import Sender

CAPABILITY = "chat"
MAX_TEXT = 16_000


class RoomParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    room: str = Field(description="room name: lowercase letters, digits, '_', '-', '.'")


class RoomCreateParams(RoomParams):
    topic: str = Field(default="", max_length=500)
    join: bool = Field(default=True, description="join the new room at once")


class ChatParams(RoomParams):
    text: str = Field(min_length=1, max_length=MAX_TEXT, description="the message")


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
    room = rooms.create(params.room, topic=params.topic, created_by=ctx.session.id)
    if params.join:
        room = rooms.join(params.room, _sender(ctx))
        _announce(ctx, "room_joined", params.room)
    ctx.daemon.events.publish("room_created", {"room": room})
    return {"room": room, "joined": params.join}


async def room_join(ctx: CommandContext, params: RoomParams) -> dict[str, Any]:
    """Join a room: its messages are pushed to this session from now on.

    Returns `{"room": {...}, "joined": true}`; members get a `room_joined` event.
    """
    room = ctx.daemon.rooms.join(params.room, _sender(ctx))
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
    return {"rooms": ctx.daemon.rooms.list(ctx.session.id)}


async def chat(ctx: CommandContext, params: ChatParams) -> dict[str, Any]:
    """Post a message to a room this session has joined; members get a chat_message event.

    Returns `{"message": {id, room, text, ts, sender: {session_id, client_id, kind, name}},
    "delivered_sessions": n}`; `not_a_member` unless joined.
    """
    rooms = ctx.daemon.rooms
    rooms.require_member(params.room, ctx.session.id)
    message = rooms.post(params.room, _sender(ctx), params.text)
    delivered = ctx.daemon.events.publish("chat_message", message, to=rooms.members(params.room))
    return {"message": message, "delivered_sessions": delivered}


async def chat_history(ctx: CommandContext, params: ChatHistoryParams) -> dict[str, Any]:
    """A page of a room's messages, oldest first; pass next_before as before for the previous page.

    Returns `{"room", "messages": [...], "next_before": id | null}`; members only.
    """
    rooms = ctx.daemon.rooms
    rooms.require_member(params.room, ctx.session.id)
    messages = rooms.history(params.room, before=params.before, limit=params.limit)
    next_before = messages[0]["id"] if len(messages) == params.limit else None
    return {"room": params.room, "messages": messages, "next_before": next_before}


def _announce(ctx: CommandContext, event: str, room: str, *, include_self: bool = False) -> None:
    members = set(ctx.daemon.rooms.members(room))
    if include_self:
        members.add(ctx.session.id)
    data = {"room": room, "session_id": ctx.session.id, "kind": ctx.session.kind, "name": ctx.session.name}
    ctx.daemon.events.publish(event, data, to=members)


def register(registry: CommandRegistry) -> None:
    registry.add("room_create", room_create, params=RoomCreateParams, capability=CAPABILITY)
    registry.add("room_join", room_join, params=RoomParams, capability=CAPABILITY)
    registry.add("room_leave", room_leave, params=RoomParams, capability=CAPABILITY)
    registry.add("rooms", list_rooms, params=NoParams, capability=CAPABILITY)
    registry.add("chat", chat, params=ChatParams, capability=CAPABILITY)
    registry.add("chat_history", chat_history, params=ChatHistoryParams, capability=CAPABILITY)
