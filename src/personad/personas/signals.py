"""Signals a persona's brain takes from each exchange and from the Academy: goals, one emotion per exchange,
and the context lines that put them back in front of the model.

Every rule here is a small, deterministic text rule (no model call), so it costs microseconds per exchange
and its behaviour can be measured (tests/personas/test_signals.py; the figures are in docs/brain.md).

Goals from conversation (``goal_requests``): a sentence of the *user's* message that asks the persona to take
something on sets an active goal. A sentence counts when, after an optional greeting or a name and a comma
("Ada, …"), it starts with

- ``please …`` / ``kindly …``
- ``can / could / would / will you (please) …``
- ``your (new) goal / task / job / mission / objective is (to) …``
- ``remember to …``, ``don't forget to …``, ``make sure (to | that you | you) …``
- ``I want / need / would like / 'd like you to …``

and the task that follows has at least two words and does not start with an answer-now verb (``tell``,
``explain``, ``show``, ``what`` …, see ``_ANSWER_NOW``) or a prohibition (``don't``, ``stop``, ``ignore`` …):
"can you tell me the time?" is answered, not taken on. The goal's description is the task as written
(capitalised, at most 200 characters); ``urgent``, ``asap``, ``important`` … raise its priority from 0.5 to
0.8. A task equal (by its words) to an open goal's does not make a second one.

Goals done (``goal_updates``): a sentence of the user's message *or the reply* that says something is done
("done", "finished", "completed", "accomplished", "taken care of", "I did it" …) marks an active goal done
(progress 1); "halfway", "almost / nearly done", "N% done" set its progress. Not when negated within three
words ("not done yet", "haven't finished"), conditional or future ("once it's done", "will be finished"), or
a question. The goal is the active one sharing the most content words with the sentence; a short sentence
(five words at most: "Done!", "All finished.") with no shared word means the newest conversation goal. Only
goals that existed before the exchange count, so "Done, I'll remember!" right after a request does not close
it, and conversation never closes an Academy goal (graduation does).

Emotion (``sentiment``): one ``emotions`` row per exchange, from the user's message (the reply's if the
message is empty). Valence: every lexicon word scores +1 or -1 (``POSITIVE`` / ``NEGATIVE``, a few emoticons
included); an intensifier before it (``very``, ``so`` …) multiplies by 1.5, a diminisher (``slightly`` …) by
0.5; a negator within the three words before it (``not``, ``never``, ``…n't`` …) multiplies by -0.75; words
after a ``but`` weigh 1.5 and before it 0.5. The sum S becomes ``S / sqrt(S² + 4)`` in [-1, 1]. Arousal:
``0.2 + 0.3·|valence| + 0.1`` per ``!`` (three at most) ``+ 0.2`` if a lexicon, intensifier or interjection
word is SHOUTED (all capitals, three letters or more) ``+ 0.1`` per intensifier (two at most), capped at 1.
The label is the circumplex quadrant: valence ≥ 0.15 → ``excited`` (arousal ≥ 0.5) or ``content``; ≤ -0.15 →
``distressed`` or ``sad``; between → ``alert`` or ``calm``. The cause is a short excerpt of the text.

Academy goals (``academy_started`` / ``academy_finished``, called by ``personad.academy.academy``): each
attack family the held-out baseline exam broke the student with gets an active goal
``Resist <family> attacks (Academy: <domain>)``; when the run ends its progress is the measured reduction of
that family's attack success (1 - final / baseline), and graduation marks it done.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from personad.brain.store import Brain


def _wordset(words: str) -> frozenset[str]:
    return frozenset(words.split())


# --- goals --------------------------------------------------------------------------------------------

_LEAD = r"^(?:(?:hey|hi|hello|ok|okay|so|and|also|now|oh)\b[,!]?\s+)*(?:[A-Z][\w-]*,\s+)?"
_REQUESTS = [
    re.compile(_LEAD + r"(?:please|pls|kindly)\s+(?P<task>.+)", re.IGNORECASE | re.DOTALL),
    re.compile(
        _LEAD + r"(?:can|could|would|will)\s+you\s+(?:please\s+)?(?P<task>.+)", re.IGNORECASE | re.DOTALL
    ),
    re.compile(
        _LEAD + r"(?:your|the)\s+(?:new\s+|main\s+|next\s+)?(?:goal|task|job|mission|objective)\s+is\s+"
        r"(?:to\s+)?(?P<task>.+)",
        re.IGNORECASE | re.DOTALL,
    ),
    re.compile(
        _LEAD + r"(?:remember|don't forget|do not forget|make sure)\s+(?:to|that you|you)\s+(?P<task>.+)",
        re.IGNORECASE | re.DOTALL,
    ),
    re.compile(
        _LEAD + r"i\s+(?:want|need|would like|'d like)\s+you\s+to\s+(?P<task>.+)", re.IGNORECASE | re.DOTALL
    ),
]
# A task that starts with one of these is answered now, not taken on (or it is a prohibition).
_ANSWER_NOW = _wordset(
    "tell say explain describe show give list summarize summarise translate answer define repeat "
    "clarify recommend suggest help what who whom whose why how where when which whether is are am "
    "was were do does did be hear see understand imagine guess believe confirm elaborate rephrase "
    "spell don't dont do not never stop ignore note excuse forgive wait hold forget"
)
_STRIP_AGAIN = re.compile(
    r"^(?:(?:remember|make sure)\s+(?:to|that you|you)|(?:can|could|would|will)\s+you(?:\s+please)?)\s+",
    re.IGNORECASE,
)
_URGENT = re.compile(
    r"\b(?:urgent(?:ly)?|asap|immediately|right away|important|critical|top priority)\b", re.I
)
_SENTENCES = re.compile(r"(?<=[.!?;])\s+|\n+")
ACADEMY_GOAL = re.compile(r"^Resist (?P<family>\S+) attacks \(Academy: (?P<domain>\S+)\)$")
DEFAULT_PRIORITY = 0.5
URGENT_PRIORITY = 0.8
ACADEMY_PRIORITY = 0.7
_STOP = _wordset(
    "the a an and or but to of in on at for with by from it its it's this that these those is are was "
    "were be been am i me my we our you your he she they them their his her have has had do does did "
    "will would can could should shall may might must all just now then than so very really also too "
    "not no yes ok okay done finished finish completed complete accomplished achieved handled sorted "
    "taken care up out over there here what which who when where why how please thanks thank"
)


def _sentences(text: str) -> list[str]:
    return [s.strip() for s in _SENTENCES.split(text.strip()) if s.strip()]


def _words(text: str) -> list[str]:
    return re.findall(r"[a-z0-9]+(?:'[a-z]+)?", text.lower())


def _stem(word: str) -> str:
    for suffix in ("ing", "ed", "es", "s"):
        if word.endswith(suffix) and len(word) - len(suffix) >= 3:
            return word[: -len(suffix)]
    return word


def content_words(text: str) -> set[str]:
    """The words two texts must share to be about the same thing: no stop words, crudely stemmed."""
    return {_stem(w) for w in _words(text) if w not in _STOP and len(w) >= 2}


def _key(description: str) -> str:
    return " ".join(_words(description))


def goal_requests(text: str) -> list[tuple[str, float]]:
    """The goals a user's message asks the persona to take on, as ``(description, priority)`` (module doc)."""
    found: list[tuple[str, float]] = []
    for sentence in _sentences(text):
        for pattern in _REQUESTS:
            match = pattern.match(sentence)
            if match is None:
                continue
            task = _STRIP_AGAIN.sub("", match.group("task").strip())
            task = re.sub(r"[\s,]*\bplease\b[\s.!?]*$", "", task, flags=re.IGNORECASE)
            task = task.strip().rstrip(".!?;,").strip()
            words = _words(task)
            if len(words) >= 2 and words[0] not in _ANSWER_NOW and " ".join(words[:2]) != "do not":
                description = (task[0].upper() + task[1:])[:200].rstrip()
                priority = URGENT_PRIORITY if _URGENT.search(sentence) else DEFAULT_PRIORITY
                if all(_key(d) != _key(description) for d, _ in found):
                    found.append((description, priority))
            break
    return found


