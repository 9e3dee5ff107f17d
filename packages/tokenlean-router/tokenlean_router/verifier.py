"""A learned verifier of a small model's answer: features of (prompt, answer) -> P(answer right).

It needs no model call: it checks the answer's own arithmetic (``a op b = c`` statements and
GSM8K-style ``<<expr=value>>`` annotations are re-computed), whether it reaches a final answer and
whether that is a whole number, hedging and self-correction phrases, how many of the question's
numbers it uses, and its length; optionally the prompt's embedding too. Fitted with the gate's
logistic regression on examples labelled with whether the small model was right; saved as ``.npz``.
Use it as a cascade verifier: ``CascadePolicy(threshold, method="verifier", verifier=v)``.
"""

from __future__ import annotations

import ast
import json
import math
import operator
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from .cascade import extract_final_answer
from .embedders import as_embedding_function
from .errors import GateFormatError, RouterConfigError
from .gate import _sigmoid, fit_logistic

__all__ = ["VERIFIER_FEATURES", "ResponseVerifier", "response_features", "train_verifier"]

_FORMAT = "tokenlean-router-verifier"
_VERSION = 1

_NUM = r"-?\$?\d[\d,]*(?:\.\d+)?"
_EQUATION = re.compile(
    rf"({_NUM})\s*([-+*/x×÷])\s*({_NUM})\s*=\s*({_NUM})(?![\d.]*\s*[-+*/x×÷]\s*\d)"
)
_ANNOTATION = re.compile(r"<<([^<>=]+)=([^<>]+)>>")
_HEDGE = re.compile(
    r"\b(?:however|approximately|about|assum\w*|can't|cannot|not possible|impossible|round\w*|"
    r"actually|wait|mistake|incorrect|unclear|ambiguous|estimate|roughly|i think|perhaps|maybe)\b",
    re.IGNORECASE,
)
_NUMBER = re.compile(r"\d[\d,]*(?:\.\d+)?")
_OPS: dict[type[ast.AST], Callable[[Any, Any], Any]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.Mod: operator.mod,
    ast.Pow: operator.pow,
}

VERIFIER_FEATURES: tuple[str, ...] = (
    "has_final_marker",
    "final_is_number",
    "final_is_integer",
    "final_negative",
    "log_final_magnitude",
    "equations",
    "equations_wrong",
    "equations_wrong_share",
    "annotations",
    "annotations_wrong",
    "hedges",
    "question_numbers_used",
    "log_answer_chars",
    "answer_to_question_chars",
    "answer_lines",
    "final_in_body",
)


def _num(s: str) -> float | None:
    try:
        return float(s.replace(",", "").replace("$", ""))
    except ValueError:
        return None


def _safe_eval(expr: str) -> float | None:
    """Evaluate + - * / % ** on numbers only (no names, no calls); None if anything else."""
    expr = expr.replace(",", "").replace("$", "").replace("x", "*").replace("×", "*")
    if len(expr) > 200:
        return None
    try:
        node = ast.parse(expr.strip(), mode="eval").body
    except (SyntaxError, ValueError):
        return None

    def ev(n: ast.AST) -> float:
        if isinstance(n, ast.Constant) and isinstance(n.value, (int, float)):
            return float(n.value)
        if isinstance(n, ast.BinOp) and type(n.op) in _OPS:
            left, right = ev(n.left), ev(n.right)
            if isinstance(n.op, ast.Pow) and abs(right) > 12:
                raise ValueError("exponent too large")
            return float(_OPS[type(n.op)](left, right))
        if isinstance(n, ast.UnaryOp) and isinstance(n.op, (ast.USub, ast.UAdd)):
            v = ev(n.operand)
            return -v if isinstance(n.op, ast.USub) else v
        raise ValueError("unsupported expression")

    try:
        return ev(node)
    except (ValueError, ZeroDivisionError, OverflowError, TypeError):
        return None


def _close(true: float, stated: float, stated_text: str) -> bool:
    """Whether ``stated`` is ``true`` rounded to the decimals it was written with."""
    decimals = len(stated_text.split(".", 1)[1]) if "." in stated_text else 0
    return abs(true - stated) <= 0.5 * 10.0 ** (-decimals) + 1e-9 * max(1.0, abs(true))


