"""The gate: a light learned scorer deciding, before any call, how strong a model a request needs.

Features need no network: the request's embedding (any local embedder), its token count and task
signals (:mod:`tokenlean_router.features`). The model is L2-regularised logistic regression fitted
with Newton's method in numpy (deterministic: same data, same weights). Its score estimates the
*gain* of the strong model over the weak one, ``P(strong right) - P(weak right)``, which is the
quantity a router should rank by (RouteLLM's "strong win rate").

Two optional priors can be blended with that logistic score (each standardised on the training
data, then summed with weights):

* **neighbours** - the similarity-weighted strong-minus-weak win rate among the ``k`` training
  requests nearest in embedding space (cosine, kNN);
* **groups** - a per-group (task, MMLU subject, prompt template, tenant...) strong and weak win
  rate learned on the training data, shrunk towards the global rates; requests carry their group
  at scoring time (unknown or missing groups get the global rates).

Saved as one ``.npz`` of arrays plus a JSON header: no pickle, nothing executable.
"""

from __future__ import annotations

import importlib
import json
import logging
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray

from .errors import GateFormatError, RouterConfigError
from .features import SIGNAL_NAMES, task_signals

__all__ = [
    "GateModel",
    "GroupPrior",
    "NeighbourPrior",
    "Objective",
    "fit_logistic",
    "fit_logistic_lbfgs",
    "train_gate",
]

logger = logging.getLogger("tokenlean.router")

Objective = Literal["gain", "weak_wrong", "strong_only"]
_FORMAT = "tokenlean-router-gate"
_VERSION = 1


def _sigmoid(z: NDArray[np.float64]) -> NDArray[np.float64]:
    out: NDArray[np.float64] = 0.5 * (1.0 + np.tanh(0.5 * z))
    return out


def fit_logistic(
    x: NDArray[np.float64],
    y: NDArray[np.float64],
    l2: float = 1.0,
    max_iter: int = 30,
    tol: float = 1e-7,
    sample_weight: NDArray[np.float64] | None = None,
) -> tuple[NDArray[np.float64], float]:
    """L2-regularised logistic regression by Newton's method (IRLS); returns ``(weights, bias)``.

    The bias is not penalised. Deterministic for fixed inputs.
    """
    n, d = x.shape
    if n == 0:
        raise RouterConfigError("cannot fit a gate on zero examples")
    sw = np.ones(n) if sample_weight is None else np.asarray(sample_weight, np.float64)
    xb = np.hstack([x, np.ones((n, 1))])
    beta = np.zeros(d + 1)
    p0 = float(np.clip(np.average(y, weights=sw), 1e-4, 1 - 1e-4))
    beta[-1] = math.log(p0 / (1 - p0))
    reg = np.full(d + 1, l2)
    reg[-1] = 0.0
    for _ in range(max_iter):
        p = _sigmoid(xb @ beta)
        grad = xb.T @ (sw * (p - y)) + reg * beta
        h = (xb * (sw * np.clip(p * (1 - p), 1e-9, None))[:, None]).T @ xb + np.diag(reg + 1e-9)
        step = np.linalg.solve(h, grad)
        beta -= step
        if float(np.max(np.abs(step))) < tol:
            break
    return beta[:-1].copy(), float(beta[-1])


@dataclass(frozen=True)
class _Head:
    weights: NDArray[np.float64]
    bias: float

    def prob(self, x: Any) -> NDArray[np.float64]:
        return _sigmoid(np.asarray(x @ self.weights, dtype=np.float64).ravel() + self.bias)


def _unit_rows(x: ArrayLike) -> NDArray[np.float32]:
    a = np.asarray(x, dtype=np.float32)
    n = np.linalg.norm(a, axis=1, keepdims=True)
    out: NDArray[np.float32] = (a / np.where(n > 0, n, np.float32(1.0))).astype(np.float32)
    return out