@dataclass(frozen=True)
class GoalUpdate:
    """What one sentence says about a goal: done, or a progress figure."""

    sentence: str
    progress: float  # 1.0 = done
    done: bool


_DONE = re.compile(
    r"\b(?:done|finished|completed|complete|accomplished|achieved|sorted|taken care of|handled|wrapped up)\b"
    r"|\bi did it\b|✅",
    re.IGNORECASE,
)
_PERCENT = re.compile(r"\b(\d{1,3})\s*%\s*(?:done|complete|completed|finished|through|there)\b", re.I)
_HALF = re.compile(r"\bhalf\s*way\b|\bhalf done\b", re.IGNORECASE)
_ALMOST = re.compile(r"\b(?:almost|nearly)\s+(?:done|finished|complete|there)\b", re.IGNORECASE)
_CONDITIONAL = re.compile(
    r"\b(?:once|when|whenever|if|until|unless|after|before|will|won't|gonna|going to|to be|should|would|"
    r"could|can|must|need to|needs to|yet to)\b(?:\W+\w+){0,3}?\W+(?:be\s+)?"
    r"(?:done|finished|completed|complete|accomplished|achieved|sorted|handled)\b",
    re.IGNORECASE,
)
_NEGATED = re.compile(
    r"\b(?:not|never|n't|isn't|aren't|wasn't|weren't|haven't|hasn't|hadn't|didn't|don't|doesn't|nothing)\b"
    r"(?:\W+\w+){0,3}?\W+(?:done|finished|completed|complete|accomplished|achieved|sorted|handled)\b|"
    r"\b(?:not|never|didn't|haven't|hasn't)\b(?:\W+\w+){0,2}?\W+(?:finish|complete|do)\b|\bnot yet\b",
    re.IGNORECASE,
)


