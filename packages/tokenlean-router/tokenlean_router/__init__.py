"""tokenlean-router: route each LLM request to the smallest model that will answer it well.

* a **gate** (:class:`Router` + :class:`GateModel`): a light learned score from a local embedding,
  the token count and task signals, with thresholds calibrated to a target share of large-model
  calls or a target cost;
* a **cascade** (:class:`CascadePolicy`): call the small model first, escalate on low confidence
  (token log-probabilities, self-consistency or a verifier such as :class:`ResponseVerifier`);
* **micro-batching** of compatible requests (:class:`MicroBatcher`);
* RouteLLM's evaluation metrics (:mod:`tokenlean_router.metrics`).

Framework adapters: ``tokenlean_router.langchain`` (``RouterChain``, ``RouterMiddleware``) and
``tokenlean_router.llama_index`` (``RouterLLM``).
"""

from __future__ import annotations

from .batching import BatchKey, BatchLimits, MicroBatcher
from .calibrate import threshold_for_cost, threshold_for_share, thresholds_for_shares
from .cascade import CascadePolicy, extract_final_answer, logprob_confidence, self_consistency
from .embedders import HashingEmbedder, MiniLMEmbedder, as_embedding_function
from .errors import AllTiersFailedError, GateFormatError, RouterConfigError, RouterError
from .features import SIGNAL_NAMES, task_signals
from .gate import GateModel, GroupPrior, NeighbourPrior, train_gate
from .metrics import RouterCurve, apgr, oracle_scores, random_curve, routellm_curve
from .router import Decision, Router, Tier, record_route
from .verifier import ResponseVerifier, response_features, train_verifier

__version__ = "0.1.0"

__all__ = [
    "SIGNAL_NAMES",
    "AllTiersFailedError",
    "BatchKey",
    "BatchLimits",
    "CascadePolicy",
    "Decision",
    "GateFormatError",
    "GateModel",
    "GroupPrior",
    "HashingEmbedder",
    "MicroBatcher",
    "MiniLMEmbedder",
    "NeighbourPrior",
    "ResponseVerifier",
    "Router",
    "RouterConfigError",
    "RouterCurve",
    "RouterError",
    "Tier",
    "__version__",
    "apgr",
    "as_embedding_function",
    "extract_final_answer",
    "logprob_confidence",
    "oracle_scores",
    "random_curve",
    "record_route",
    "response_features",
    "routellm_curve",
    "self_consistency",
    "task_signals",
    "threshold_for_cost",
    "threshold_for_share",
    "thresholds_for_shares",
    "train_gate",
    "train_verifier",
]
