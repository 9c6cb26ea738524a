// Mesh: peers, skills, transfers.

import { bus } from "./state.js";
import { $, clearListError, el, percent, showError } from "./util.js";

// --- Mesh: peers, skills, transfers --------------------------------------------------------------------

export const mesh = { seq: 0, timer: null, poll: null };
export const MESH_POLL_MS = 5000; // trust scores and peer names change without an event of their own

export async function refreshMesh() {
  if (bus.state !== "open") return;
  const seq = ++mesh.seq;
  try {
    const status = await bus.call("mesh_status");
    if (seq !== mesh.seq) return;
    if (!status.enabled) {
      $("mesh-note").textContent = "Off: start the daemon with `personad serve --mesh`.";
      $("mesh-peers").hidden = $("mesh-skills").hidden = true;
      return;
    }
    if (mesh.poll === null) mesh.poll = setInterval(() => void refreshMesh(), MESH_POLL_MS);
    const [{ peers }, { skills }] = await Promise.all([bus.call("mesh_peers"), bus.call("mesh_skills")]);
    if (seq !== mesh.seq) return;
    $("mesh-note").textContent =
      `node ${status.node.slice(0, 12)} on ${status.addr} · ${status.trusted_peers} trusted peers · ` +
      `seeding ${status.seeding.length ? status.seeding.join(", ") : "nothing"}`;
    renderMeshPeers(peers);
    renderMeshSkills(skills);
    clearListError($("mesh-error"));
  } catch (error) {
    if (seq !== mesh.seq) return;
    if (error.code !== "disconnected" && error.code !== "not_connected") showError($("mesh-error"), error, "mesh");
  }
}

export function queueMeshRefresh() {
  clearTimeout(mesh.timer);
  mesh.timer = setTimeout(() => void refreshMesh(), 150);
}

export function renderMeshPeers(peers) {
  const table = $("mesh-peers");
  table.hidden = peers.length === 0;
  table.querySelector("tbody").replaceChildren(
    ...peers.map((peer) =>
      el(
        "tr",
        { dataset: { node: peer.node }, class: peer.trusted ? "" : "untrusted" },
        el("td", { title: peer.node }, peer.name || peer.node.slice(0, 12)),
        el("td", {}, peer.addr || "–"),
        el("td", {}, `${peer.score.toFixed(2)}${peer.trusted ? "" : peer.retired_by ? " retired" : " dropped"}`),
      ),
    ),
  );
}

export function renderMeshSkills(skills) {
  const table = $("mesh-skills");
  table.hidden = skills.length === 0;
  table.querySelector("tbody").replaceChildren(
    ...skills.map((skill) =>
      el(
        "tr",
        { dataset: { adapter: skill.adapter } },
        el("td", { title: skill.parents.length ? `on ${skill.parents.join(", ")}` : "" }, skill.skill),
        el("td", {}, skill.adapter + (skill.seeding_here ? " ✓" : "")),
        el("td", {}, String(skill.seeders.length)),
        el("td", {}, skill.demand_score.toFixed(2)),
      ),
    ),
  );
}

bus.on("event:mesh_transfer_progress", (data) => {
  $("mesh-transfer").hidden = false;
  $("mesh-transfer-label").textContent = `${data.adapter}: ${percent(data.progress)} from ${data.peers} peers`;
  $("mesh-progress").value = data.progress;
});

bus.on("event:mesh_skill_acquired", (data) => {
  $("mesh-transfer-label").textContent = `${data.adapter}: acquired and verified`;
  $("mesh-progress").value = 1;
  queueMeshRefresh();
});

bus.on("event:mesh_skill_rejected", (data) => {
  $("mesh-transfer").hidden = false;
  $("mesh-transfer-label").textContent = `${data.adapter || data.info_hash.slice(0, 12)}: rejected (${data.code})`;
  queueMeshRefresh();
});

for (const name of ["mesh_peer_joined", "mesh_peer_dropped", "mesh_skill_announced", "mesh_replicating"]) {
  bus.on(`event:${name}`, queueMeshRefresh);
}
