"""A persona in the seed's shape on the embedded local model: start it, ask it one thing, stop it.

python examples/persona_chat.py "What is prior art?"
"""

from __future__ import annotations

import asyncio
import sys

from personad.personas.persona import PersonaDaemon


async def main(question: str) -> None:
    persona = PersonaDaemon(
        {
            "id": "example-clerk",
            "name": "Patent Clerk",
            "modelProvider": "local",
            "systemPrompt": "You are a patent clerk. Answer in one sentence.",
            "capabilities": ["chat"],
            "maxTokens": 48,
        }
    )
    await persona.start()  # creates the persona on the daemon the first time
    try:
        reply = await persona.handle_message({"type": "chat_message", "data": {"message": question}})
        print(reply["reply"].strip())
        print(f"({reply['usage']['completion_tokens']} tokens)")
    finally:
        await persona.stop()


if __name__ == "__main__":
    asyncio.run(main(" ".join(sys.argv[1:]) or "What is prior art?"))
