"""tokenlean-cache: a semantic LLM cache that never serves a wrong answer.

* :class:`SemanticCache`: the engine (exact match, then question similarity within a hard
  pre-filter partition, then the false-hit :class:`Guard`), with sync and async methods.
* Stores: :class:`EmbeddedStore` (SQLite + in-memory numpy index, no server, the default) and
  :class:`RedisStore` (Redis with the search module through redisvl).
* Adapters: ``tokenlean_cache.langchain`` (``TokenleanCache``, ``CachedChatModel``) and
  ``tokenlean_cache.llama_index`` (``CachedLLM``), imported only when used.

Distances are cosine distances ``1 - cos`` in ``[0, 2]`` everywhere; ``max_distance=0`` means
exact matches only.
"""

from __future__ import annotations

from .cross import CrossEncoderVerifier
from .embeddings import Embedder, MiniLMEmbedder, as_embedder
from .engine import (
    CacheConfig,
    CacheHit,
    CacheUnavailableWarning,
    KeyPolicy,
    PreparedQuery,
    SemanticCache,
    no_cache,
)
from .guard import Guard, GuardDecision, LearnedVerifier, lexical_conflict
from .redis_store import RedisStore
from .store import CacheStore, EmbeddedStore, Entry, StoreUnavailableError

__version__ = "0.1.0"

__all__ = [
    "CacheConfig",
    "CacheHit",
    "CacheStore",
    "CacheUnavailableWarning",
    "CrossEncoderVerifier",
    "EmbeddedStore",
    "Embedder",
    "Entry",
    "Guard",
    "GuardDecision",
    "KeyPolicy",
    "LearnedVerifier",
    "MiniLMEmbedder",
    "PreparedQuery",
    "RedisStore",
    "SemanticCache",
    "StoreUnavailableError",
    "__version__",
    "as_embedder",
    "lexical_conflict",
    "no_cache",
]
