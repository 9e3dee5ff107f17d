"""LangChain: LLMLinguaCompressor inside a real ContextualCompressionRetriever over an
InMemoryVectorStore with MiniLM embeddings."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pytest
from compress_corpus import CORPUS, QUESTION
from langchain_classic.retrievers import ContextualCompressionRetriever
from langchain_core.documents import Document
from langchain_core.documents.compressor import BaseDocumentCompressor
from langchain_core.embeddings import Embeddings
from langchain_core.vectorstores import InMemoryVectorStore

import tokenlean_core as tl
from tokenlean_compress import CompressWarning, LexicalScorer
from tokenlean_compress.langchain import LLMLinguaCompressor


class MiniLMEmbeddings(Embeddings):
    """all-MiniLM-L6-v2 (sentence-transformers) as LangChain embeddings."""

    def __init__(self, model: Any) -> None:
        self.model = model

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        return [list(map(float, v)) for v in self.model.encode(texts, normalize_embeddings=True)]

    def embed_query(self, text: str) -> list[float]:
        return self.embed_documents([text])[0]


@pytest.fixture(scope="module")
def store(minilm: Any) -> InMemoryVectorStore:
    vs = InMemoryVectorStore(MiniLMEmbeddings(minilm))
    vs.add_documents(
        [
            Document(page_content=t, metadata={"source": f"doc{i}.txt"}, id=f"doc-{i}")
            for i, t in enumerate(CORPUS)
        ]
    )
    return vs


def _check(docs: Sequence[Document], originals: dict[str | None, Document]) -> None:
    for doc in docs:
        original = originals[doc.id]
        meta = dict(doc.metadata)
        figures = meta.pop("tokenlean_compression")
        assert meta == original.metadata
        assert figures["compressed_tokens"] == int(tl.count_tokens(doc.page_content, "gpt-4o-mini"))
        assert figures["original_tokens"] == int(
            tl.count_tokens(original.page_content, "gpt-4o-mini")
        )


@pytest.mark.models
async def test_contextual_compression_retriever(
    store: InMemoryVectorStore, smollm2_scorer: Any
) -> None:
    ledger = tl.Ledger()
    compressor = LLMLinguaCompressor(rate=0.6, scorer=smollm2_scorer, ledger=ledger)
    assert isinstance(compressor, BaseDocumentCompressor)
    base = store.as_retriever(search_kwargs={"k": 4})
    retriever = ContextualCompressionRetriever(base_compressor=compressor, base_retriever=base)
    originals = {d.id: d for d in base.invoke(QUESTION)}
    docs = retriever.invoke(QUESTION)
    assert (
        docs[0].id == "doc-0" and "1887" in docs[0].page_content and "1889" in docs[0].page_content
    )
    _check(docs, originals)
    original = sum(int(tl.count_tokens(d.page_content, "gpt-4o-mini")) for d in originals.values())
    assert sum(int(tl.count_tokens(d.page_content, "gpt-4o-mini")) for d in docs) <= 0.6 * original
    # async twin (memoised scores: same documents, same question) gives the same documents
    adocs = await retriever.ainvoke(QUESTION)
    assert [(d.id, d.page_content) for d in adocs] == [(d.id, d.page_content) for d in docs]
    savings = [r for r in ledger.records() if r.component == "compress"]
    assert len(savings) == 2 and all(r.kind == "saving" for r in savings)


class _Broken:
    name = "broken"

    def score_units(self, docs: Sequence[Sequence[str]], question: str | None) -> list[np.ndarray]:
        raise RuntimeError("no model today")

    def rank_documents(self, docs: Sequence[str], question: str) -> np.ndarray:
        raise RuntimeError("no model today")


def test_failure_returns_the_original_documents(store: InMemoryVectorStore) -> None:
    ledger = tl.Ledger()
    base = store.as_retriever(search_kwargs={"k": 3})
    retriever = ContextualCompressionRetriever(
        base_compressor=LLMLinguaCompressor(scorer=_Broken(), ledger=ledger), base_retriever=base
    )
    with pytest.warns(CompressWarning, match="no model today"):
        docs = retriever.invoke(QUESTION)
    assert docs == base.invoke(QUESTION)
    assert [r.name for r in ledger.records()] == ["failure"]


async def test_lexical_scorer_pipeline_keeps_ids_and_protected_spans() -> None:
    docs = [Document(page_content=t, metadata={"n": i}, id=f"id{i}") for i, t in enumerate(CORPUS)]
    compressor = LLMLinguaCompressor(
        scorer=LexicalScorer(), rate=0.5, reorder=False, ledger=tl.Ledger()
    )
    out = await compressor.acompress_documents(docs, "Where is the Mona Lisa?")
    assert [d.id for d in out] == sorted(d.id for d in out)  # input order kept (reorder=False)
    text = " ".join(d.page_content for d in out)
    assert "https://www.louvre.fr" in text
    assert compressor.compress_documents([], "q") == []
