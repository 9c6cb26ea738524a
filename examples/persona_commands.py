"""A persona runs the same commands a human does: script the page, read it back, take a screenshot.

python examples/persona_commands.py
"""

from __future__ import annotations

import asyncio

from personad.personas.persona import PersonaDaemon

PAGE = "document.body.innerHTML = '<h1>Patent</h1><span class=\"patent-number\">US10,123,456</span>'"


async def main() -> None:
    persona = PersonaDaemon(
        {
            "id": "example-analyst",
            "name": "Patent Analyst",
            "capabilities": ["chat", "browser_js", "screenshot"],
        }
    )
    await persona.start()
    try:
        run = persona.handle_message
        await run({"type": "execute_command", "data": {"command": "browser_js", "params": {"script": PAGE}}})
        number = await run(
            {
                "type": "execute_command",
                "data": {
                    "command": "browser_js",
                    "params": {"script": 'document.querySelector(".patent-number").textContent'},
                },
            }
        )
        shot = await run(
            {
                "type": "execute_command",
                "data": {"command": "screenshot", "params": {"filename": "patent-analysis.png"}},
            }
        )
        print("patent number:", number["value"])
        print("screenshot:", shot["path"])
    finally:
        await persona.stop()


if __name__ == "__main__":
    asyncio.run(main())
