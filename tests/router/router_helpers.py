"""Shared helpers of the tokenlean-router tests (a synthetic labelled dataset, tiers)."""

from __future__ import annotations

import random

import numpy as np

from tokenlean_core import Price
from tokenlean_router import Tier

HARD_TEMPLATES = [
    "Calculate {a} * {b} + {c} and show each step of the computation.",
    "Solve the equation {a}x + {b} = {c} for x, then explain why it works.",
    "Write a Python function that returns the {a}th Fibonacci number modulo {b}.",
    "A train leaves at {a} km/h and another at {b} km/h; how many hours until they are {c} km apart?",
    "Prove that the sum of the first {a} odd numbers equals {a} squared, step by step.",
    "Debug this code: def f(x): return x / ({a} - {b}) and explain the stack trace.",
]
EASY_TEMPLATES = [
    "What is the capital of {country}?",
    "Say hello to {name} in a friendly way.",
    "Translate 'good morning' into {language}.",
    "Who wrote the novel {book}?",
    "Give me a synonym for the word {word}.",
    "What colour is the sky on a clear day in {country}?",
]
FILL = {
    "country": ["France", "Peru", "Japan", "Kenya", "Norway", "Chile", "Egypt", "Canada"],
    "name": ["Ada", "Linus", "Grace", "Alan", "Barbara", "Ken", "Margaret", "Dennis"],
    "language": ["Spanish", "German", "Italian", "Swahili", "Korean", "Dutch"],
    "book": ["Dune", "Emma", "Ulysses", "Beloved", "Middlemarch", "Solaris"],
    "word": ["happy", "fast", "bright", "calm", "brave", "quiet"],
}


def make_dataset(n: int, seed: int) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Texts with (weak correct, strong correct); the weak model fails most hard requests."""
    rng = random.Random(seed)
    texts, weak, strong = [], [], []
    for _ in range(n):
        hard = rng.random() < 0.4
        if hard:
            t = rng.choice(HARD_TEMPLATES).format(
                a=rng.randint(2, 999), b=rng.randint(2, 999), c=rng.randint(2, 999)
            )
            w, s = rng.random() < 0.25, rng.random() < 0.9
        else:
            tpl = rng.choice(EASY_TEMPLATES)
            t = tpl.format(**{k: rng.choice(v) for k, v in FILL.items()})
            w, s = rng.random() < 0.92, rng.random() < 0.95
        texts.append(t)
        weak.append(w)
        strong.append(s)
    return texts, np.array(weak), np.array(strong)


TIERS = [Tier("small-model", Price(0.5, 1.5)), Tier("large-model", Price(10.0, 30.0))]