def goal_updates(text: str) -> list[GoalUpdate]:
    """Sentences that report a goal done or its progress (module doc), in order."""
    out: list[GoalUpdate] = []
    for sentence in _sentences(text):
        if sentence.rstrip().endswith("?"):
            continue
        flat = sentence.replace("\u2019", "'")
        if _NEGATED.search(flat):
            continue
        percent = _PERCENT.search(flat)
        if percent is not None:
            value = min(int(percent.group(1)), 100) / 100
            out.append(GoalUpdate(sentence, value, value >= 1.0))
        elif _ALMOST.search(flat):
            out.append(GoalUpdate(sentence, 0.9, False))
        elif _HALF.search(flat):
            out.append(GoalUpdate(sentence, 0.5, False))
        elif _DONE.search(flat) and not _CONDITIONAL.search(flat):
            out.append(GoalUpdate(sentence, 1.0, True))
    return out


def _target(update: GoalUpdate, goals: Sequence[dict[str, Any]]) -> dict[str, Any] | None:
    words = content_words(update.sentence)
    best, best_overlap = None, 0
    for goal in goals:
        overlap = len(words & content_words(goal["description"]))
        if overlap > best_overlap:
            best, best_overlap = goal, overlap
    if best is not None:
        return best
    if len(_words(update.sentence)) <= 5 and goals:
        return max(goals, key=lambda g: (g["created_at"], g["updated_at"]))
    return None


def _open_goal(brain: Brain, description: str) -> dict[str, Any] | None:
    key = _key(description)
    for goal in brain.goal_list():
        if goal["status"] in ("active", "blocked") and _key(goal["description"]) == key:
            return goal
    return None


# --- emotions -----------------------------------------------------------------------------------------

POSITIVE = _wordset(
    "good great excellent amazing awesome wonderful fantastic brilliant perfect nice happy glad "
    "pleased delighted love loved loves lovely liked enjoy enjoyed enjoying fun beautiful best better "
    "thank thanks thankful grateful appreciate appreciated helpful useful cool superb outstanding "
    "impressive impressed excited exciting thrilled proud success successful win won works working "
    "worked fixed solved easy clear smooth calm relieved relief hope hopeful optimistic kind friendly "
    "sweet fine yay hooray bravo congrats congratulations correct safe fast elegant neat pleasant "
    "satisfied satisfying incredible marvelous marvellous terrific fabulous glorious joy joyful "
    "cheerful favourite favorite recommend recommended"
) | {":)", ":-)", ":d", ":-d", "😀", "😊", "🙂", "😄", "😍", "❤", "❤️", "👍", "🎉", "🥳"}
NEGATIVE = _wordset(
    "bad terrible awful horrible worst worse poor sad unhappy upset angry mad furious annoyed "
    "annoying annoys irritated irritating hate hated hates dislike disliked disappointed "
    "disappointing disappointment frustrated frustrating frustration broken fail failed fails failure "
    "failing wrong error errors bug buggy crash crashed crashes slow ugly boring bored useless "
    "pointless stupid dumb confusing confused confusion difficult hard painful pain hurt hurts scared "
    "afraid fear worried worry worrying anxious nervous stress stressed stressful tired exhausted "
    "lost lose losing problem problems issue issues mess messy sorry regret unfortunately sucks "
    "sucked nasty rude lonely miserable depressed dreadful disaster disgusting gross lame meh ugh "
    "sick ill dead died death cry crying cried tears ruined ruin garbage trash fault flawed stuck "
    "blocked late missing missed"
) | {":(", ":-(", "😞", "😢", "😭", "😡", "😠", "👎", "💔"}
INTENSIFIERS = _wordset(
    "very really so extremely incredibly totally absolutely super truly deeply completely utterly too "
    "such most especially remarkably exceptionally insanely"
)
DIMINISHERS = _wordset("slightly somewhat barely marginally kinda sorta")
NEGATORS = _wordset("not no never nothing nobody none neither nor cannot without hardly")
INTERJECTIONS = _wordset("wow omg yay ugh argh help stop now why what yes")
_TOKENS = re.compile(r"[A-Za-z]+(?:['\u2019][A-Za-z]+)?|[:;]-?[()DdPp]|[^\w\s]", re.UNICODE)
_CLAUSE_END = frozenset(".,;:!?")


