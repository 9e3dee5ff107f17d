"""LlamaIndex: LLMLinguaPostprocessor inside a real query engine over a real in-memory
VectorStoreIndex (MiniLM embeddings), with MockLLM as the (paid-API) LLM."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pytest
from compress_corpus import CORPUS, QUESTION
from llama_index.core import Settings, VectorStoreIndex
from llama_index.core.base.embeddings.base import BaseEmbedding
from llama_index.core.llms import MockLLM
from llama_index.core.postprocessor.types import BaseNodePostprocessor
from llama_index.core.schema import NodeWithScore, QueryBundle, TextNode
from pydantic import PrivateAttr

import tokenlean_core as tl
from tokenlean_compress import CompressWarning, LexicalScorer
from tokenlean_compress.llama_index import LLMLinguaPostprocessor


class MiniLMEmbedding(BaseEmbedding):
    """all-MiniLM-L6-v2 (sentence-transformers) as a LlamaIndex embedding model."""

    _model: Any = PrivateAttr()

    def __init__(self, model: Any) -> None:
        super().__init__(model_name="all-MiniLM-L6-v2", embed_batch_size=16)
        self._model = model

    def _embed(self, texts: list[str]) -> list[list[float]]:
        return [list(map(float, v)) for v in self._model.encode(texts, normalize_embeddings=True)]

    def _get_query_embedding(self, query: str) -> list[float]:
        return self._embed([query])[0]

    async def _aget_query_embedding(self, query: str) -> list[float]:
        return self._get_query_embedding(query)

    def _get_text_embedding(self, text: str) -> list[float]:
        return self._embed([text])[0]

    def _get_text_embeddings(self, texts: list[str]) -> list[list[float]]:
        return self._embed(texts)


@pytest.fixture(scope="module")
def index(minilm: Any) -> VectorStoreIndex:
    nodes = [
        TextNode(text=t, id_=f"node-{i}", metadata={"source": f"doc{i}.txt", "page": i})
        for i, t in enumerate(CORPUS)
    ]
    return VectorStoreIndex(nodes, embed_model=MiniLMEmbedding(minilm))


def _check_provenance(nodes: Sequence[NodeWithScore], retrieved: dict[str, NodeWithScore]) -> None:
    for out in nodes:
        original = retrieved[out.node.node_id]
        assert out.score == original.score
        meta = dict(out.node.metadata)
        figures = meta.pop("tokenlean_compression")
        assert meta == original.node.metadata  # its own metadata, nothing merged in
        assert figures["original_tokens"] >= figures["compressed_tokens"]
        assert "tokenlean_compression" not in out.node.get_content(metadata_mode="llm")  # type: ignore[arg-type]


@pytest.mark.models
def test_query_engine_with_the_postprocessor(index: VectorStoreIndex, smollm2_scorer: Any) -> None:
    ledger = tl.Ledger()
    post = LLMLinguaPostprocessor(rate=0.6, scorer=smollm2_scorer, ledger=ledger)
    assert isinstance(post, BaseNodePostprocessor)
    retrieved = {
        n.node.node_id: n for n in index.as_retriever(similarity_top_k=4).retrieve(QUESTION)
    }
    engine = index.as_query_engine(similarity_top_k=4, node_postprocessors=[post], llm=MockLLM())
    response = engine.query(QUESTION)
    nodes = response.source_nodes
    assert nodes and len(nodes) <= 4
    _check_provenance(nodes, retrieved)
    assert nodes[0].node.node_id == "node-0"  # the answer passage ranked first
    assert "1887" in nodes[0].node.get_content() and "1889" in nodes[0].node.get_content()
    # the index itself is untouched: compression works on copies
    assert index.docstore.get_node("node-0").get_content() == CORPUS[0]  # type: ignore[union-attr]
    (rec,) = [r for r in ledger.records() if r.component == "compress"]
    original = sum(
        int(tl.count_tokens(n.node.get_content(), "gpt-4o-mini")) for n in retrieved.values()
    )
    compressed = sum(int(tl.count_tokens(n.node.get_content(), "gpt-4o-mini")) for n in nodes)
    assert compressed <= 0.6 * original
    assert rec.usage is not None and rec.usage.input_tokens == original - compressed


@pytest.mark.models
async def test_async_query_engine(index: VectorStoreIndex, smollm2_scorer: Any) -> None:
    post = LLMLinguaPostprocessor(rate=0.6, scorer=smollm2_scorer, ledger=tl.Ledger())
    engine = index.as_query_engine(similarity_top_k=4, node_postprocessors=[post], llm=MockLLM())
    response = await engine.aquery(QUESTION)
    assert response.source_nodes[0].node.node_id == "node-0"
    sync_nodes = post.postprocess_nodes(
        index.as_retriever(similarity_top_k=4).retrieve(QUESTION), query_str=QUESTION
    )
    assert [n.node.get_content() for n in response.source_nodes] == [
        n.node.get_content() for n in sync_nodes
    ]


class _Broken:
    name = "broken"

    def score_units(self, docs: Sequence[Sequence[str]], question: str | None) -> list[np.ndarray]:
        raise RuntimeError("no model today")

    def rank_documents(self, docs: Sequence[str], question: str) -> np.ndarray:
        raise RuntimeError("no model today")


def test_failure_returns_the_original_nodes(index: VectorStoreIndex) -> None:
    ledger = tl.Ledger()
    post = LLMLinguaPostprocessor(scorer=_Broken(), ledger=ledger)
    engine = index.as_query_engine(similarity_top_k=3, node_postprocessors=[post], llm=MockLLM())
    retrieved = index.as_retriever(similarity_top_k=3).retrieve(QUESTION)
    with pytest.warns(CompressWarning, match="no model today"):
        response = engine.query(QUESTION)
    assert [(n.node.node_id, n.node.get_content(), n.score) for n in response.source_nodes] == [
        (n.node.node_id, n.node.get_content(), n.score) for n in retrieved
    ]
    assert [r.name for r in ledger.records()] == ["failure"]


def test_empty_nodes_no_query_and_empty_texts() -> None:
    post = LLMLinguaPostprocessor(scorer=LexicalScorer(), rate=0.5, ledger=tl.Ledger())
    assert post.postprocess_nodes([], query_str=QUESTION) == []
    nodes = [
        NodeWithScore(node=TextNode(text=t, id_=f"n{i}", metadata={"i": i}), score=1.0 - i / 10)
        for i, t in enumerate([*CORPUS, "", "   "])
    ]
    out = post.postprocess_nodes(nodes)  # no query: question-agnostic, no reordering, no dropping
    assert [n.node.node_id for n in out] == [n.node.node_id for n in nodes]
    assert [n.score for n in out] == [n.score for n in nodes]
    assert out[-2].node.get_content() == "" and out[-1].node.get_content() == "   "
    out = post.postprocess_nodes(nodes, QueryBundle(QUESTION))
    assert {n.node.node_id for n in out} <= {n.node.node_id for n in nodes}
    with pytest.raises(TypeError, match="either compressor"):
        LLMLinguaPostprocessor(post.compressor, rate=0.5)


def test_settings_are_not_needed() -> None:
    # the postprocessor never touches the global LlamaIndex Settings (llm/embed model)
    assert isinstance(LLMLinguaPostprocessor(scorer=LexicalScorer()).class_name(), str)
    assert Settings is not None
