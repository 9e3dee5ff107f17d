"""tokenlean-vllm: vLLM for LangChain and LlamaIndex with speculative decoding configured, measured
and turned down under load; prefix-cache savings reported; servers started, watched and stopped.

The engine (this module) imports no framework. The adapters are
``tokenlean_vllm.langchain.ChatVLLM`` and ``tokenlean_vllm.llama_index.VLLM`` (also reachable
here, imported on first use).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .config import MODEL_FREE_METHODS, SpeculativeConfig, SpeculativeMethod
from .errors import (
    MetricsParseError,
    ServerError,
    ServerStartError,
    ServerUnavailableError,
    SpeculativeConfigError,
    VLLMError,
)
from .inprocess import InProcessResult, InProcessVLLM, require_vllm, vllm_available
from .metrics import (
    METRIC_NAMES,
    MetricsClient,
    Sample,
    SpeculationStats,
    VLLMMetrics,
    parse_prometheus,
)
from .policy import Endpoint, LoadAwarePolicy, PolicyConfig, PolicyDecision
from .reporting import METADATA_KEY, report_call
from .server import ServerProcess, VLLMServer, free_port

if TYPE_CHECKING:
    from .langchain import ChatVLLM, ChatVLLMInProcess
    from .llama_index import VLLM

__version__ = "0.1.0"

__all__ = [
    "METADATA_KEY",
    "METRIC_NAMES",
    "MODEL_FREE_METHODS",
    "VLLM",
    "ChatVLLM",
    "ChatVLLMInProcess",
    "Endpoint",
    "InProcessResult",
    "InProcessVLLM",
    "LoadAwarePolicy",
    "MetricsClient",
    "MetricsParseError",
    "PolicyConfig",
    "PolicyDecision",
    "Sample",
    "ServerError",
    "ServerProcess",
    "ServerStartError",
    "ServerUnavailableError",
    "SpeculationStats",
    "SpeculativeConfig",
    "SpeculativeConfigError",
    "SpeculativeMethod",
    "VLLMError",
    "VLLMMetrics",
    "VLLMServer",
    "__version__",
    "free_port",
    "parse_prometheus",
    "report_call",
    "require_vllm",
    "vllm_available",
]

_LAZY = {
    "ChatVLLM": "langchain",
    "ChatVLLMInProcess": "langchain",
    "VLLM": "llama_index",
}


def __getattr__(name: str) -> Any:
    """Import the framework adapters only when asked for (they need the extras)."""
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'tokenlean_vllm' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(f".{module}", __name__), name)
