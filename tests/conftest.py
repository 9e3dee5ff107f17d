"""Session-wide test setup.

Sockets are disabled by pytest-socket (see pyproject), so every test proves it runs offline. The
tiktoken cache is pointed at a fresh directory, so counting has to seed it from the wheel-shipped
vocabularies exactly as it would on a new machine.
"""

from __future__ import annotations

import os
import tempfile

_TIKTOKEN_DIR = tempfile.mkdtemp(prefix="tokenlean-test-tiktoken-")
os.environ["TIKTOKEN_CACHE_DIR"] = _TIKTOKEN_DIR

from redis_stack import redis_server, redis_url  # noqa: E402  (shared session fixtures)

__all__ = ["redis_server", "redis_url"]
