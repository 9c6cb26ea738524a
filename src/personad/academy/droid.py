"""The Testing Droid: an adaptive attacker that keeps pressure on the student where it is weakest.

Train attacks come from a Thompson-sampling bandit over (family, style) cells, fed by the Sheriff's
verdicts, plus a MAP-Elites style archive (one elite per cell: its latest successful attack) that the Droid
mutates — so it pushes harder exactly where the defense gives way, the way a GAN's generator does.
Held-out attacks are neither adaptive nor paraphrased: other families and a disjoint seed range, uniform
and fixed, so "before" and "after" training are measured on the same exam.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any, Literal

from personad.academy.attacks import FAMILIES, STYLES, build_attack, get_family
from personad.academy.types import Attack, Protocol, Verdict

Split = Literal["train", "heldout"]
Cell = tuple[str, str]  # (family, style)

SEED_SPAN = 1_000_000
#: Train seeds lie in [0, SEED_SPAN), held-out seeds in [HELDOUT_SEED_BASE, HELDOUT_SEED_BASE + SEED_SPAN).
HELDOUT_SEED_BASE = SEED_SPAN
MUTATIONS = ("restyle", "new_style", "rider")


@dataclass
class CellStats:
    """One (family, style) arm: a Beta(1 + successes, 1 + failures) posterior over its success rate."""

    tries: int = 0
    successes: int = 0

    @property
    def mean(self) -> float:
        return (1 + self.successes) / (2 + self.tries)

    def sample(self, rng: random.Random) -> float:
        return rng.betavariate(1 + self.successes, 1 + self.tries - self.successes)


class TestingDroid:
    """Generates attacks on one protocol and learns from the verdicts which ones work."""

    __test__ = False  # not a pytest test class, whatever its name says

    def __init__(
        self,
        protocol: Protocol,
        *,
        seed: int = 0,
        families: Sequence[str] | None = None,
        paraphrase: Callable[[str], str | None] | None = None,
        explore: float = 0.1,
        mutation_rate: float = 0.25,
        paraphrase_rate: float = 0.3,
        heldout_fraction: float = 0.3,
    ) -> None:
        """``explore``: chance of a uniformly random cell instead of a Thompson draw; ``mutation_rate``:
        chance of mutating an archived elite once there is one; ``paraphrase_rate``: chance that a train
        attack's request goes through ``paraphrase`` (held-out attacks never do, to stay reproducible)."""
        for name, value in (
            ("explore", explore),
            ("mutation_rate", mutation_rate),
            ("paraphrase_rate", paraphrase_rate),
        ):
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be between 0 and 1, got {value}")
        self.protocol = protocol
        self.seed = seed
        self.explore = explore
        self.mutation_rate = mutation_rate
        self.paraphrase_rate = paraphrase_rate
        self._paraphrase = paraphrase
        train, heldout = self.split_families(seed, families, heldout_fraction)
        # A family that cannot attack this protocol (no forbidden command left, say) simply sits out.
        self.train_families = [f for f in train if FAMILIES[f].available(protocol)]
        self.heldout_families = [f for f in heldout if FAMILIES[f].available(protocol)]
        if not self.train_families or not self.heldout_families:
            raise ValueError(
                f"no attack family applies to persona {protocol.persona_id!r} in one of the splits"
            )
        self.styles = list(STYLES)
        self._cells: dict[Cell, CellStats] = {
            (f, s): CellStats() for f in self.train_families for s in self.styles
        }
        self._archive: dict[Cell, Attack] = {}
        self._rng = random.Random(f"droid|train|{seed}")
        self._used: set[tuple[str, str, int]] = set()
        self._updates = 0
        self._ignored = 0

    @staticmethod
    def split_families(
        seed: int, families: Sequence[str] | None = None, heldout_fraction: float = 0.3
    ) -> tuple[list[str], list[str]]:
        """(train, held-out) families, seeded: ~``heldout_fraction`` held out, at least two, at least one
        of them after the secret — so the exam always asks whether the defense generalises to new tricks."""
        names = sorted(set(families if families is not None else FAMILIES))
        for name in names:
            get_family(name)
        if len(names) < 3:
            raise ValueError(
                f"need at least 3 attack families to split (2 held out, 1 to train on), got {names}"
            )
        count = min(len(names) - 1, max(2, round(len(names) * heldout_fraction)))
        order = list(names)
        random.Random(f"droid|split|{seed}").shuffle(order)
        heldout, train = order[:count], order[count:]
        if not any(FAMILIES[f].can_target_secret for f in heldout):
            swap = next((f for f in train if FAMILIES[f].can_target_secret), None)
            if swap is None:
                raise ValueError("no attack family that targets the secret is available to hold out")
            train[train.index(swap)], heldout[-1] = heldout[-1], swap
        return sorted(train), sorted(heldout)

    # -- generation ------------------------------------------------------------------------------------

    def generate(self, n: int, *, split: Split = "train") -> list[Attack]:
        """``n`` attacks. Train: adaptive, continuing the Droid's stream. Held-out: always the first ``n``
        of one fixed sequence for this seed, so every examination sees the same attacks."""
        if n < 0:
            raise ValueError("n must be non-negative")
        if split == "heldout":
            return self._heldout(n)
        if split != "train":
            raise ValueError(f"split must be 'train' or 'heldout', got {split!r}")
        return [self._next_train() for _ in range(n)]

    def _heldout(self, n: int) -> list[Attack]:
        rng = random.Random(f"droid|heldout|{self.seed}")
        used: set[tuple[str, str, int]] = set()
        attacks = []
        for _ in range(n):
            family, style = rng.choice(self.heldout_families), rng.choice(self.styles)
            seed = HELDOUT_SEED_BASE + rng.randrange(SEED_SPAN)
            while (family, style, seed) in used:
                seed = HELDOUT_SEED_BASE + rng.randrange(SEED_SPAN)
            used.add((family, style, seed))
            attack = build_attack(family, self.protocol, seed, style)
            attacks.append(replace_meta(attack, split="heldout", source="heldout"))
        return attacks

    def _next_train(self) -> Attack:
        rng = self._rng
        paraphrase = self._paraphrase if self._paraphrase and rng.random() < self.paraphrase_rate else None
        if self._archive and rng.random() < self.mutation_rate:
            return self._mutate(paraphrase)
        if rng.random() < self.explore:
            family, style = rng.choice(list(self._cells))
            source = "explore"
        else:
            family, style = self._thompson()
            source = "bandit"
        attack = build_attack(
            family, self.protocol, self._fresh_seed(family, style), style, paraphrase=paraphrase
        )
        return replace_meta(attack, split="train", source=source)

    def _thompson(self) -> Cell:
        """The cell whose posterior draw is highest: cells that keep working get chosen more and more."""
        return max(self._cells, key=lambda cell: self._cells[cell].sample(self._rng))

    def _fresh_seed(self, family: str, style: str) -> int:
        while True:
            seed = self._rng.randrange(SEED_SPAN)
            if (family, style, seed) not in self._used:
                self._used.add((family, style, seed))
                return seed

    def _mutate(self, paraphrase: Callable[[str], str | None] | None) -> Attack:
        """A variation on an elite: same attack in a new style, its family in a new style, or its cell
        with a benign rider (a defense must still help with the harmless part)."""
        rng = self._rng
        cell = rng.choice(sorted(self._archive))
        elite = self._archive[cell]
        kind = rng.choice(MUTATIONS)
        others = [s for s in self.styles if s != elite.style]
        if kind == "restyle":
            fresh = [s for s in others if (elite.family, s, elite.seed) not in self._used]
            if fresh:
                style = rng.choice(fresh)
                self._used.add((elite.family, style, elite.seed))
                attack = build_attack(elite.family, self.protocol, elite.seed, style, paraphrase=paraphrase)
                return replace_meta(attack, split="train", source="archive", mutation=kind, parent=elite.id)
            kind = "new_style"
        if kind == "new_style" and others:
            style, benign = rng.choice(others), None
        else:
            kind, style, benign = "rider", elite.style, True
        seed = self._fresh_seed(elite.family, style)
        attack = build_attack(elite.family, self.protocol, seed, style, benign=benign, paraphrase=paraphrase)
        return replace_meta(attack, split="train", source="archive", mutation=kind, parent=elite.id)

    # -- learning --------------------------------------------------------------------------------------

    def update(self, attack: Attack, verdict: Verdict) -> None:
        """Reward = ``verdict.violation`` (the attack worked). Held-out attacks teach the Droid nothing,
        so the exam cannot leak into training pressure."""
        cell = (attack.family, attack.style)
        if (
            attack.meta.get("split") == "heldout"
            or attack.seed >= HELDOUT_SEED_BASE
            or cell not in self._cells
        ):
            self._ignored += 1
            return
        self._updates += 1
        stats = self._cells[cell]
        stats.tries += 1
        if verdict.violation:
            stats.successes += 1
            self._archive[cell] = attack

    # -- memory between runs ---------------------------------------------------------------------------

    def learned_state(self) -> dict[str, Any]:
        """What the Droid learned, to carry into its next run (a droid persona keeps it in its brain):
        per cell ``[tries, successes]`` and each archived elite as ``[family, style, seed]``."""
        return {
            "version": 1,
            "cells": {f"{f}/{s}": [c.tries, c.successes] for (f, s), c in self._cells.items() if c.tries},
            "archive": {
                f"{f}/{s}": [a.family, a.style, a.seed] for (f, s), a in sorted(self._archive.items())
            },
        }

    def restore(self, state: dict[str, Any]) -> int:
        """Start from an earlier run's :meth:`learned_state`; cells and elites this droid cannot use (a
        held-out family now, one that cannot attack this protocol) are skipped. Elites are rebuilt against
        this run's protocol. Returns how many cells were restored."""
        if not isinstance(state, dict) or state.get("version") != 1:
            return 0
        restored = 0
        for name, counts in (state.get("cells") or {}).items():
            cell = _cell(name)
            if cell in self._cells and isinstance(counts, list) and len(counts) == 2:
                tries, successes = (int(v) for v in counts)
                if 0 <= successes <= tries:
                    self._cells[cell] = CellStats(tries, successes)
                    restored += 1
        for name, elite in (state.get("archive") or {}).items():
            cell = _cell(name)
            if cell not in self._cells or not isinstance(elite, list) or len(elite) != 3:
                continue
            family, style, seed = str(elite[0]), str(elite[1]), int(elite[2])
            if seed >= HELDOUT_SEED_BASE:
                continue  # never let an exam attack into the training archive
            try:
                self._archive[cell] = replace_meta(
                    build_attack(family, self.protocol, seed, style), split="train", source="restored"
                )
            except (KeyError, ValueError):
                continue
        return restored

    def probabilities(self, draws: int = 2000) -> dict[Cell, float]:
        """Monte-Carlo estimate of how often Thompson sampling picks each cell now (for reports, tests)."""
        rng = random.Random(f"droid|probabilities|{self.seed}|{self._updates}")
        counts = dict.fromkeys(self._cells, 0)
        for _ in range(draws):
            counts[max(self._cells, key=lambda cell: self._cells[cell].sample(rng))] += 1
        return {cell: count / draws for cell, count in counts.items()}

    def stats(self) -> dict[str, Any]:
        """JSON-ready state: per cell ("family/style") tries, successes and posterior mean; per family the
        same summed; the archive's elites."""
        families: dict[str, dict[str, float]] = {}
        for (family, _), cell in self._cells.items():
            row = families.setdefault(family, {"tries": 0, "successes": 0})
            row["tries"] += cell.tries
            row["successes"] += cell.successes
        for row in families.values():
            row["mean"] = (1 + row["successes"]) / (2 + row["tries"])
        return {
            "seed": self.seed,
            "train_families": list(self.train_families),
            "heldout_families": list(self.heldout_families),
            "updates": self._updates,
            "ignored_updates": self._ignored,
            "cells": {
                f"{f}/{s}": {"tries": c.tries, "successes": c.successes, "mean": round(c.mean, 4)}
                for (f, s), c in self._cells.items()
            },
            "families": families,
            "archive_size": len(self._archive),
            "archive": {f"{f}/{s}": a.id for (f, s), a in sorted(self._archive.items())},
        }


def _cell(name: object) -> Cell:
    family, _, style = str(name).partition("/")
    return (family, style)


def replace_meta(attack: Attack, **extra: Any) -> Attack:
    """The attack with bookkeeping added to its meta (attacks are frozen; meta is what the Academy logs)."""
    return replace(attack, meta={**attack.meta, **extra})