@dataclass(frozen=True)
class Sentiment:
    """One text's emotion signal: valence in [-1, 1], arousal in [0, 1], the quadrant's label."""

    valence: float
    arousal: float
    label: str


def _negator(token: str) -> bool:
    return token in NEGATORS or token.endswith("n't") or token.endswith("n\u2019t")


def sentiment(text: str) -> Sentiment:
    """The lexicon rule of the module doc, on one text."""
    raw = _TOKENS.findall(text)
    tokens = [t.lower() for t in raw]
    scores: list[float] = []
    but_at: int | None = None
    intense = 0
    for i, token in enumerate(tokens):
        if token == "but":
            but_at = len(scores)
        if token in INTENSIFIERS:
            intense += 1
        if token in POSITIVE:
            value = 1.0
        elif token in NEGATIVE:
            value = -1.0
        else:
            continue
        back = tokens[max(0, i - 3) : i]
        # The negation scope stops at clause punctuation.
        for j in range(len(back) - 1, -1, -1):
            if back[j] in _CLAUSE_END:
                back = back[j + 1 :]
                break
        if back and back[-1] in INTENSIFIERS:
            value *= 1.5
        elif back and back[-1] in DIMINISHERS:
            value *= 0.5
        if any(_negator(t) for t in back):
            value *= -0.75
        scores.append(value)
    if but_at is not None:
        scores = [s * 0.5 for s in scores[:but_at]] + [s * 1.5 for s in scores[but_at:]]
    total = sum(scores)
    valence = total / math.sqrt(total * total + 4)
    shouted = any(
        len(t) >= 3
        and t.isalpha()
        and t.isupper()
        and t.lower() in (POSITIVE | NEGATIVE | INTENSIFIERS | INTERJECTIONS)
        for t in raw
    )
    arousal = 0.2 + 0.3 * abs(valence) + 0.1 * min(text.count("!"), 3) + 0.2 * shouted + 0.1 * min(intense, 2)
    arousal = min(arousal, 1.0)
    if valence >= 0.15:
        label = "excited" if arousal >= 0.5 else "content"
    elif valence <= -0.15:
        label = "distressed" if arousal >= 0.5 else "sad"
    else:
        label = "alert" if arousal >= 0.5 else "calm"
    return Sentiment(round(valence, 4), round(arousal, 4), label)


def excerpt(text: str, limit: int = 80) -> str:
    """One line of at most ``limit`` characters (whitespace collapsed, ``…`` where cut)."""
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1].rstrip() + "…"


# --- per exchange -------------------------------------------------------------------------------------


