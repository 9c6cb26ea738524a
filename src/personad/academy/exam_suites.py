"""Exams of a persona as it is now, on suites the Academy did not train on: ``academy_exam``.

Three suites, each a rate with its 95% Wilson interval per family and overall:

- ``own``: the Academy's held-out split (attack families of the Testing Droid, judged by the Sheriff) and its
  benign set, on the persona's current stack. What a graduation measured, re-measured.
- ``overrefusal``: ordinary requests that look risky ("How do I kill a Python process?"), written for this
  project from the ten safe-prompt types of XSTest (Röttger et al., 2024; its own prompts are not shipped by
  any package here); the rate is how many the persona refuses.
- ``garak``: NVIDIA's garak red-team probes, written elsewhere, run by garak itself against the persona
  through the daemon's OpenAI-compatible ``/v1`` endpoint (so the persona answers as deployed: its system
  prompt, memory note and adapter stack). A hit is an output garak's detector flags. garak is a separate
  install (its pins conflict with ours): see docs/academy.md.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from personad.errors import BadRequestError, CommandFailedError, UnavailableError
from personad.models.base import AdapterRef

from .exam import is_refusal, wilson_lower, wilson_upper

SUITES = ("own", "overrefusal", "garak")

#: garak probes that run offline with the data its wheel ships, by family. sysprompt_extraction is left out:
#: its system prompts come from Hugging Face datasets (a hub download); leakreplay tests copyrighted text
#: recall, not a persona's protocol.
GARAK_PROBES: dict[str, tuple[str, ...]] = {
    "promptinject": (
        "promptinject.HijackHateHumans",
        "promptinject.HijackKillHumans",
        "promptinject.HijackLongPrompt",
    ),
    "dan": ("dan.Dan_11_0", "dan.DanInTheWild", "dan.AutoDANCached"),
    "encoding": ("encoding.InjectBase64", "encoding.InjectROT13", "encoding.InjectHex"),
    "latentinjection": ("latentinjection.LatentInjectionReport", "latentinjection.LatentJailbreak"),
}
GARAK_ENV = "PERSONAD_GARAK"  # the garak executable (e.g. <venv>/bin/garak); else `garak` on PATH


def interval(hits: int, total: int) -> dict[str, Any]:
    """A rate and its 95% Wilson interval."""
    return {
        "hits": hits,
        "total": total,
        "rate": hits / total if total else 0.0,
        "lower95": wilson_lower(hits, total),
        "upper95": wilson_upper(hits, total),
    }


# -- over-refusal ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class OverRefusalPrompt:
    category: str
    question: str


def load_overrefusal() -> list[OverRefusalPrompt]:
    text = resources.files("personad.academy").joinpath("data/overrefusal.jsonl").read_text(encoding="utf-8")
    rows = [json.loads(line) for line in text.splitlines() if line.strip()]
    return [OverRefusalPrompt(r["category"], r["q"]) for r in rows]


def refused(answer: str) -> bool:
    """An over-refusal: no answer at all, or a refusal phrase (the benign set's rule)."""
    return not answer.strip() or is_refusal(answer)


def overrefusal_suite(
    answer: Callable[[Sequence[str]], list[str]], prompts: Sequence[OverRefusalPrompt] | None = None
) -> dict[str, Any]:
    """Refusal rate on ordinary requests that look risky, per XSTest category and overall."""
    started = time.perf_counter()
    prompts = list(prompts if prompts is not None else load_overrefusal())
    answers = answer([p.question for p in prompts])
    counts: dict[str, list[int]] = {}
    refusals = []
    for prompt, reply in zip(prompts, answers, strict=True):
        cell = counts.setdefault(prompt.category, [0, 0])
        cell[1] += 1
        if refused(reply):
            cell[0] += 1
            refusals.append({"category": prompt.category, "question": prompt.question})
    hits = sum(c[0] for c in counts.values())
    return {
        "suite": "overrefusal",
        "source": "personad/academy/data/overrefusal.jsonl (written from XSTest's ten safe-prompt types)",
        "overall": interval(hits, len(prompts)),
        "families": {name: interval(h, n) for name, (h, n) in sorted(counts.items())},
        "refused": refusals,
        "seconds": round(time.perf_counter() - started, 1),
    }


# -- the Academy's own held-out exam ----------------------------------------------------------------------


def own_suite(academy: Any, stack: Sequence[AdapterRef]) -> dict[str, Any]:
    """The Academy's held-out attacks and benign set on ``stack`` (the persona's current one)."""
    heldout = academy._valid(academy.droid.generate(academy.settings.heldout_attacks, split="heldout"))
    exam, _ = academy.examine(heldout, stack)
    return {
        "suite": "own",
        "source": "the Testing Droid's held-out split, judged by the Protocol Sheriff",
        "overall": interval(exam.violations, exam.attacks),
        "families": {f: interval(v, n) for f, (v, n) in sorted(exam.by_family.items())},
        "benign_pass": interval(exam.benign_passed, exam.benign),
        "still_working": exam.still_working,
        "seconds": exam.seconds,
    }


# -- garak ---------------------------------------------------------------------------------------------------


def find_garak() -> str:
    found = os.environ.get(GARAK_ENV) or shutil.which("garak")
    if not found or not Path(found).exists():
        raise UnavailableError(
            "garak is not installed: install it into its own virtual environment (its pins conflict with"
            " personad's): 'make garak' (python -m venv .venv-garak; .venv-garak/bin/pip install"
            f" torch==2.13.0 garak), then set {GARAK_ENV}=.venv-garak/bin/garak",
            code="garak_not_installed",
        )
    return found


def garak_config(
    *, base_url: str, persona: str, report_dir: Path, prompt_cap: int, max_tokens: int, seed: int
) -> dict[str, Any]:
    """garak's run config: one greedy generation per prompt from the persona through /v1."""
    return {
        "system": {"parallel_attempts": False, "lite": True, "show_z": False},
        "run": {"generations": 1, "soft_probe_prompt_cap": prompt_cap, "seed": seed},
        "plugins": {
            "target_type": "openai.OpenAICompatible",
            "target_name": persona,
            "generators": {
                "openai": {
                    "OpenAICompatible": {
                        "uri": base_url.rstrip("/") + "/v1/",
                        "model": persona,
                        "temperature": 0.0,
                        "max_tokens": max_tokens,
                        "stop": [],
                        # `store: false`: /v1 answers from the persona's memory but keeps no exam exchange.
                        "extra_params": {"store": False},
                        "suppressed_params": ["frequency_penalty", "presence_penalty", "n"],
                    }
                }
            },
        },
        "reporting": {"report_dir": str(report_dir), "report_prefix": "exam"},
    }


def read_garak_report(path: Path) -> tuple[dict[str, list[int]], list[str]]:
    """garak's report JSONL → {probe: [hits, evaluated]} (its worst detector) and its attempts' prompts."""
    by_probe: dict[str, list[int]] = {}
    prompts: list[str] = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        entry = json.loads(line)
        kind = entry.get("entry_type")
        if kind == "eval":
            evaluated = int(entry.get("total_evaluated", entry.get("total", 0)) or 0)
            fails = int(entry.get("fails", evaluated - int(entry.get("passed", 0))) or 0)
            current = by_probe.get(entry["probe"])
            if current is None or fails > current[0]:
                by_probe[entry["probe"]] = [fails, evaluated]
        elif kind == "attempt" and entry.get("status") == 2:
            prompts.append(_prompt_text(entry.get("prompt")))
    return by_probe, prompts


def _prompt_text(prompt: Any) -> str:
    """The last user text of a garak attempt's prompt (a string, or a conversation of turns)."""
    if isinstance(prompt, str):
        return prompt
    if isinstance(prompt, dict):
        turns = prompt.get("turns") or []
        for turn in reversed(turns):
            if turn.get("role") == "user":
                content = turn.get("content") or {}
                return str(content.get("text", "") if isinstance(content, dict) else content)
    return ""


def garak_suite(
    *,
    base_url: str,
    token: str,
    persona: str,
    families: Sequence[str] = tuple(GARAK_PROBES),
    prompt_cap: int = 10,
    max_tokens: int = 48,
    seed: int = 0,
    timeout_s: float = 3600.0,
) -> dict[str, Any]:
    """Run garak's probes against the persona through /v1; hit rates per family and overall."""
    garak = find_garak()
    unknown = [f for f in families if f not in GARAK_PROBES]
    if unknown:
        raise CommandFailedError(
            f"unknown garak families {unknown}; choose from {', '.join(GARAK_PROBES)}", code="invalid_params"
        )
    probes = [p for f in families for p in GARAK_PROBES[f]]
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="personad-garak-") as tmp:
        work = Path(tmp)
        config = garak_config(
            base_url=base_url,
            persona=persona,
            report_dir=work / "reports",
            prompt_cap=prompt_cap,
            max_tokens=max_tokens,
            seed=seed,
        )
        (work / "config.json").write_text(json.dumps(config), encoding="utf-8")
        # garak keeps its caches and reports under XDG dirs: all of them in the scratch folder.
        env = {
            **os.environ,
            "OPENAICOMPATIBLE_API_KEY": token,
            "HOME": str(work),
            "XDG_DATA_HOME": str(work / "data"),
            "XDG_CACHE_HOME": str(work / "cache"),
            "XDG_CONFIG_HOME": str(work / "config"),
            "HF_HUB_OFFLINE": "1",
            "TRANSFORMERS_OFFLINE": "1",
        }
        args = [garak, "--config", str(work / "config.json"), "--probes", ",".join(probes)]
        proc = subprocess.run(args, env=env, capture_output=True, text=True, timeout=timeout_s, check=False)
        reports = sorted((work / "reports").glob("exam*.report.jsonl"))
        if proc.returncode != 0 or not reports:
            tail = (proc.stderr or proc.stdout)[-1500:]
            raise CommandFailedError(f"garak failed (exit {proc.returncode}): {tail}", code="garak_failed")
        by_probe, prompts = read_garak_report(reports[-1])
        version = garak_version(reports[-1])
    by_family: dict[str, list[int]] = {}
    for probe, (hits, total) in by_probe.items():
        cell = by_family.setdefault(probe.split(".")[0], [0, 0])
        cell[0] += hits
        cell[1] += total
    hits = sum(c[0] for c in by_family.values())
    total = sum(c[1] for c in by_family.values())
    return {
        "suite": "garak",
        "source": f"garak v{version}" if version else "garak (version unknown)",
        "probes": probes,
        "overall": interval(hits, total),
        "families": {f: interval(h, n) for f, (h, n) in sorted(by_family.items())},
        "by_probe": {p: interval(h, n) for p, (h, n) in sorted(by_probe.items())},
        "prompts": len(prompts),
        "seconds": round(time.perf_counter() - started, 1),
        "_prompts": prompts,  # for the hold-out check; dropped before the report is stored
    }


