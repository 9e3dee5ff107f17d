"""The summary layer carries only what the structured state lacks: the summariser is given the
state, and its output loses prompt echoes, boilerplate and sentences the state already says.

The summariser is LangChain's ``GenericFakeChatModel`` (the stand-in for a paid chat model) behind
the real LangChain adapter; counts use the real tokenizer."""

from __future__ import annotations

from typing import Any

from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.language_models import GenericFakeChatModel
from langchain_core.messages import AIMessage, BaseMessage

from tokenlean_core import Ledger, count_tokens, normalize_messages
from tokenlean_memory import (
    MemoryConfig,
    MemoryEngine,
    MemoryRecord,
    Summarizer,
    SummarySegment,
)
from tokenlean_memory.langchain import LangChainTextModel
from tokenlean_memory.summarize import drop_covered, split_sentences, state_facts

MODEL = "gpt-4o"
TURNS = [
    ("user", "I need a table for 4 in Sacramento on March 3rd at 7 pm."),
    ("assistant", "Sure. Any cuisine in mind?"),
    ("user", "Italian please. One of us is vegan, and we need wheelchair access."),
    ("assistant", "Olive Garden on J Street has vegan dishes and step-free entry."),
    ("user", "Sounds good. Also remind me to send the invite to Dana afterwards."),
    ("assistant", "Noted. Shall I book Olive Garden for 4 at 7 pm on March 3rd?"),
    ("user", "Yes, book it."),
    ("assistant", "Booked. Confirmation number R-5521."),
    ("user", "What's the parking like there?"),
    ("assistant", "There is a garage on 10th Street."),
]
HISTORY = [{"role": r, "content": c} for r, c in TURNS]


class _Prompts(BaseCallbackHandler):
    """Records what the chat model was asked (a real LangChain callback)."""

    def __init__(self) -> None:
        self.prompts: list[str] = []

    def on_chat_model_start(
        self, serialized: dict[str, Any], messages: list[list[BaseMessage]], **kwargs: Any
    ) -> None:
        self.prompts.extend(m.text for batch in messages for m in batch)


def _engine(replies: list[str], seen: _Prompts | None = None, **cfg: Any) -> MemoryEngine:
    chat = GenericFakeChatModel(messages=iter([AIMessage(r) for r in replies]))
    if seen is not None:
        chat = chat.with_config(callbacks=[seen])  # type: ignore[assignment]
    config = MemoryConfig(
        budget_tokens=90,
        model=MODEL,
        summary_max_tokens=cfg.pop("summary_max_tokens", 30),
        state_max_tokens=40,
        max_recent_messages=2,
        **cfg,
    )
    return MemoryEngine(config, summarizer=LangChainTextModel(chat), ledger=Ledger())


def test_summariser_gets_the_state_and_keeps_only_what_it_lacks() -> None:
    seen = _Prompts()
    reply = (
        "Italian at Olive Garden in Sacramento on March 3rd at 7 pm. "
        "One guest needs wheelchair access. I am happy to help you today!"
    )
    engine = _engine([reply], seen)
    rec = engine.update(HISTORY, MemoryRecord())
    assert len(seen.prompts) == 1
    prompt = seen.prompts[0]
    facts = prompt.split("Facts already recorded", 1)[1].split("Notes so far", 1)[0]
    # the model was told what the state already holds
    for value in ("Olive Garden", "Sacramento", "March 3rd", "Italian"):
        assert value in facts
    # the sentence the state covers and the ungrounded pleasantry are gone; the constraint stays
    assert [s.text for s in rec.summary] == ["One guest needs wheelchair access."]
    assert rec.summarized_upto == len(HISTORY) - 2
    ctx = engine.build(HISTORY, rec)
    assert "One guest needs wheelchair access." in ctx.memory_text
    assert ctx.tokens <= 90


async def test_async_update_filters_the_same_way() -> None:
    reply = "Olive Garden, Sacramento, March 3rd, 7 pm, vegan, Italian. Dana gets the invite."
    engine = _engine([reply])
    rec = await engine.aupdate(HISTORY, MemoryRecord())
    assert rec.summary_text == "Dana gets the invite."


def test_nothing_new_leaves_an_empty_segment_and_no_resummarising() -> None:
    engine = _engine(["NONE", "Parking: the garage on 10th Street, for 4."])
    rec = engine.update(HISTORY, MemoryRecord())
    assert len(rec.summary) == 1 and rec.summary[0].text == ""
    assert rec.summary_text == "" and rec.summarized_upto == len(HISTORY) - 2
    ctx = engine.build(HISTORY, rec)
    assert "Summary:" not in ctx.memory_text
    # the same history again: the evicted turns are not summarised a second time
    again = engine.update(HISTORY, rec)
    assert again.summary == rec.summary


def test_prompt_echo_is_cut_off() -> None:
    reply = (
        "They want wheelchair access.\n\nNew messages:\nuser: I need a table for 4 in Sacramento"
    )
    rec = _engine([reply]).update(HISTORY, MemoryRecord())
    assert rec.summary_text == "They want wheelchair access."
    rec = _engine(["user: Italian please. One of us is vegan."]).update(HISTORY, MemoryRecord())
    assert rec.summary_text == ""  # a copied transcript line is not a note


def test_new_segment_does_not_repeat_the_old_one() -> None:
    s = Summarizer(LangChainTextModel(GenericFakeChatModel(messages=iter([]))))
    old = "One guest needs wheelchair access."
    evicted = normalize_messages(HISTORY[:8])
    out = s.postprocess(
        "One guest needs wheelchair access. Remind the user to invite Dana.",
        summary=old,
        messages=evicted,
    )
    assert out == "Remind the user to invite Dana."
    # with both filters off the output is kept as written (minus the echo)
    raw = Summarizer(s.model, novel_only=False, grounded=False)
    assert raw.postprocess(old + " Hello there!", summary=old, messages=evicted) == "Hello there!"


def test_extension_is_capped_to_the_summary_budget() -> None:
    long_reply = " ".join(
        f"Guest {i} needs wheelchair access near the vegan kitchen of Olive Garden."
        for i in range(30)
    )
    engine = _engine([long_reply], summary_max_tokens=20)
    rec = engine.update(HISTORY, MemoryRecord())
    assert rec.summary_text
    assert int(count_tokens(rec.summary_text, MODEL)) <= 20


def test_sentences_the_context_already_says_are_not_rendered() -> None:
    engine = _engine([])
    engine.summarizer = None
    rec = engine.update(HISTORY, MemoryRecord())  # the state only
    rec = rec.model_copy(
        update={
            "summary": [
                SummarySegment(
                    start=0,
                    end=8,
                    text="The garage is on 10th Street. Dana gets the invite afterwards.",
                )
            ],
            "summarized_upto": 8,
        }
    )
    ctx = engine.build(HISTORY, rec)
    # the window (the last two messages) already says the first sentence
    assert "garage" in " ".join(m.content for m in ctx.messages[1:])
    assert "Summary: Dana gets the invite afterwards." in ctx.memory_text
    assert "The garage is on 10th Street." not in ctx.memory_text


def test_helpers() -> None:
    assert split_sentences("A b. C d!\nE f") == ["A b.", "C d!", "E f"]
    assert drop_covered(
        "Olive Garden. Wheelchair access.", {"olive garden", "olive", "garden"}
    ) == ("Wheelchair access.")
    rec = MemoryEngine(MemoryConfig(model=MODEL), ledger=Ledger()).update(HISTORY, MemoryRecord())
    facts = state_facts(rec.state)
    assert "Olive Garden" in facts and "R-5521" in facts