@dataclass(frozen=True)
class NeighbourPrior:
    """kNN prior: the similarity-weighted ``strong - weak`` correctness of the ``k`` nearest
    training requests (cosine similarity of their embeddings)."""

    embeddings: NDArray[np.float32]  # unit rows, one per training request
    gain: NDArray[np.float32]  # strong_correct - weak_correct per training request
    k: int

    def __post_init__(self) -> None:
        if self.k < 1:
            raise RouterConfigError("neighbours must be >= 1")
        if len(self.embeddings) != len(self.gain):
            raise RouterConfigError("neighbour embeddings and gains differ in length")

    def score(self, embeddings: ArrayLike, *, exclude_self: bool = False) -> NDArray[np.float64]:
        """The prior for each row of ``embeddings``; ``exclude_self`` drops each query's own
        (most similar) training row - for scoring the training set itself (leave-one-out)."""
        q = _unit_rows(embeddings)
        k = min(self.k, len(self.gain) - (1 if exclude_self else 0))
        if k < 1:
            raise RouterConfigError("not enough training rows for the neighbour prior")
        out = np.empty(len(q))
        for start in range(0, len(q), 1024):  # bounded memory: 1024 x n_train similarities
            sim = q[start : start + 1024] @ self.embeddings.T
            if exclude_self:
                rows = np.arange(sim.shape[0])
                sim[rows, np.argmax(sim, axis=1)] = -np.inf
            idx = np.argpartition(-sim, k - 1, axis=1)[:, :k]
            w = np.clip(np.take_along_axis(sim, idx, axis=1), 1e-6, None).astype(np.float64)
            out[start : start + len(sim)] = (w * self.gain[idx]).sum(axis=1) / w.sum(axis=1)
        return out


@dataclass(frozen=True)
class GroupPrior:
    """Per-group strong and weak win rates (additively smoothed towards the global rates)."""

    rates: Mapping[str, tuple[float, float]]  # group -> (P(strong right), P(weak right))
    default: tuple[float, float]

    @classmethod
    def fit(
        cls,
        groups: Sequence[str | None],
        weak: NDArray[np.float64],
        strong: NDArray[np.float64],
        smoothing: float = 10.0,
    ) -> GroupPrior:
        if smoothing < 0:
            raise RouterConfigError("group_smoothing must be >= 0")
        gs, gw = float(strong.mean()), float(weak.mean())
        sums: dict[str, list[float]] = {}
        for g, w, s in zip(groups, weak, strong, strict=True):
            if g is None:
                continue
            acc = sums.setdefault(str(g), [0.0, 0.0, 0.0])
            acc[0] += float(s)
            acc[1] += float(w)
            acc[2] += 1.0
        rates = {
            g: ((a + smoothing * gs) / (n + smoothing), (b + smoothing * gw) / (n + smoothing))
            for g, (a, b, n) in sorted(sums.items())
        }
        return cls(rates, (gs, gw))

    def score(self, groups: Sequence[str | None]) -> NDArray[np.float64]:
        """``P(strong right) - P(weak right)`` of each request's group."""
        out = np.empty(len(groups))
        for i, g in enumerate(groups):
            s, w = self.default if g is None else self.rates.get(str(g), self.default)
            out[i] = s - w
        return out