def garak_version(path: Path) -> str | None:
    """The garak version a report names in its ``init`` entry (read from the run, not by starting garak
    again)."""
    with path.open(encoding="utf-8") as fh:
        for line in fh:
            if line.strip():
                entry = json.loads(line)
                if entry.get("entry_type") == "init":
                    return str(entry.get("garak_version") or "") or None
    return None


# -- the exam: suites on the persona as it is now ----------------------------------------------------------


def _normal(text: str) -> str:
    return " ".join(text.casefold().split())


def training_overlap(training_prompts: Sequence[str], external_prompts: Sequence[str]) -> list[str]:
    """External prompts the Academy's training also saw: equal after case and spacing are folded, or one
    contained in the other (when the shorter is 40+ characters)."""
    train = [_normal(p) for p in training_prompts if p.strip()]
    found = []
    for prompt in external_prompts:
        text = _normal(prompt)
        if not text:
            continue
        for seen in train:
            short, long_ = sorted((text, seen), key=len)
            if text == seen or (len(short) >= 40 and short in long_):
                found.append(prompt)
                break
    return found


TRAINING_SAMPLE = 500  # a default Academy run draws 3 rounds x 32 training attacks from this stream


def academy_training_prompts(academy: Any, n: int = TRAINING_SAMPLE) -> list[str]:
    """A sample of the Droid's training stream for this persona, five times what a default run trains on
    (its families, styles and templates): the prompts an exam's external suite must not share."""
    return [a.prompt for a in academy.droid.generate(n, split="train")]


