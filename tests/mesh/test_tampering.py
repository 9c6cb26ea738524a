"""A malicious peer tries each way in; each is refused with its own code, nothing enters the registry, and
the sender's trust drops (below 0.7 it is dropped)."""

from __future__ import annotations

import dataclasses
import hashlib
import shutil
from pathlib import Path

import pytest

from personad.lora.manifest import MANIFEST_FILE, WEIGHTS_FILE, AdapterManifest
from personad.lora.registry import AdapterRegistry
from personad.mesh import trust
from personad.mesh.announcement import Announcement
from personad.mesh.errors import RejectedError
from personad.mesh.node import MeshNode

from .helpers import Recorder, register_chain, start_node, wait_for

FILES = ("adapter_config.json", WEIGHTS_FILE, MANIFEST_FILE)


async def pair(tmp_path: Path) -> tuple[MeshNode, Recorder, MeshNode]:
    """A victim and an attacker that joined its mesh."""
    victim, events = await start_node(tmp_path / "victim", "victim")
    attacker, _ = await start_node(tmp_path / "attacker", "attacker")
    await attacker.join(victim.invite())
    await wait_for(lambda: victim.trust.get(attacker.node_id) is not None, 10, "the attacker admitted")
    return victim, events, attacker


def announce_folder(
    attacker: MeshNode, folder: Path, files: tuple[str, ...], **fields: object
) -> Announcement:
    """Seed ``folder`` (named like the adapter) as a torrent and announce it with ``fields`` overriding."""
    info_hash, _ = attacker.store.import_adapter(folder.name, folder, list(files))
    manifest = AdapterManifest.read(folder)
    ann = Announcement(
        skill=folder.name,
        adapter=folder.name,
        parents=list(manifest.parents),
        lora_hash=manifest.lora_hash,
        base_model_sha256=manifest.base_model_sha256,
        info_hash=info_hash,
        size=sum((folder / f).stat().st_size for f in files),
        node=attacker.node_id,
    )
    for key, value in fields.items():
        ann = dataclasses.replace(ann, **{key: value})
    return ann.signed(attacker.key) if "sig" not in fields else ann


async def expect_rejection(
    victim: MeshNode, events: Recorder, attacker: MeshNode, skill: str, code: str
) -> None:
    await wait_for(lambda: skill in {s["adapter"] for s in victim.skills()} or victim.rejected, 10, "listing")
    with pytest.raises(RejectedError) as raised:
        await victim.acquire_skill(skill)
    assert raised.value.code == code
    assert AdapterRegistry.for_home(victim.home).list_adapters() == []
    after = victim.trust.get(attacker.node_id)
    assert after is not None and after.score < trust.INITIAL
    assert after.history[-1]["outcome"] == code
    assert any(e["code"] == code for e in events.of("mesh_skill_rejected"))
    assert not list((victim.dir / "store").glob("*/*/adapter_model.*")), "the rejected files were kept"


async def test_a_flipped_byte_in_the_weights(tmp_path: Path) -> None:
    victim, events, attacker = await pair(tmp_path)
    try:
        register_chain(attacker.home, tmp_path, ["legal"])
        folder = tmp_path / "legal"
        shutil.copytree(AdapterRegistry.for_home(attacker.home).folder("legal"), folder)
        data = bytearray((folder / WEIGHTS_FILE).read_bytes())
        data[-5] ^= 0x01
        (folder / WEIGHTS_FILE).write_bytes(bytes(data))
        attacker.seed(announce_folder(attacker, folder, FILES))  # the original lora_hash, tampered bytes
        await attacker.publish()
        await expect_rejection(victim, events, attacker, "legal", "mesh_hash_mismatch")
        assert list((victim.dir / "quarantine").iterdir()), "the tampered download is quarantined"
    finally:
        await victim.close()
        await attacker.close()


async def test_a_forged_signature(tmp_path: Path) -> None:
    victim, events, attacker = await pair(tmp_path)
    try:
        register_chain(attacker.home, tmp_path, ["legal"])
        folder = AdapterRegistry.for_home(attacker.home).folder("legal")
        honest = announce_folder(attacker, folder, FILES)
        forged = dataclasses.replace(honest, metrics={"effectiveness": 0.99})  # changed after signing
        attacker.seed(forged)
        await attacker.publish()
        await wait_for(lambda: events.of("mesh_skill_rejected"), 10, "the rejection")
        await expect_rejection(victim, events, attacker, "legal", "mesh_bad_signature")
    finally:
        await victim.close()
        await attacker.close()