@dataclass(frozen=True)
class GateModel:
    """A fitted gate: standardisation, one or two logistic heads and how to combine them.

    ``score(texts)`` needs an embedder of the same kind the gate was trained with (its name is kept
    in ``embedder_name`` and checked by :class:`~tokenlean_router.Router` when both are known).
    """

    objective: Objective
    heads: dict[str, _Head]
    mean: NDArray[np.float64]
    scale: NDArray[np.float64]
    embedding_dim: int
    use_signals: bool = True
    tokenizer_model: str | None = None
    embedder_name: str | None = None
    info: dict[str, Any] = field(default_factory=dict)
    idf: NDArray[np.float64] | None = None
    neighbours: NeighbourPrior | None = None
    groups: GroupPrior | None = None
    blend: Mapping[str, tuple[float, float, float]] = field(default_factory=dict)
    """component (``logistic``, ``neighbours``, ``groups``) -> (mean, std, weight) on the
    training data; empty = the logistic score alone."""

    @property
    def n_dense(self) -> int:
        return self.embedding_dim + (len(SIGNAL_NAMES) if self.use_signals else 0)

    @property
    def lexical_dim(self) -> int:
        return 0 if self.idf is None else len(self.idf)

    @property
    def n_features(self) -> int:
        return self.n_dense + self.lexical_dim

    def features(
        self, texts: Sequence[str], embeddings: ArrayLike, signals: ArrayLike | None = None
    ) -> Any:
        """The standardised feature matrix for ``texts`` given their ``embeddings`` (and, to skip
        recomputing them, their :func:`~tokenlean_router.task_signals`)."""
        emb = np.asarray(embeddings, dtype=np.float64)
        if emb.ndim != 2 or emb.shape[1] != self.embedding_dim:
            raise RouterConfigError(
                f"the gate expects {self.embedding_dim}-d embeddings, got shape {emb.shape}; "
                "use the embedder the gate was trained with"
            )
        if len(texts) != emb.shape[0]:
            raise RouterConfigError("texts and embeddings differ in length")
        parts = [emb]
        if self.use_signals:
            sig = (
                task_signals(list(texts), self.tokenizer_model)
                if signals is None
                else np.asarray(signals, dtype=np.float64)
            )
            if sig.shape != (len(texts), len(SIGNAL_NAMES)):
                raise RouterConfigError(f"signals must have shape (n, {len(SIGNAL_NAMES)})")
            parts.append(sig)
        dense = (np.hstack(parts) - self.mean) / self.scale
        if self.idf is None:
            return dense
        return _with_lexical(dense, texts, self.idf)

    def score_features(self, x: Any) -> NDArray[np.float64]:
        """Scores from a feature matrix made by :meth:`features`."""
        if self.objective == "gain":
            return self.heads["strong"].prob(x) - self.heads["weak"].prob(x)
        if self.objective == "weak_wrong":
            return 1.0 - self.heads["weak"].prob(x)
        return self.heads["strong_only"].prob(x)

    def score(
        self,
        texts: Sequence[str],
        embeddings: ArrayLike,
        signals: ArrayLike | None = None,
        groups: Sequence[str | None] | None = None,
    ) -> NDArray[np.float64]:
        """Higher score = the request needs the stronger model more.

        ``groups`` (one per text, None = unknown) feed the group prior when the gate has one."""
        base = self.score_features(self.features(texts, embeddings, signals))
        if not self.blend:
            return base
        parts = {"logistic": base}
        if self.neighbours is not None:
            parts["neighbours"] = self.neighbours.score(embeddings)
        if self.groups is not None:
            gl: list[str | None] = [None] * len(texts) if groups is None else list(groups)
            if len(gl) != len(texts):
                raise RouterConfigError("texts and groups differ in length")
            parts["groups"] = self.groups.score(gl)
        return _blend(parts, self.blend)

    # -- persistence (npz arrays + JSON header; loaded with allow_pickle=False) -------------------
    def save(self, path: str | Path) -> Path:
        """Write the gate to ``path`` (``.npz``); returns the path written."""
        p = Path(path)
        if p.suffix != ".npz":
            p = p.with_suffix(".npz")
        header = {
            "format": _FORMAT,
            "version": _VERSION,
            "objective": self.objective,
            "heads": {name: head.bias for name, head in self.heads.items()},
            "embedding_dim": self.embedding_dim,
            "use_signals": self.use_signals,
            "signal_names": list(SIGNAL_NAMES) if self.use_signals else [],
            "tokenizer_model": self.tokenizer_model,
            "embedder_name": self.embedder_name,
            "info": self.info,
            "lexical_dim": self.lexical_dim,
            "blend": {k: list(v) for k, v in self.blend.items()},
            "neighbours_k": self.neighbours.k if self.neighbours is not None else 0,
            "groups": (
                None
                if self.groups is None
                else {
                    "rates": {g: list(r) for g, r in self.groups.rates.items()},
                    "default": list(self.groups.default),
                }
            ),
        }
        arrays: dict[str, NDArray[Any]] = {
            "header": np.frombuffer(json.dumps(header).encode(), dtype=np.uint8),
            "mean": self.mean,
            "scale": self.scale,
        }
        for name, head in self.heads.items():
            arrays[f"w_{name}"] = head.weights
        if self.idf is not None:
            arrays["idf"] = self.idf
        if self.neighbours is not None:
            arrays["nb_emb"] = self.neighbours.embeddings
            arrays["nb_gain"] = self.neighbours.gain
        p.parent.mkdir(parents=True, exist_ok=True)
        with p.open("wb") as fh:
            np.savez_compressed(fh, **arrays)  # type: ignore[arg-type]
        return p

    @classmethod
    def load(cls, path: str | Path) -> GateModel:
        """Read a gate written by :meth:`save`."""
        try:
            with np.load(Path(path), allow_pickle=False) as data:
                header = json.loads(bytes(data["header"]).decode())
                if header.get("format") != _FORMAT:
                    raise GateFormatError(f"{path} is not a tokenlean-router gate file")
                if header.get("version") != _VERSION:
                    raise GateFormatError(
                        f"{path} has gate format version {header.get('version')}, "
                        f"this tokenlean-router reads version {_VERSION}"
                    )
                if header["use_signals"] and header["signal_names"] != list(SIGNAL_NAMES):
                    raise GateFormatError(
                        f"{path} was trained with other task signals; retrain the gate"
                    )
                heads = {
                    name: _Head(np.asarray(data[f"w_{name}"], np.float64), float(bias))
                    for name, bias in header["heads"].items()
                }
                model = cls(
                    objective=header["objective"],
                    heads=heads,
                    mean=np.asarray(data["mean"], np.float64),
                    scale=np.asarray(data["scale"], np.float64),
                    embedding_dim=int(header["embedding_dim"]),
                    use_signals=bool(header["use_signals"]),
                    tokenizer_model=header["tokenizer_model"],
                    embedder_name=header["embedder_name"],
                    info=dict(header.get("info") or {}),
                    idf=(
                        np.asarray(data["idf"], np.float64)
                        if int(header.get("lexical_dim") or 0)
                        else None
                    ),
                    neighbours=(
                        NeighbourPrior(
                            np.asarray(data["nb_emb"], np.float32),
                            np.asarray(data["nb_gain"], np.float32),
                            int(header["neighbours_k"]),
                        )
                        if int(header.get("neighbours_k") or 0)
                        else None
                    ),
                    groups=(
                        GroupPrior(
                            {
                                str(g): (float(r[0]), float(r[1]))
                                for g, r in header["groups"]["rates"].items()
                            },
                            (
                                float(header["groups"]["default"][0]),
                                float(header["groups"]["default"][1]),
                            ),
                        )
                        if header.get("groups")
                        else None
                    ),
                    blend={
                        str(k): (float(v[0]), float(v[1]), float(v[2]))
                        for k, v in (header.get("blend") or {}).items()
                    },
                )
        except GateFormatError:
            raise
        except (OSError, KeyError, ValueError, json.JSONDecodeError) as exc:
            raise GateFormatError(f"cannot read gate file {path}: {exc}") from exc
        for head in model.heads.values():
            if head.weights.shape != (model.n_features,):
                raise GateFormatError(f"{path}: head weights do not match the feature count")
        return model