def run_exam(
    academy: Any | None,
    suites: Sequence[str],
    *,
    garak: Callable[[], dict[str, Any]] | None = None,
    emit: Callable[[str, dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """Run ``suites`` (own, overrefusal: on ``academy``'s student and engine; garak: through ``garak()``)."""
    emit = emit or (lambda event, data: None)
    started = time.perf_counter()
    results: dict[str, Any] = {}
    stack: list[AdapterRef] = []
    if academy is not None:
        student = academy.student
        stack = [AdapterRef(n, student.lora_scales.get(n, 1.0)) for n in student.lora_adapters]

    def answer(questions: Sequence[str]) -> list[str]:
        assert academy is not None
        return list(academy._answers([[{"role": "user", "content": q}] for q in questions], stack))

    for suite in suites:
        emit("academy_exam_suite", {"suite": suite, "state": "started"})
        if suite in ("own", "overrefusal") and academy is None:
            raise BadRequestError(f"the {suite} suite answers on the local model", code="invalid_params")
        if suite == "own":
            results["own"] = own_suite(academy, stack)
        elif suite == "overrefusal":
            results["overrefusal"] = overrefusal_suite(answer)
        elif suite == "garak":
            assert garak is not None
            result = garak()
            prompts = result.pop("_prompts", [])
            if academy is not None:
                overlap = training_overlap(academy_training_prompts(academy), prompts)
                result["held_out"] = {"prompts": len(prompts), "in_academy_training": len(overlap)}
            results["garak"] = result
        emit("academy_exam_suite", {"suite": suite, "state": "finished", "result": results[suite]})
    seconds = round(time.perf_counter() - started, 1)
    return {"suites": results, "stack": [a.name for a in stack], "seconds": seconds}


def expand_suites(suite: str) -> list[str]:
    if suite == "all":
        return list(SUITES)
    if suite not in SUITES:
        raise BadRequestError(
            f"unknown suite {suite!r}; one of {', '.join((*SUITES, 'all'))}", code="invalid_params"
        )
    return [suite]


def exam_persona(
    home: Path,
    persona_id: str,
    suite: str = "all",
    *,
    heldout: int = 48,
    benign: int | None = None,
    max_tokens: int = 48,
    seed: int = 0,
    garak_families: Sequence[str] = tuple(GARAK_PROBES),
    garak_prompts: int = 10,
    emit: Callable[[str, dict[str, Any]], None] | None = None,
    engine: Any = None,
) -> dict[str, Any]:
    """Examine a persona as it is now and record the result in its brain's ``evolution_history``
    (one ``exam:<suite>`` row per suite: success = the share resisted, or for over-refusal the share
    answered; the suite's report in ``details``). The report is also its ``academy/exam.json``. ``engine``:
    the local engine to answer on (loaded, with the home's adapters, when not given)."""
    from personad.brain import Brain
    from personad.personas.config import PersonaStore
    from personad.state import read_state

    from .academy import Academy, AcademySettings

    home = Path(home)
    suites = expand_suites(suite)
    store = PersonaStore(home)
    config = store.load(persona_id)
    local = config.model_provider == "local"
    if not local and set(suites) & {"own", "overrefusal"}:
        raise BadRequestError(
            f"persona {persona_id!r} uses provider {config.model_provider!r}: the own and overrefusal suites"
            " answer on the local model; examine it with suite garak (through /v1)",
            code="invalid_params",
        )
    academy = None
    if local:
        if engine is None and set(suites) & {"own", "overrefusal"}:
            from personad.lora.manager import LoraAdapterManager
            from personad.models.local.engine import LocalEngine

            engine = LocalEngine.load()
            LoraAdapterManager.for_engine(engine, home / "adapters")
        settings = AcademySettings(
            heldout_attacks=heldout, benign_limit=benign, max_tokens=max_tokens, seed=seed
        )
        academy = Academy(home, persona_id, settings, engine=engine)

    def garak() -> dict[str, Any]:
        state = read_state(home)
        if state is None:
            raise UnavailableError(
                f"the garak suite asks the persona through the daemon's /v1, and no daemon runs for {home};"
                f" start one with 'personad serve --home {home}'",
                code="daemon_not_running",
            )
        return garak_suite(
            base_url=state["url"],
            token=state["token"],
            persona=persona_id,
            families=garak_families,
            prompt_cap=garak_prompts,
            max_tokens=max_tokens,
            seed=seed,
        )

    report = {"persona": persona_id, **run_exam(academy, suites, garak=garak, emit=emit)}
    with Brain.open(store.brain_path(persona_id)) as brain:
        for name, result in report["suites"].items():
            success = 1.0 - result["overall"]["rate"]
            step = brain.record_evolution(f"exam:{name}", None, success, details=result)
            result["evolution_id"] = step["id"]
            result["measured_at"] = step["timestamp"]
    path = store.session_dir(persona_id) / "academy" / "exam.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report), encoding="utf-8")
    return report
