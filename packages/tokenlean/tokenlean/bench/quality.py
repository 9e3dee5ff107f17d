"""Quality measures shared by ``tokenlean bench`` and the component benchmarks.

* :func:`state_recall`: how much of a conversation's state (slot values) is still in the
  context the model gets (the measure of ``benchmarks/memory.py``);
* :func:`answer_retention`: whether a gold answer is still in a (compressed) context;
* :func:`judge_agreement`: whether two answers agree, asked of a judge chat model.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["answer_retention", "judge_agreement", "normalize_answer", "state_recall"]


def state_recall(
    state: Mapping[str, Sequence[str]], text: str, history: str
) -> tuple[int, int, int, int]:
    """(slots recalled, slots, recoverable recalled, recoverable) for one turn.

    A slot is recalled when one of its values appears, case-insensitively, in ``text`` (the
    context the model gets); it is recoverable when one of its values appears in ``history``
    (values such as ``True`` or ``dontcare`` never appear in any text).
    """
    low, hist = text.lower(), history.lower()
    hit = tot = rhit = rtot = 0
    for values in state.values():
        vals = [v.lower() for v in values]
        present = any(v in low for v in vals)
        tot += 1
        hit += present
        if any(v in hist for v in vals):
            rtot += 1
            rhit += present
    return hit, tot, rhit, rtot


def normalize_answer(text: str) -> str:
    """Lower case, accents folded, punctuation and articles dropped, whitespace collapsed
    (the usual NQ/SQuAD normalisation)."""
    text = unicodedata.normalize("NFKD", text)
    text = "".join(c for c in text if not unicodedata.combining(c)).lower()
    text = re.sub(r"[^\w\s]", " ", text)
    text = re.sub(r"\b(a|an|the)\b", " ", text)
    return " ".join(text.split())


def answer_retention(answers: Sequence[str], context: str) -> bool:
    """Whether one of the gold ``answers`` is still in ``context`` (normalised match)."""
    ctx = f" {normalize_answer(context)} "
    return any(f" {normalize_answer(a)} " in ctx for a in answers if normalize_answer(a))


JUDGE_PROMPT = (
    "Question: {question}\n\nAnswer A: {a}\n\nAnswer B: {b}\n\n"
    "Do A and B give the same answer to the question (same facts; wording may differ)? "
    "Reply with one word: yes or no."
)


def judge_agreement(judge: Any, question: str, a: str, b: str) -> bool | None:
    """Ask ``judge`` (a LangChain chat model) whether two answers agree; None if it says
    neither yes nor no."""
    reply = judge.invoke(JUDGE_PROMPT.format(question=question, a=a, b=b))
    text = str(getattr(reply, "text", reply)).strip().lower()
    if text.startswith("yes"):
        return True
    if text.startswith("no"):
        return False
    return None