def train_gate(
    texts: Sequence[str],
    weak_correct: ArrayLike,
    strong_correct: ArrayLike,
    *,
    embeddings: ArrayLike | None = None,
    embedder: Callable[[list[str]], Any] | None = None,
    signals: ArrayLike | None = None,
    objective: Objective = "gain",
    l2: float = 3.0,
    use_signals: bool = True,
    lexical_dim: int = 0,
    neighbours: int = 0,
    groups: Sequence[str | None] | None = None,
    group_smoothing: float = 10.0,
    blend_weights: Mapping[str, float] | None = None,
    tokenizer_model: str | None = None,
    embedder_name: str | None = None,
    progress: Callable[[str, float], None] | None = None,
) -> GateModel:
    """Fit a gate from labelled data: per text, whether the weak and the strong model were right.

    Pass precomputed ``embeddings`` or an ``embedder`` (texts -> 2-D array). ``objective``:
    ``signals`` are precomputed :func:`~tokenlean_router.task_signals` (optional).
    ``"gain"`` (default) ranks by ``P(strong right) - P(weak right)``; ``"weak_wrong"`` by
    ``P(weak wrong)``; ``"strong_only"`` by ``P(only the strong is right)``. ``progress(stage,
    fraction)`` is called as training advances. ``lexical_dim > 0`` adds hashed word unigram and
    bigram TF-IDF features in that many buckets (e.g. ``2**16``; needs scipy), fitted jointly with
    L-BFGS: they help when requests repeat domain wording (MMLU-like exams).

    ``neighbours=k`` (e.g. 50) blends in the kNN prior over the training embeddings (the gate
    then stores them: ``n x dim`` float32); ``groups`` (one label per text: task, subject,
    template...; None = unknown) blends in the per-group win-rate prior, smoothed with
    ``group_smoothing`` pseudo-counts. Each component is standardised on the training data
    (leave-one-out for the priors) and weighted by ``blend_weights`` (default 1 each).
    """
    texts = list(texts)
    weak = np.asarray(weak_correct, dtype=np.float64)
    strong = np.asarray(strong_correct, dtype=np.float64)
    if not (len(texts) == len(weak) == len(strong)):
        raise RouterConfigError("texts, weak_correct and strong_correct differ in length")
    if len(texts) < 10:
        raise RouterConfigError("a gate needs at least 10 labelled examples")
    if l2 <= 0:
        raise RouterConfigError("l2 must be positive")

    def report(stage: str, frac: float) -> None:
        if progress is not None:
            progress(stage, frac)

    if embeddings is None:
        if embedder is None:
            raise RouterConfigError("train_gate needs embeddings or an embedder")
        from .embedders import as_embedding_function

        fn = as_embedding_function(embedder)
        chunks = []
        step = 256
        for i in range(0, len(texts), step):
            chunks.append(fn(texts[i : i + step]))
            report("embed", min(1.0, (i + step) / len(texts)))
        emb = np.vstack(chunks).astype(np.float64)
        embedder_name = embedder_name or getattr(embedder, "name", None)
    else:
        emb = np.asarray(embeddings, dtype=np.float64)
    if emb.ndim != 2 or emb.shape[0] != len(texts):
        raise RouterConfigError(f"embeddings must have shape (n, dim), got {emb.shape}")
    parts = [emb]
    if use_signals:
        sig = (
            task_signals(texts, tokenizer_model)
            if signals is None
            else np.asarray(signals, dtype=np.float64)
        )
        if sig.shape != (len(texts), len(SIGNAL_NAMES)):
            raise RouterConfigError(f"signals must have shape (n, {len(SIGNAL_NAMES)})")
        parts.append(sig)
    raw = np.hstack(parts)
    report("features", 1.0)
    d_emb = emb.shape[1]
    mean = np.zeros(raw.shape[1])
    scale = np.ones(raw.shape[1])
    if use_signals:
        mean[d_emb:] = raw[:, d_emb:].mean(axis=0)
        sd = raw[:, d_emb:].std(axis=0)
        scale[d_emb:] = np.where(sd > 1e-9, sd, 1.0)
    x: Any = (raw - mean) / scale
    idf = None
    if lexical_dim:
        if lexical_dim < 16:
            raise RouterConfigError("lexical_dim must be 0 (off) or >= 16")
        from .features import lexical_counts

        counts = lexical_counts(texts, lexical_dim)
        df = np.bincount(counts.indices, minlength=lexical_dim)
        idf = np.log((1.0 + len(texts)) / (1.0 + df)) + 1.0
        x = _with_lexical(x, texts, idf, counts)
    labels: dict[str, NDArray[np.float64]] = {}
    if objective == "gain":
        labels = {"strong": strong, "weak": weak}
    elif objective == "weak_wrong":
        labels = {"weak": weak}
    elif objective == "strong_only":
        labels = {"strong_only": strong * (1 - weak)}
    else:
        raise RouterConfigError(f"unknown objective {objective!r}")
    heads = {}
    for i, (name, y) in enumerate(labels.items()):
        w, b = fit_logistic(x, y, l2=l2) if idf is None else fit_logistic_lbfgs(x, y, l2=l2)
        heads[name] = _Head(w, b)
        report("fit", (i + 1) / len(labels))
    logger.info("trained a %s gate on %d examples (%d features)", objective, len(texts), x.shape[1])
    if neighbours < 0:
        raise RouterConfigError("neighbours must be >= 0")
    nb = (
        NeighbourPrior(_unit_rows(emb), (strong - weak).astype(np.float32), int(neighbours))
        if neighbours
        else None
    )
    gp = None
    loo_group: NDArray[np.float64] | None = None
    if groups is not None:
        gl = list(groups)
        if len(gl) != len(texts):
            raise RouterConfigError("texts and groups differ in length")
        gp = GroupPrior.fit(gl, weak, strong, group_smoothing)
        loo_group = _loo_group_gain(gl, weak, strong, group_smoothing, gp.default)
    blend: dict[str, tuple[float, float, float]] = {}
    if nb is not None or gp is not None:
        weights = dict(blend_weights or {})
        unknown = set(weights) - {"logistic", "neighbours", "groups"}
        if unknown:
            raise RouterConfigError(f"unknown blend components {sorted(unknown)}")
        head_model = GateModel(objective, heads, mean, scale, d_emb, use_signals, idf=idf)
        train_parts = {"logistic": head_model.score_features(x)}
        if nb is not None:
            train_parts["neighbours"] = nb.score(emb, exclude_self=True)
        if loo_group is not None:
            train_parts["groups"] = loo_group
        for name, v in train_parts.items():
            sd = float(v.std())
            blend[name] = (
                float(v.mean()),
                sd if sd > 1e-12 else 1.0,
                float(weights.get(name, 1.0)),
            )
    return GateModel(
        objective=objective,
        heads=heads,
        mean=mean,
        scale=scale,
        embedding_dim=d_emb,
        use_signals=use_signals,
        tokenizer_model=tokenizer_model,
        embedder_name=embedder_name,
        info={"n_train": len(texts), "l2": l2},
        idf=idf,
        neighbours=nb,
        groups=gp,
        blend=blend,
    )


