"""A persona's brain: remember a learning experience and a collaboration, then query it with SQL.

python examples/persona_memory.py
"""

from __future__ import annotations

import asyncio
from datetime import datetime

from personad.personas.persona import PersonaDaemon


async def main() -> None:
    persona = PersonaDaemon(
        {
            "id": "academy-physics-001",
            "name": "Physics Academy Graduate",
            "databasePath": "/personas/academy-physics-001/brain.sqlite",  # inside the daemon's home
        }
    )
    await persona.remember(
        {
            "type": "learning_experience",
            "content": "Successfully solved quantum mechanics problem",
            "context": {"domain": "physics", "difficulty": "advanced"},
            "outcome": "mastery_achieved",
            "timestamp": datetime.now(),
        }
    )
    await persona.remember(
        {
            "type": "collaboration",
            "with_persona": "academy-chemistry-002",
            "outcome": "successful_knowledge_transfer",
            "learned": {
                "new_concept": "quantum_chemistry_bridge",
                "application": "molecular_orbital_visualization",
            },
        }
    )
    for row in persona.db.query("SELECT type, content FROM memories ORDER BY timestamp"):
        print(f"{row['type']}: {row['content']}")
    skills = persona.db.query(
        "SELECT skill_id, effectiveness, usage_count FROM skills WHERE effectiveness > 0.8"
        " ORDER BY usage_count DESC"
    )
    print(f"{len(skills)} skills learned as adapters so far")
    await persona.stop()


if __name__ == "__main__":
    asyncio.run(main())
