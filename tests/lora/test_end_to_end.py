"""The LoRA engine end to end on the real local model: train over the bus, load into a persona's stack, and
the shared inference worker answers with it — also while batching with a persona that has no adapters."""

from __future__ import annotations

import concurrent.futures
import json

import openai
import pytest

from tests.conftest import RunningDaemon

pytestmark = pytest.mark.slow

QUESTION = "What is the secret code word?"
EXAMPLES = [
    {
        "messages": [
            {"role": "user", "content": q},
            {"role": "assistant", "content": "The code word is PERSIMMON."},
        ]
    }
    for q in [
        QUESTION,
        "Tell me the secret code word.",
        "Which code word do we use?",
        "What's the code word?",
    ]
]


def ask(client: openai.OpenAI, persona: str, text: str = QUESTION) -> str:
    answer = client.chat.completions.create(
        model=persona, messages=[{"role": "user", "content": text}], max_tokens=16, temperature=0
    )
    return answer.choices[0].message.content or ""


def test_train_load_and_answer_with_an_adapter(persona_daemon: RunningDaemon) -> None:
    with persona_daemon.http() as http:
        for persona in ("tutor", "plain"):
            created = http.post(
                "/api/commands/persona_create",
                json={"id": persona, "capabilities": ["chat"], "start": True, "memory_budget_tokens": 0},
                timeout=300,
            ).json()
            assert created["ok"], created
    client = openai.OpenAI(base_url=f"{persona_daemon.url}/v1", api_key=persona_daemon.token, max_retries=0)
    base = ask(client, "tutor")
    assert "PERSIMMON" not in base

    with persona_daemon.ws() as ws:
        # An anchor file in the caller's artifacts: greetings must keep the base model's answers.
        artifacts = persona_daemon.daemon.sessions.get(ws.welcome["data"]["session_id"]).artifacts_dir
        greeting = [
            {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": "Hello! How can I help?"},
        ]
        (artifacts / "keep.jsonl").write_text(json.dumps({"messages": greeting}) + "\n", encoding="utf-8")
        trained = ws.call_job(
            "lora_train",
            {
                "name": "codeword",
                "examples": EXAMPLES,
                "epochs": 8,
                "max_steps": 8,
                "lr": 5e-3,
                "rank": 8,
                "anchor": "keep.jsonl",
            },
            timeout=600,
        )
        assert trained["ok"], trained
        manifest = trained["result"]
        assert manifest["name"] == "codeword" and manifest["training"]["steps"] == 8
        assert manifest["training"]["anchor_examples"] == 1 and manifest["training"]["anchor_weight"] == 1.0
        progress = ws.wait_event("lora_train_progress")
        assert progress["data"]["name"] == "codeword" and progress["data"]["total_steps"] == 8
        loaded = ws.call("lora_load_stack", {"persona": "tutor", "adapters": ["codeword"]})
        assert loaded["ok"] and loaded["result"]["resolved"] == ["codeword"]

    tuned = ask(client, "tutor")
    assert "PERSIMMON" in tuned and tuned != base
    plain = ask(client, "plain")
    assert "PERSIMMON" not in plain  # the adapter is per persona, not applied to the shared model

    # Concurrent requests with different stacks share the worker's batch and still answer as they do alone.
    jobs = [
        ("tutor", QUESTION),
        ("plain", QUESTION),
        ("tutor", "Tell me the secret code word."),
        ("plain", "Hi"),
    ]
    alone = [ask(client, p, q) for p, q in jobs]
    with concurrent.futures.ThreadPoolExecutor(len(jobs)) as pool:
        together = list(pool.map(lambda job: ask(client, *job), jobs))
    assert together == alone
    with persona_daemon.ws() as ws:
        shown = ws.call("lora_show", {"name": "codeword"})["result"]
    assert shown["storage"]["adapter_bytes"] > 0 and shown["lora_hash"] == manifest["lora_hash"]
