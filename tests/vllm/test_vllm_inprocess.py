"""The in-process (vllm.LLM) guard: clear errors where vLLM or a GPU is missing."""

from __future__ import annotations

import types
from typing import Any

import pytest

from tokenlean_core import MissingDependencyError
from tokenlean_vllm import InProcessVLLM, VLLMError, require_vllm, vllm_available
from tokenlean_vllm.inprocess import metrics_from_reader


def _importer(*, vllm: bool, cuda: bool) -> Any:
    def imp(name: str) -> Any:
        if name == "vllm":
            if not vllm:
                raise ImportError("No module named 'vllm'")
            return types.SimpleNamespace(__name__="vllm")
        if name == "torch":
            return types.SimpleNamespace(cuda=types.SimpleNamespace(is_available=lambda: cuda))
        raise ImportError(name)

    return imp


def test_missing_vllm_names_the_extra() -> None:
    ok, why = vllm_available(_importer(vllm=False, cuda=False))
    assert not ok and "not importable" in why
    with pytest.raises(MissingDependencyError, match=r"tokenlean-vllm\[inprocess\]"):
        require_vllm(_importer(vllm=False, cuda=False))
    with pytest.raises(MissingDependencyError):
        InProcessVLLM("m", importer=_importer(vllm=False, cuda=False))


def test_vllm_without_gpu_points_to_the_server() -> None:
    with pytest.raises(VLLMError, match=r"needs a GPU.*VLLMServer"):
        require_vllm(_importer(vllm=True, cuda=False))


def test_vllm_with_gpu_passes_the_guard() -> None:
    assert vllm_available(_importer(vllm=True, cuda=True)) == (True, "ok")
    assert require_vllm(_importer(vllm=True, cuda=True)).__name__ == "vllm"


def test_this_machine_is_detected_honestly() -> None:
    ok, why = vllm_available()
    assert not ok  # no machine of this project has a GPU
    assert why


def test_reader_metrics_conversion() -> None:
    # shapes of vllm.v1.metrics.reader (vLLM 0.33.0): Counter/Gauge(name, labels, value), Vector(values)
    items = [
        types.SimpleNamespace(name="vllm:num_requests_running", labels={}, value=2.0),
        types.SimpleNamespace(name="vllm:spec_decode_num_drafts", labels={}, value=10),
        types.SimpleNamespace(name="vllm:spec_decode_num_draft_tokens", labels={}, value=30),
        types.SimpleNamespace(name="vllm:spec_decode_num_accepted_tokens", labels={}, value=12),
        types.SimpleNamespace(
            name="vllm:spec_decode_num_accepted_tokens_per_pos", labels={}, values=[6, 4, 2]
        ),
    ]
    m = metrics_from_reader(items)
    assert m.requests_running == 2 and m.has_spec_decode
    assert (m.spec_drafts, m.spec_draft_tokens, m.spec_accepted_tokens) == (10, 30, 12)
    assert m.accepted_per_position == (6, 4, 2)