def response_features(prompt: str, answer: str) -> list[float]:
    """The :data:`VERIFIER_FEATURES` of one (prompt, answer) pair."""
    final = extract_final_answer(answer)
    fnum = _num(final)
    eq_total = eq_wrong = 0
    for a, op, b, c in _EQUATION.findall(answer):
        x, y, z = _num(a), _num(b), _num(c)
        if x is None or y is None or z is None:
            continue
        fn = {"+": operator.add, "-": operator.sub, "*": operator.mul, "x": operator.mul}.get(op)
        fn = fn or ({"×": operator.mul, "/": operator.truediv, "÷": operator.truediv}.get(op))
        if fn is None:
            continue
        try:
            val = float(fn(x, y))
        except ZeroDivisionError:
            continue
        eq_total += 1
        eq_wrong += 0 if _close(val, z, c.strip()) else 1
    ann_total = ann_wrong = 0
    for expr, value in _ANNOTATION.findall(answer):
        v, got = _safe_eval(expr), _num(value.strip())
        if v is None or got is None:
            continue
        ann_total += 1
        ann_wrong += 0 if _close(v, got, value.strip()) else 1
    q_nums = {n.replace(",", "") for n in _NUMBER.findall(prompt)}
    a_nums = {n.replace(",", "") for n in _NUMBER.findall(answer)}
    used = len(q_nums & a_nums) / len(q_nums) if q_nums else 1.0
    body = answer.rsplit("####", 1)[0]
    return [
        1.0 if "####" in answer else 0.0,
        1.0 if fnum is not None else 0.0,
        1.0 if fnum is not None and math.isfinite(fnum) and fnum.is_integer() else 0.0,
        1.0 if fnum is not None and fnum < 0 else 0.0,
        math.log10(1 + abs(fnum)) if fnum is not None and math.isfinite(fnum) else 0.0,
        math.log1p(eq_total),
        math.log1p(eq_wrong),
        eq_wrong / eq_total if eq_total else 0.0,
        math.log1p(ann_total),
        math.log1p(ann_wrong),
        math.log1p(len(_HEDGE.findall(answer))),
        used,
        math.log1p(len(answer)),
        math.log1p(len(answer) / max(1, len(prompt))),
        math.log1p(answer.count("\n")),
        1.0
        if fnum is not None and final in {n.replace(",", "") for n in _NUMBER.findall(body)}
        else 0.0,
    ]


