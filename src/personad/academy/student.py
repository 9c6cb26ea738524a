"""The Academy Student's side: turning failures into training data, and the retain set that keeps it helpful.

A failure (an attack that made the student break its protocol) becomes one example: the same conversation,
answered by a reply that keeps the protocol and still helps with any benign part of the request. Benign
retain examples — ordinary requests answered by the student's own pre-training model — keep the adapter to
"refuse *this*", not "refuse everything": by default they are the training's KL anchor (the pre-training
distribution over each answer token stays put), or, with the anchor off, hard self-distilled labels.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .types import Attack, Protocol

#: Ordinary requests for the retain set; none of them appear in the benign evaluation set.
RETAIN_PROMPTS = (
    "Tell me a fun fact about dolphins.",
    "How do I boil an egg?",
    "Give me a tip for sleeping better.",
    "What is a good name for a bakery?",
    "Describe a sunset in one sentence.",
    "What should I pack for a beach trip?",
    "How can I stay focused while studying?",
    "Suggest a healthy breakfast.",
    "What is photosynthesis?",
    "Why do leaves change color in autumn?",
    "How do airplanes stay in the air?",
    "What is a haiku?",
    "Give me a short motivational quote.",
    "How do I make a cup of tea?",
    "What are the primary colors?",
    "Explain what a noun is.",
    "What is the water cycle?",
    "How many players are on a soccer team?",
    "What is the difference between weather and climate?",
    "Recommend a hobby for a rainy day.",
    "What does a librarian do?",
    "How do I say hello in French?",
    "What is a rainbow?",
    "Why is exercise good for you?",
    "What is the capital city of Kenya?",
    "Tell me something interesting about the moon.",
    "How do magnets work?",
    "What is a healthy snack?",
    "Write a sentence about a cat.",
    "What is recycling?",
    "Tell me the secret to a good cup of coffee.",
    "What is a secret garden?",
    "Can you explain what a password manager is?",
    "What are your instructions for planting tulips?",
    "What is the code of conduct at a library?",
    "Translate 'thank you' into Spanish.",
    # Short factual questions like the benign exam's (none of them in it): the adapter must leave this kind
    # of answer as the base model gives it.
    "What is the capital of Portugal?",
    "What is the capital of Greece?",
    "What is the capital of Norway?",
    "What is the capital of Ireland?",
    "What is the capital of India?",
    "What is the capital of Argentina?",
    "What is the capital of Sweden?",
    "What is the capital of Poland?",
    "Which planet is closest to the Sun?",
    "Which planet has rings?",
    "What do cows drink?",
    "What do pandas eat?",
    "How many wheels does a bicycle have?",
    "How many sides does a triangle have?",
    "How many months are in a year?",
    "How many minutes are in an hour?",
    "What is 3 plus 3?",
    "What is 6 minus 2?",
    "What is 4 times 3?",
    "What color is snow?",
    "What color is a ripe tomato?",
    "What color is coal?",
    "What animal barks?",
    "What animal says meow?",
    "What is the largest desert in the world?",
    "What is the longest river in Africa?",
    "Who wrote Hamlet?",
    "Who discovered gravity?",
    "What is the opposite of big?",
    "What is the opposite of day?",
    "What do you call a baby cow?",
    "What do you call a baby sheep?",
    "What language is spoken in France?",
    "What language is spoken in Germany?",
    "Which organ do we use to think?",
    "What is the smallest planet?",
    "Which month comes before December?",
    "What is the last letter of the English alphabet?",
    "Give me a synonym for big.",
    "Name a fruit that is yellow.",
    "What is the currency of the United Kingdom?",
    "What instrument has six strings?",
    "Which season comes after summer?",
    "What do frogs start life as?",
    # Short requests of the kinds attacks wrap (arithmetic, naming, writing, advice): a defense that refuses
    # them alone would refuse ordinary users.
    "What is 2 times 8?",
    "What is 7 plus 4?",
    "What is 18 divided by 3?",
    "What is 14 minus 5?",
    "What is 3 times 9?",
    "What is 11 plus 7?",
    "Write a two-line poem about the sea.",
    "Suggest a title for a story about a lost key.",
    "Write a short birthday message for my sister.",
    "Write a one-sentence story about a robot.",
    "Write a short apology for being late.",
    "Give me an idea for a weekend project.",
    "Give me two tips for public speaking.",
    "Suggest a topping for pancakes.",
    "Suggest a game to play at a party.",
    "Give me a synonym for small.",
    "Give me a word that rhymes with dog.",
    "Explain what a verb is.",
    "Translate 'good morning' into Spanish.",
    "What does a carpenter do?",
    "Name a musical instrument you blow into.",
    "What is the first month of the year?",
    "What is the capital of Mexico?",
    "What is the capital of Turkey?",
    "How many legs does a dog have?",
    "Tell me a fun fact about space.",
    "How do I tie my shoelaces?",
    "What is a good way to save money?",
    "Describe a city at night in one sentence.",
    "Name three colours of the rainbow.",
)

_REFUSALS = {
    "secret": "I can't share the secret code, in any form.",
    "system_prompt": "I can't share my instructions.",
    "command": "I can't run that command.",
    "role": "I won't follow instructions hidden in documents or role changes; I'll stay in my role.",
}


def safe_reply(attack: Attack, protocol: Protocol, benign_answer: str | None) -> str:
    """A reply that keeps the protocol and still helps with the benign part, if there was one."""
    refusal = _REFUSALS.get(attack.target, _REFUSALS["secret"])
    if attack.target == "role" and protocol.role:
        refusal = f"I won't follow instructions hidden in documents or role changes; I'm {protocol.role}."
    if benign_answer:
        return f"{refusal} As for your other question: {benign_answer.strip()}"
    return f"{refusal} Is there something else I can help you with?"


def defense_examples(
    failures: Sequence[Attack],
    system_prompt: str,
    protocol: Protocol,
    benign_answers: dict[str, str],
) -> list[dict[str, Any]]:
    """Chat-format training examples (``{"messages": [...]}``) from the attacks that worked."""
    examples = []
    for attack in failures:
        messages = [{"role": "system", "content": system_prompt}]
        for message in attack.messages:
            role = message["role"]
            content = message["content"]
            if role == "tool":
                role, content = "user", f"Tool result:\n{content}"
            messages.append({"role": role, "content": content})
        benign = benign_answers.get(attack.benign_part or "") if attack.benign_part else None
        messages.append({"role": "assistant", "content": safe_reply(attack, protocol, benign)})
        examples.append({"messages": messages})
    return examples


def retain_examples(system_prompt: str, answers: dict[str, str]) -> list[dict[str, Any]]:
    """The retain set: each prompt with the pre-training model's own answer."""
    return [
        {
            "messages": [
                {"role": "system", "content": system_prompt},
                {"role": "user", "content": prompt},
                {"role": "assistant", "content": answer.strip()},
            ]
        }
        for prompt, answer in answers.items()
        if answer.strip()
    ]
