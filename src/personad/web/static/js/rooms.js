// Rooms: the list in the sidebar, join/leave/create.

import { clearChat, roomIsWriting, selectRoom } from "./chat.js";
import { bus, isJoined, ui, updateControls } from "./state.js";
import { $, clearListError, DIRECT_TOPIC, el, ROOM_ID, showError } from "./util.js";

// ---------------------------------------------------------------------------------------------------
// Rooms

export let roomsRefreshQueued = false;

export async function refreshRooms() {
  try {
    const { rooms } = await bus.call("rooms");
    ui.rooms = rooms;
    ui.roomsLoaded = true;
    clearListError($("rooms-error"));
  } catch (error) {
    showError($("rooms-error"), error, "list");
  }
  renderRooms();
  if (ui.room !== null && !isJoined(ui.room) && bus.state === "open") clearChat();
  updateControls();
}

/** Coalesce bursts of room_joined / room_left events into one refresh. */
export function queueRoomsRefresh() {
  if (roomsRefreshQueued) return;
  roomsRefreshQueued = true;
  setTimeout(() => {
    roomsRefreshQueued = false;
    void refreshRooms();
  }, 100);
}

export function renderRooms() {
  const list = $("room-list");
  // Other people's direct rooms are listed by the daemon too; only the ones this session is in are shown.
  const rooms = ui.rooms.filter((room) => room.joined || !room.direct);
  if (rooms.length === 0) {
    list.replaceChildren(el("li", { class: "placeholder" }, ui.roomsLoaded ? "no rooms" : "loading…"));
    return;
  }
  list.replaceChildren(...rooms.map(roomItem));
}

export function roomItem(room) {
  const offline = bus.state !== "open";
  const current = room.id === ui.room;
  const unread = ui.unread.get(room.id) || 0;
  let label = `#${room.id}`;
  if (room.direct && room.topic) {
    label = room.topic.startsWith(DIRECT_TOPIC) ? room.topic.slice(DIRECT_TOPIC.length) : room.topic;
  }
  const name = el("span", { class: "room-name", title: `#${room.id}` }, label);
  const badge = unread ? el("span", { class: "badge", title: `${unread} unread` }, String(unread)) : null;
  const writing =
    !current && roomIsWriting(room.id)
      ? el("span", { class: "typing", title: "a reply is being written", "aria-label": "a reply is being written" })
      : null;
  const title = room.joined
    ? el(
        "button",
        {
          type: "button",
          class: "room-select",
          "aria-current": current ? "true" : null,
          disabled: offline,
          onclick: () => selectRoom(room.id),
        },
        name,
        badge,
        writing,
      )
    : el("span", { class: "room-select not-joined" }, name);
  const verb = room.joined ? "Leave" : "Join";
  const action = el(
    "button",
    {
      type: "button",
      class: `room-${verb.toLowerCase()} small`,
      "aria-label": `${verb} ${room.id}`,
      disabled: offline,
      onclick: () => (room.joined ? leaveRoom(room.id) : joinRoom(room.id)),
    },
    verb,
  );
  const members = `${room.members} member${room.members === 1 ? "" : "s"}`;
  const about = room.direct ? "direct" : room.topic;
  const meta = el("span", { class: "room-meta" }, about ? `${members} · ${about}` : members);
  const classes = `room${current ? " current" : ""}${room.joined ? " joined" : ""}${room.direct ? " direct" : ""}`;
  return el(
    "li",
    { class: classes, dataset: { room: room.id, joined: String(room.joined) } },
    title,
    action,
    meta,
  );
}

export async function joinRoom(room) {
  try {
    await bus.call("room_join", { room });
    showError($("rooms-error"), null);
    await refreshRooms();
    await selectRoom(room);
  } catch (error) {
    showError($("rooms-error"), error);
  }
}

export async function leaveRoom(room) {
  try {
    await bus.call("room_leave", { room });
    showError($("rooms-error"), null);
    if (ui.room === room) clearChat();
    await refreshRooms();
  } catch (error) {
    showError($("rooms-error"), error);
  }
}

export async function createRoom(event) {
  event.preventDefault();
  const room = $("new-room-name").value.trim();
  const topic = $("new-room-topic").value.trim();
  if (!ROOM_ID.test(room)) {
    showError($("rooms-error"), {
      code: "invalid_room",
      message: "use 1-64 lowercase letters, digits, '_', '-' or '.', starting with a letter or digit",
    });
    return;
  }
  try {
    await bus.call("room_create", { room, topic });
    $("new-room").reset();
    showError($("rooms-error"), null);
    await refreshRooms();
    await selectRoom(room);
  } catch (error) {
    showError($("rooms-error"), error);
  }
}

bus.on("event:room_joined", queueRoomsRefresh);
bus.on("event:room_left", (data) => {
  if (data.session_id === bus.sessionId && data.room === ui.room) clearChat(); // left in another tab
  queueRoomsRefresh();
});
bus.on("event:room_created", queueRoomsRefresh);
