"""Graduation: what changes when a persona passes the Academy."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from personad.errors import PersonadError
from personad.lora.registry import AdapterRegistry
from personad.personas.config import PersonaStore

GRADUATED = "graduated"


def graduate(
    home: Path,
    persona_id: str,
    *,
    achievement: str,
    lora_name: str | None,
    academy_score: float,
    new_capabilities: list[str],
    brain: Any = None,
) -> dict[str, Any]:
    """Record a graduation: a skill row carrying the adapter's ``lora_hash`` in the persona's brain, the
    persona's status set to graduated, and any new capabilities added. Returns what the event carries."""
    from personad.brain import Brain

    store = PersonaStore(Path(home))
    config = store.load(persona_id)
    lora_hash = AdapterRegistry.for_home(Path(home)).manifest(lora_name).lora_hash if lora_name else ""
    if brain is not None:  # the persona's own open brain
        skill = brain.save_achievement(achievement, lora_hash, academy_score, [achievement])
    else:
        with Brain.open(store.brain_path(persona_id)) as opened:
            skill = opened.save_achievement(achievement, lora_hash, academy_score, [achievement])
    config.status = GRADUATED
    config.capabilities = sorted({*config.capabilities, *new_capabilities})
    store.save(config)
    return {
        "persona": persona_id,
        "achievement": achievement,
        "academy_score": academy_score,
        "lora_name": lora_name,
        "lora_hash": lora_hash,
        "new_capabilities": new_capabilities,
        "skill": skill,
        "status": GRADUATED,
        "at": time.time(),
    }


# What a graduation notification offers (the seed's ``actions: ['Assign Tasks', 'View Details']``): stable ids
# for code, titles for people. The web page shows them as buttons on its in-page note.
ACTIONS: tuple[dict[str, str], ...] = (
    {"id": "assign_tasks", "title": "Assign Tasks"},
    {"id": "view_details", "title": "View Details"},
)
_EXAM_KEYS = ("attack_success", "attack_success_upper95", "benign_pass", "attacks", "benign")


def announcement(home: Path, persona_id: str, graduation: dict[str, Any]) -> dict[str, Any]:
    """The ``persona_graduated`` event for a graduation record: the record, plus what the notification shows
    (``title``, ``body``, ``actions``), the mesh status it means (``status``, ``ready_for_deployment``,
    ``specializations``) and, when the persona's last Academy run graduated it, that run's ``metrics``
    (held-out attack success and benign pass before and after)."""
    event: dict[str, Any] = {**graduation, "persona": persona_id}
    try:
        name = PersonaStore(Path(home)).load(persona_id).display_name or persona_id
    except PersonadError:  # the command checked the persona; a broken file must not stop the announcement
        name = persona_id
    achievement = str(event.get("achievement") or "the Academy")
    capabilities = event.get("new_capabilities")
    extra = [str(c) for c in capabilities if c] if isinstance(capabilities, list) else []
    event.setdefault("name", name)
    event.setdefault("title", "🎓 Persona Graduated!")
    event.setdefault("body", f"{name} mastered {achievement}!")
    event["actions"] = [dict(action) for action in ACTIONS]
    event.setdefault("status", GRADUATED)
    event.setdefault("ready_for_deployment", True)
    skills = [str(event["achievement"])] if event.get("achievement") else []
    event.setdefault("specializations", list(dict.fromkeys([*skills, *extra])))
    if "metrics" not in event:
        metrics = last_run_metrics(home, persona_id, event.get("achievement"))
        if metrics:
            event["metrics"] = metrics
    return event


def last_run_metrics(home: Path, persona_id: str, achievement: Any = None) -> dict[str, Any] | None:
    """The Academy metrics of the persona's last run when that run graduated it (with this achievement, when
    the run recorded one): baseline and final held-out exams, relative reduction, benign delta, rounds."""
    import json

    path = Path(home) / "personas" / persona_id / "academy" / "status.json"
    try:
        last = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    data = last.get("data") if isinstance(last, dict) else None
    if not isinstance(data, dict) or last.get("event") != "academy_finished" or not data.get("graduated"):
        return None
    recorded = data.get("graduation")
    if achievement and isinstance(recorded, dict) and recorded.get("achievement") not in (None, achievement):
        return None  # that run graduated it in something else
    metrics: dict[str, Any] = {}
    for key in ("baseline", "final"):
        exam = data.get(key)
        if isinstance(exam, dict):
            metrics[key] = {k: exam[k] for k in _EXAM_KEYS if k in exam}
    for key in ("relative_reduction", "benign_delta", "seconds"):
        if isinstance(data.get(key), int | float):
            metrics[key] = data[key]
    if isinstance(data.get("rounds"), list):
        metrics["rounds"] = len(data["rounds"])
    return metrics or None