async def test_a_wrong_base_model(tmp_path: Path) -> None:
    victim, events, attacker = await pair(tmp_path)
    try:
        register_chain(attacker.home, tmp_path, ["legal"])
        folder = AdapterRegistry.for_home(attacker.home).folder("legal")
        other = hashlib.sha256(b"another model").hexdigest()
        attacker.seed(announce_folder(attacker, folder, FILES, base_model_sha256=other))
        await attacker.publish()
        await expect_rejection(victim, events, attacker, "legal", "mesh_base_model_mismatch")
    finally:
        await victim.close()
        await attacker.close()


async def test_a_missing_parent(tmp_path: Path) -> None:
    victim, events, attacker = await pair(tmp_path)
    try:
        register_chain(attacker.home, tmp_path, ["legal", "legal.patent"])
        folder = AdapterRegistry.for_home(attacker.home).folder("legal.patent")
        attacker.seed(announce_folder(attacker, folder, FILES))  # its parent "legal" is never announced
        await attacker.publish()
        await expect_rejection(victim, events, attacker, "legal.patent", "mesh_parent_missing")
    finally:
        await victim.close()
        await attacker.close()


async def test_a_pickled_adapter(tmp_path: Path) -> None:
    victim, events, attacker = await pair(tmp_path)
    try:
        register_chain(attacker.home, tmp_path, ["legal"])
        folder = tmp_path / "legal"
        shutil.copytree(AdapterRegistry.for_home(attacker.home).folder("legal"), folder)
        (folder / "adapter_model.bin").write_bytes(b"\x80\x04cos\nsystem\n(S'touch /tmp/pwned'\ntR.")
        files = ("adapter_config.json", WEIGHTS_FILE, "adapter_model.bin", MANIFEST_FILE)
        attacker.seed(announce_folder(attacker, folder, files))
        await attacker.publish()
        await expect_rejection(victim, events, attacker, "legal", "mesh_unsafe_format")
    finally:
        await victim.close()
        await attacker.close()


async def test_an_announcement_replayed_from_a_retired_key(tmp_path: Path) -> None:
    victim, events = await start_node(tmp_path / "victim", "victim")
    origin, _ = await start_node(tmp_path / "origin", "origin")
    attacker, _ = await start_node(tmp_path / "attacker", "attacker")
    try:
        await origin.join(victim.invite())
        await attacker.join(victim.invite())
        register_chain(origin.home, tmp_path, ["legal"])
        old = await origin.broadcast_capability("legal")
        await wait_for(lambda: victim.skills(), 10, "the announcement")
        rotated = await origin.rotate_key()
        await wait_for(lambda: victim.trust.retired(rotated["old"]), 10, "the retirement")
        # The attacker replays the origin's old, validly signed announcement, seeding the same files.
        folder = AdapterRegistry.for_home(origin.home).folder("legal")
        info_hash, _ = attacker.store.import_adapter("legal", folder, list(FILES))
        assert info_hash == old.info_hash
        await origin.close()  # only the replay is left on the mesh
        attacker.seed(old)
        await attacker.publish()
        await wait_for(lambda: events.of("mesh_skill_rejected"), 10, "the rejection")
        await expect_rejection(victim, events, attacker, "legal", "mesh_key_retired")
    finally:
        for node in (victim, origin, attacker):
            await node.close()


async def test_a_peer_below_the_threshold_is_dropped(tmp_path: Path) -> None:
    victim, events, attacker = await pair(tmp_path)
    try:
        register_chain(attacker.home, tmp_path, ["legal", "medical"])
        registry = AdapterRegistry.for_home(attacker.home)
        for name in ("legal", "medical"):
            honest = announce_folder(attacker, registry.folder(name), FILES)
            attacker.seed(dataclasses.replace(honest, persona="forger"))  # signature no longer matches
        await attacker.publish()
        await wait_for(lambda: events.of("mesh_peer_dropped"), 10, "the drop")
        peer = victim.trust.get(attacker.node_id)
        assert peer is not None and peer.score < trust.DROP_BELOW and not peer.trusted
        assert [p.node for p in victim.trust.trusted()] == []
        # A dropped peer is no longer read: what it announces next is never listed.
        register_chain(attacker.home, tmp_path, ["fresh"], seed=7)
        await attacker.broadcast_capability("fresh")
        await attacker.tick()
        await victim.tick()
        assert "fresh" not in {s["adapter"] for s in victim.skills()}
    finally:
        await victim.close()
        await attacker.close()