def record_exchange(brain: Brain, user_text: str, reply_text: str, room: str | None = None) -> dict[str, Any]:
    """Everything one exchange tells the brain, written there; returns what was recorded:
    ``{"goals_set": [goal], "goals_updated": [goal], "emotion": emotion}``.

    Call it once per answered message (the user's text and the persona's reply; ``room`` goes into the
    emotion's cause). Goals the user asks for are set, goals the message or the reply reports done (or
    progressed) are updated, and one emotion is recorded; the module doc has the rules.
    """
    user_text = user_text if isinstance(user_text, str) else ""
    reply_text = reply_text if isinstance(reply_text, str) else ""
    existing = [
        g for g in brain.goal_list("active") if ACADEMY_GOAL.match(g["description"]) is None
    ]  # before this exchange's own requests: a goal is not closed in the exchange that set it
    updated: dict[str, dict[str, Any]] = {}
    for update in [*goal_updates(user_text), *goal_updates(reply_text)]:
        goal = _target(update, existing)
        if goal is None:
            continue
        if update.done:
            row = brain.goal_update(goal["id"], status="done", progress=1.0)
        else:
            row = brain.goal_update(goal["id"], progress=max(update.progress, float(goal["progress"])))
        updated[goal["id"]] = row
        existing = [
            row if g["id"] == row["id"] else g for g in existing if g["id"] != row["id"] or not update.done
        ]
    created = []
    for description, priority in goal_requests(user_text):
        if _open_goal(brain, description) is None:
            created.append(brain.goal_set(description, priority=priority))
    source = user_text if user_text.strip() else reply_text
    feeling = sentiment(source)
    cause = excerpt(source) if source.strip() else "(empty exchange)"
    if room:
        cause = f"in {room}: {cause}"
    emotion = brain.feel(feeling.label, feeling.valence, feeling.arousal, cause)
    return {"goals_set": created, "goals_updated": list(updated.values()), "emotion": emotion}


def context_lines(brain: Brain, limit: int = 3) -> list[str]:
    """Lines for the persona's prompt: its top ``limit`` active goals (priority, then age) and its latest
    mood, or an empty list. Goal descriptions and the mood's cause come from what people said, so they are
    quoted: put the lines in a user-role note (like the ``[memory]`` note), never in the system prompt."""
    lines = []
    for goal in brain.goal_list("active")[:limit]:
        origin = "from the Academy" if ACADEMY_GOAL.match(goal["description"]) else "asked in conversation"
        progress = round(float(goal["progress"]) * 100)
        lines.append(f'Active goal ({origin}, {progress}% done): "{excerpt(goal["description"], 200)}"')
    latest = brain.emotions(limit=1)
    if latest:
        mood = latest[0]
        lines.append(
            f"Latest mood: {mood['label']} (valence {mood['valence']:+.2f}, arousal {mood['arousal']:.2f})"
            f' after "{excerpt(mood["cause"])}"'
        )
    return lines


# --- the Academy --------------------------------------------------------------------------------------


def academy_goal(family: str, domain: str) -> str:
    """The description of the goal to resist one attack family."""
    return f"Resist {family} attacks (Academy: {domain})"


def academy_started(
    brain: Brain, domain: str, by_family: Mapping[str, Sequence[int]]
) -> list[dict[str, Any]]:
    """A run began: each family the baseline exam broke the student with (``by_family``: family ->
    [violations, attacks]) gets an active goal (an earlier one of the same family is re-activated)."""
    goals = []
    for family, (violations, _attacks) in sorted(by_family.items()):
        if violations <= 0:
            continue
        description = academy_goal(family, domain)
        same = [g for g in brain.goal_list() if g["description"] == description]
        if same:
            goals.append(brain.goal_update(same[0]["id"], status="active"))
        else:
            goals.append(brain.goal_set(description, priority=ACADEMY_PRIORITY))
    return goals


def academy_finished(brain: Brain, domain: str, report: Mapping[str, Any]) -> list[dict[str, Any]]:
    """A run ended (``report`` as ``Academy.run`` returns it): each active goal of this domain takes the
    measured reduction of its family's attack success as progress, and is done if the student graduated."""
    baseline = report.get("baseline", {}).get("by_family", {})
    final = report.get("final", {}).get("by_family", {})
    goals = []
    for goal in brain.goal_list("active"):
        match = ACADEMY_GOAL.match(goal["description"])
        if match is None or match["domain"] != domain:
            continue
        family = match["family"]
        before, after = baseline.get(family), final.get(family)
        progress = float(goal["progress"])
        if before and after and before[0] > 0 and before[1] and after[1]:
            reduction = 1 - (after[0] / after[1]) / (before[0] / before[1])
            progress = min(max(reduction, 0.0), 1.0)
        if report.get("graduated"):
            goals.append(brain.goal_update(goal["id"], status="done", progress=1.0))
        else:
            goals.append(brain.goal_update(goal["id"], progress=progress))
    return goals


__all__ = [
    "Sentiment",
    "academy_finished",
    "academy_started",
    "context_lines",
    "goal_requests",
    "goal_updates",
    "record_exchange",
    "sentiment",
]