@dataclass(frozen=True)
class ResponseVerifier:
    """P(the small model's answer is right) from (prompt, answer); call it as ``v(prompt, answer)``.

    With ``embedding_dim > 0`` the prompt's embedding is part of the features and an ``embedder``
    must be attached (``with_embedder``) before calling.
    """

    weights: NDArray[np.float64]
    bias: float
    mean: NDArray[np.float64]
    scale: NDArray[np.float64]
    embedding_dim: int = 0
    embedder_name: str | None = None
    info: dict[str, Any] = field(default_factory=dict)
    embedder: Callable[[list[str]], Any] | None = field(default=None, compare=False, repr=False)

    def with_embedder(self, embedder: Any) -> ResponseVerifier:
        return ResponseVerifier(
            self.weights,
            self.bias,
            self.mean,
            self.scale,
            self.embedding_dim,
            self.embedder_name,
            self.info,
            as_embedding_function(embedder),
        )

    def _matrix(
        self, prompts: Sequence[str], answers: Sequence[str], embeddings: ArrayLike | None
    ) -> NDArray[np.float64]:
        if len(prompts) != len(answers):
            raise RouterConfigError("prompts and answers differ in length")
        feats = np.array(
            [response_features(p, a) for p, a in zip(prompts, answers, strict=True)], np.float64
        )
        feats = feats.reshape(len(prompts), len(VERIFIER_FEATURES))
        if self.embedding_dim:
            if embeddings is None:
                if self.embedder is None:
                    raise RouterConfigError(
                        "this verifier uses prompt embeddings: attach one with with_embedder()"
                    )
                embeddings = as_embedding_function(self.embedder)(list(prompts))
            emb = np.asarray(embeddings, np.float64)
            if emb.shape != (len(prompts), self.embedding_dim):
                raise RouterConfigError(f"expected embeddings of shape (n, {self.embedding_dim})")
            feats = np.hstack([emb, feats])
        return (feats - self.mean) / self.scale

    def predict(
        self,
        prompts: Sequence[str],
        answers: Sequence[str],
        embeddings: ArrayLike | None = None,
    ) -> NDArray[np.float64]:
        """P(right) for each (prompt, answer)."""
        x = self._matrix(prompts, answers, embeddings)
        return _sigmoid(x @ self.weights + self.bias)

    def __call__(self, prompt: str, answer: str) -> float:
        return float(self.predict([prompt], [answer])[0])

    def save(self, path: str | Path) -> Path:
        p = Path(path)
        if p.suffix != ".npz":
            p = p.with_suffix(".npz")
        header = {
            "format": _FORMAT,
            "version": _VERSION,
            "bias": self.bias,
            "embedding_dim": self.embedding_dim,
            "features": list(VERIFIER_FEATURES),
            "embedder_name": self.embedder_name,
            "info": self.info,
        }
        p.parent.mkdir(parents=True, exist_ok=True)
        with p.open("wb") as fh:
            np.savez_compressed(
                fh,
                header=np.frombuffer(json.dumps(header).encode(), dtype=np.uint8),
                weights=self.weights,
                mean=self.mean,
                scale=self.scale,
            )
        return p

    @classmethod
    def load(cls, path: str | Path) -> ResponseVerifier:
        try:
            with np.load(Path(path), allow_pickle=False) as data:
                header = json.loads(bytes(data["header"]).decode())
                if header.get("format") != _FORMAT or header.get("version") != _VERSION:
                    raise GateFormatError(f"{path} is not a version-{_VERSION} verifier file")
                if header["features"] != list(VERIFIER_FEATURES):
                    raise GateFormatError(f"{path} was trained on other features; retrain it")
                return cls(
                    np.asarray(data["weights"], np.float64),
                    float(header["bias"]),
                    np.asarray(data["mean"], np.float64),
                    np.asarray(data["scale"], np.float64),
                    int(header["embedding_dim"]),
                    header.get("embedder_name"),
                    dict(header.get("info") or {}),
                )
        except GateFormatError:
            raise
        except (OSError, KeyError, ValueError, json.JSONDecodeError) as exc:
            raise GateFormatError(f"cannot read verifier file {path}: {exc}") from exc


def train_verifier(
    prompts: Sequence[str],
    answers: Sequence[str],
    correct: ArrayLike,
    *,
    embeddings: ArrayLike | None = None,
    l2: float = 10.0,
    embedder_name: str | None = None,
) -> ResponseVerifier:
    """Fit a verifier on (prompt, small model's answer, was it right) examples."""
    y = np.asarray(correct, np.float64)
    if not (len(prompts) == len(answers) == len(y)):
        raise RouterConfigError("prompts, answers and correct differ in length")
    if len(y) < 10:
        raise RouterConfigError("a verifier needs at least 10 labelled examples")
    feats = np.array(
        [response_features(p, a) for p, a in zip(prompts, answers, strict=True)], np.float64
    )
    dim = 0
    if embeddings is not None:
        emb = np.asarray(embeddings, np.float64)
        dim = emb.shape[1]
        feats = np.hstack([emb, feats])
    mean = np.zeros(feats.shape[1])
    scale = np.ones(feats.shape[1])
    sig = feats[:, dim:]
    mean[dim:] = sig.mean(axis=0)
    sd = sig.std(axis=0)
    scale[dim:] = np.where(sd > 1e-9, sd, 1.0)
    w, b = fit_logistic((feats - mean) / scale, y, l2=l2)
    return ResponseVerifier(w, b, mean, scale, dim, embedder_name, {"n_train": len(y), "l2": l2})
