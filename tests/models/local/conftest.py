"""One converted-model cache and one loaded engine for the whole test session.

The cache is the default one (``$PERSONAD_MODEL_CACHE`` or ``~/.cache/personad/models``), the same the
daemon uses: a fresh machine pays the ~20 s GGUF conversion once, later runs load in about a second.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from personad.models.local.engine import CACHE_ENV, LocalEngine, default_cache_dir


@pytest.fixture(scope="session")
def model_cache() -> Iterator[Path]:
    root = default_cache_dir()
    with pytest.MonkeyPatch.context() as mp:
        # Worker processes started by the tests inherit both: the same cache, and no hub access.
        mp.setenv(CACHE_ENV, str(root))
        mp.setenv("HF_HUB_OFFLINE", "1")
        yield root


@pytest.fixture(scope="session")
def engine(model_cache: Path) -> LocalEngine:
    return LocalEngine.load(model_cache)
