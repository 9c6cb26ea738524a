"""Demand-driven replication: a skill in demand is fetched and seeded by nodes that lack it, at once above
0.8, at most five a minute."""

from __future__ import annotations

from pathlib import Path

from personad.mesh.node import REPLICATIONS_PER_MINUTE, demand_score

from .helpers import register_chain, start_node, wait_for


def test_demand_score() -> None:
    assert demand_score(0, 0) == 0.0
    assert 0.69 < demand_score(24, 0) < 0.71 and 0.79 < demand_score(32, 0) < 0.81
    assert demand_score(30, 10) > demand_score(30, 0)


async def test_a_skill_in_demand_is_replicated_at_most_five_a_minute(tmp_path: Path) -> None:
    # The origin's personas answered 40 requests with each adapter: demand 1 - e^-2 = 0.86 > 0.8.
    origin, _ = await start_node(tmp_path / "origin", "origin", loads=lambda lora_hash: 40, replicate=False)
    helper, events = await start_node(tmp_path / "helper", "helper")
    quiet, _ = await start_node(tmp_path / "quiet", "quiet", loads=lambda lora_hash: 0)
    try:
        await helper.join(origin.invite())
        names = [f"skill{i}" for i in range(REPLICATIONS_PER_MINUTE + 2)]
        for i, name in enumerate(names):
            register_chain(origin.home, tmp_path, [name], seed=20 + i)
            await origin.broadcast_capability(name)
        await wait_for(lambda: len(helper.own) == REPLICATIONS_PER_MINUTE, 20, "replications")
        assert len(events.of("mesh_replicating")) == REPLICATIONS_PER_MINUTE
        assert all(e["demand"] > 0.8 for e in events.of("mesh_replicating"))
        for _ in range(5):  # the rest wait for the next minute
            await helper.tick()
        assert len(helper.own) == REPLICATIONS_PER_MINUTE

        # Without demand nothing is fetched unasked.
        await quiet.join(origin.invite())
        register_chain(quiet.home, tmp_path, ["unloved"], seed=99)
        await quiet.broadcast_capability("unloved")
        await wait_for(lambda: "unloved" in {s["adapter"] for s in helper.skills()}, 10, "listing")
        for _ in range(5):
            await helper.tick()
        assert "unloved" not in {a.adapter for a in helper.own.values()}
    finally:
        for node in (origin, helper, quiet):
            await node.close()