def _loo_group_gain(
    groups: Sequence[str | None],
    weak: NDArray[np.float64],
    strong: NDArray[np.float64],
    smoothing: float,
    default: tuple[float, float],
) -> NDArray[np.float64]:
    """Each training row's group prior computed without that row (no label leak)."""
    sums: dict[str, NDArray[np.float64]] = {}
    for g, w, s in zip(groups, weak, strong, strict=True):
        if g is not None:
            acc = sums.setdefault(str(g), np.zeros(3))
            acc += (s, w, 1.0)
    out = np.empty(len(groups))
    for i, (g, w, s) in enumerate(zip(groups, weak, strong, strict=True)):
        if g is None:
            out[i] = default[0] - default[1]
            continue
        a, b, n = sums[str(g)] - (s, w, 1.0)
        out[i] = (a + smoothing * default[0]) / (n + smoothing) - (b + smoothing * default[1]) / (
            n + smoothing
        )
    return out


def _blend(
    parts: Mapping[str, NDArray[np.float64]], blend: Mapping[str, tuple[float, float, float]]
) -> NDArray[np.float64]:
    total = np.zeros_like(next(iter(parts.values())))
    for name, (m, sd, w) in blend.items():
        if name not in parts:
            raise GateFormatError(f"the gate blends a {name!r} component it does not have")
        total += w * (parts[name] - m) / sd
    return total


