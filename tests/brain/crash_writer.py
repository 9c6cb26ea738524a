"""Write memories to a brain in bursts, printing each id only once remember() has returned.

    python -m tests.brain.crash_writer DB [--fake] [--seed N] [--ops N] [--tag NAME]

The durability test SIGKILLs this process at a random moment and then checks that every id it printed
is in the database: an id on stdout is a write the brain acknowledged.
"""

from __future__ import annotations

import argparse
import importlib.util
import random
import sys
import types
from pathlib import Path


def _import_brain_package() -> None:
    # `import personad` imports the whole daemon (most of a second) before personad.brain is reached; a
    # crash round must start fast, so register a bare package object and import only the brain.
    if "personad" in sys.modules:
        return
    spec = importlib.util.find_spec("personad")
    if spec is None or spec.submodule_search_locations is None:
        raise SystemExit("personad is not importable")
    package = types.ModuleType("personad")
    package.__path__ = list(spec.submodule_search_locations)
    package.__spec__ = spec
    sys.modules["personad"] = package


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("db", type=Path)
    parser.add_argument("--fake", action="store_true", help="use the hashing embedder instead of MiniLM")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--ops", type=int, default=0, help="stop after this many calls (0: until killed)")
    parser.add_argument("--tag", default="w")
    args = parser.parse_args(argv)

    _import_brain_package()
    from personad.brain import Brain, HashEmbedder

    rng = random.Random(args.seed)
    words = ["river", "stone", "lamp", "orbit", "cedar", "quartz", "ember", "delta", "harbor", "violet"]
    brain = Brain.open(args.db, embedder=HashEmbedder() if args.fake else None)
    out = sys.stdout
    out.write("ready\n")
    out.flush()
    op = 0
    while args.ops == 0 or op < args.ops:
        batch = []
        for item in range(1 if rng.random() < 0.5 else rng.randint(2, 20)):
            text = f"{args.tag} seed {args.seed} op {op} item {item}: " + " ".join(rng.choices(words, k=8))
            memory: dict[str, object] = {"type": "observation", "content": text, "importance": rng.random()}
            roll = rng.random()
            if roll < 0.2:
                # Facts about a few shared subjects, so crashes also land inside the closing UPDATEs.
                memory.update(type="fact", key=f"subject-{rng.randint(0, 4)}")
            elif roll < 0.25:
                memory = {"type": "collaboration", "with_persona": "peer", "learned": [text]}
            batch.append(memory)
        results = brain.remember_many(batch) if len(batch) > 1 else [brain.remember(batch[0])]
        # One write() per call: a kill can cut the pipe between calls, never inside an id line.
        out.write("".join(f"{r['id']}\n" for r in results))
        out.flush()
        op += 1
    brain.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
