"""The core's demo: real LangChain and LlamaIndex pipelines on their frameworks' own testing models,
fed into one tokenlean ledger. Runs offline in a few seconds."""

from __future__ import annotations

from pathlib import Path

from tokenlean_core import JSONLSink, Ledger, MemorySink, count_tokens, scope

QUESTIONS = [
    "How do I reset my password?",
    "Can I change the billing address on an invoice that was already issued?",
    "Which plans include single sign-on?",
]
CONTEXT = (
    "Acme Cloud support handbook. Passwords are reset from Settings > Security. Invoices can be "
    "re-issued with a new billing address within 30 days. Single sign-on is part of the Business "
    "and Enterprise plans."
)


def _langchain(ledger: Ledger) -> None:
    from langchain_core.language_models import GenericFakeChatModel
    from langchain_core.messages import AIMessage
    from langchain_core.output_parsers import StrOutputParser
    from langchain_core.prompts import ChatPromptTemplate

    from tokenlean_core.langchain import TokenleanCallbackHandler

    model = "gpt-4o-mini"
    prompt = ChatPromptTemplate.from_messages(
        [("system", "Answer from the context.\n\n{context}"), ("user", "{question}")]
    )
    answers = []
    for q in QUESTIONS:
        text = f"Per the handbook: {CONTEXT.split('. ')[1 + QUESTIONS.index(q)]}."
        n_in = int(count_tokens(prompt.format_messages(context=CONTEXT, question=q), model))
        answers.append(
            AIMessage(
                content=text,
                usage_metadata={
                    "input_tokens": n_in,
                    "output_tokens": int(count_tokens(text, model)),
                    "total_tokens": n_in + int(count_tokens(text, model)),
                },
                response_metadata={"model_name": model},
            )
        )
    llm = GenericFakeChatModel(messages=iter(answers))
    chain = prompt | llm | StrOutputParser()
    handler = TokenleanCallbackHandler(ledger, default_model=model)
    with scope(tenant="acme", session="lc-demo", task="support"):
        for q in QUESTIONS[:2]:
            with scope(request=True):
                chain.invoke({"context": CONTEXT, "question": q}, config={"callbacks": [handler]})
                ledger.record_outcome(True)
        with scope(request=True):  # streamed: counted at the end, once
            "".join(
                chain.stream(
                    {"context": CONTEXT, "question": QUESTIONS[2]}, config={"callbacks": [handler]}
                )
            )
            ledger.record_outcome(True)


def _llama_index(ledger: Ledger) -> None:
    from llama_index.core import Document, Settings, VectorStoreIndex
    from llama_index.core.embeddings import MockEmbedding
    from llama_index.core.llms import MockLLM

    from tokenlean_core.llama_index import TokenleanEventHandler

    Settings.embed_model = MockEmbedding(embed_dim=16)
    Settings.llm = MockLLM(max_tokens=32)
    handler = TokenleanEventHandler.attach(ledger, default_model="gpt-4o-mini")
    try:
        docs = [Document(text=s) for s in CONTEXT.split(". ")]
        engine = VectorStoreIndex.from_documents(docs).as_query_engine(similarity_top_k=2)
        with scope(tenant="acme", session="li-demo", task="support"):
            for q in QUESTIONS:
                with scope(request=True):
                    engine.query(q)
                    ledger.record_outcome(True)
    finally:
        handler.detach()


def run_demo(ledger_path: Path | None = None) -> str:
    """Run both pipelines and return the ledger's report as text."""
    sinks: list[MemorySink | JSONLSink] = [MemorySink()]
    if ledger_path is not None:
        sinks.append(JSONLSink(ledger_path))
    ledger = Ledger(sinks)
    _langchain(ledger)
    _llama_index(ledger)
    ledger.close()
    header = (
        "tokenlean demo: a LangChain chain (GenericFakeChatModel) and a LlamaIndex query engine "
        "(MockLLM) recorded in one ledger.\nComponents that save tokens (cache, memory, compress, "
        "router) add their savings to this same report.\n"
    )
    return header + "\n" + ledger.report().table()