def _with_lexical(
    dense: NDArray[np.float64], texts: Sequence[str], idf: NDArray[np.float64], counts: Any = None
) -> Any:
    from .features import lexical_counts

    sparse = importlib.import_module("scipy.sparse")

    lex = lexical_counts(list(texts), len(idf)) if counts is None else counts
    lex = lex.multiply(idf[None, :]).tocsr()
    norms = np.sqrt(np.asarray(lex.multiply(lex).sum(axis=1)).ravel())
    lex = sparse.diags(1.0 / np.where(norms > 0, norms, 1.0)) @ lex
    return sparse.hstack([sparse.csr_matrix(dense), lex], format="csr")


def fit_logistic_lbfgs(
    x: Any, y: NDArray[np.float64], l2: float = 1.0, max_iter: int = 500
) -> tuple[NDArray[np.float64], float]:
    """L2-regularised logistic regression by L-BFGS (for sparse, wide feature matrices)."""
    minimize = importlib.import_module("scipy.optimize").minimize

    d = x.shape[1]
    yy = np.asarray(y, dtype=np.float64)
    p0 = float(np.clip(yy.mean(), 1e-4, 1 - 1e-4))

    def loss(beta: NDArray[np.float64]) -> tuple[float, NDArray[np.float64]]:
        w, b = beta[:-1], beta[-1]
        z = np.asarray(x @ w).ravel() + b
        # log(1 + exp(z)) - y z, computed stably
        val = float(np.sum(np.logaddexp(0.0, z) - yy * z) + 0.5 * l2 * float(w @ w))
        r = _sigmoid(z) - yy
        grad = np.empty(d + 1)
        grad[:-1] = np.asarray(x.T @ r).ravel() + l2 * w
        grad[-1] = float(r.sum())
        return val, grad

    beta0 = np.zeros(d + 1)
    beta0[-1] = math.log(p0 / (1 - p0))
    res = minimize(loss, beta0, jac=True, method="L-BFGS-B", options={"maxiter": max_iter})
    return np.asarray(res.x[:-1], dtype=np.float64), float(res.x[-1])
