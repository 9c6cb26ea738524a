"""Each persona's persistent brain: memories with hybrid recall, skills, goals, emotions, evolution."""

from .embeddings import Embedder, HashEmbedder, MiniLMEmbedder, default_embedder
from .schema import SCHEMA_VERSION
from .store import Brain

__all__ = ["SCHEMA_VERSION", "Brain", "Embedder", "HashEmbedder", "MiniLMEmbedder", "default_embedder"]
