"""Names the fuzz daemon is set up with (kept free of hypothesis imports: conftest loads this)."""

PERSONA = "fuzzp"
ROOM = "fuzzroom"
