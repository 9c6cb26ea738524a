"""How often the Protocol Sheriff agrees with hand-written labels.

``benchmarks/data/sheriff_labelled.jsonl`` holds answers a student persona might give, each with the
protocol it answers under, the attack (or null) and a human label: did the answer break the protocol?
The rows were written before the detectors were tuned, by someone deciding what a careful reviewer would
call a violation, not what the detectors can see; a few are knowingly out of their reach (semantic hints,
an answer that repeats wording the prompt tells the persona to say).

    .venv/bin/python benchmarks/sheriff.py            # summary on stderr, JSON as the last stdout line
    .venv/bin/python benchmarks/sheriff.py --show-all # also list every row's verdict

The last line of stdout is one JSON object: n, agreement, precision, recall, the false negatives and false
positives (counts), and per detector how often it fired first and how often that was right.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from pathlib import Path
from typing import Any

from personad.academy.sheriff import ProtocolSheriff, attack_from_dict, protocol_from_dict

LABELLED = Path(__file__).resolve().parent / "data" / "sheriff_labelled.jsonl"


def load(path: Path = LABELLED) -> list[dict[str, Any]]:
    """The labelled rows, one JSON object a line."""
    with path.open(encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


def evaluate(rows: list[dict[str, Any]]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The summary and, per row, the label, the Sheriff's verdict and the row's note."""
    results: list[dict[str, Any]] = []
    for index, row in enumerate(rows):
        sheriff = ProtocolSheriff(protocol_from_dict(row["protocol"]))
        attack = attack_from_dict(row["attack"]) if row.get("attack") else None
        verdict = sheriff.judge(attack, row["response"])
        results.append({"row": index, "label": row["violation"], "verdict": verdict, "note": row["note"]})
    counts = Counter((r["label"], r["verdict"].violation) for r in results)
    tp, fp, fn, tn = counts[True, True], counts[False, True], counts[True, False], counts[False, False]
    by_detector: dict[str, dict[str, int]] = {}
    for r in results:
        if r["verdict"].violation:
            entry = by_detector.setdefault(r["verdict"].detector or "?", {"fired": 0, "correct": 0})
            entry["fired"] += 1
            entry["correct"] += int(r["label"])
    n = len(results)
    summary = {
        "benchmark": "sheriff",
        "n": n,
        "agreement": round((tp + tn) / n, 4) if n else 0.0,
        "precision": round(tp / (tp + fp), 4) if tp + fp else 0.0,
        "recall": round(tp / (tp + fn), 4) if tp + fn else 0.0,
        "false_negatives": fn,
        "false_positives": fp,
        "by_detector": dict(sorted(by_detector.items())),
    }
    return summary, results


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", type=Path, default=LABELLED)
    parser.add_argument("--show-all", action="store_true", help="list every row, not only disagreements")
    args = parser.parse_args()
    summary, results = evaluate(load(args.data))
    log = lambda text: print(text, file=sys.stderr)  # noqa: E731
    tp = sum(r["label"] and r["verdict"].violation for r in results)
    tn = sum(not r["label"] and not r["verdict"].violation for r in results)
    log("                 sheriff: violation  sheriff: clean")
    log(f"label: violation {tp:>18} {summary['false_negatives']:>15}")
    log(f"label: clean     {summary['false_positives']:>18} {tn:>15}")
    for r in results:
        agree = r["label"] == r["verdict"].violation
        if args.show_all or not agree:
            mark = "ok  " if agree else ("FN  " if r["label"] else "FP  ")
            log(f"{mark} row {r['row']:>3}: {r['verdict'].reasons} -- {r['note']}")
    print(json.dumps(summary), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
