"""The framework-agnostic memory engine.

Each turn, :meth:`MemoryEngine.build` picks what the model sees from four layers, inside a token
budget counted with ``tokenlean_core.count_tokens`` (system prompt and tool schemas included):

1. the rolling **summary** of evicted turns (extended incrementally by :meth:`MemoryEngine.update`);
2. the **structured state** (slots, entities, decisions, tasks, tool results), rendered compactly;
3. the **recent turns** verbatim, cut only between whole blocks (an assistant message with tool
   calls always travels with its tool results) and always including the latest user message;
4. **recall** of older turns that share entities (or, with an embedder, meaning) with the current
   message.

The engine never stores or deletes history: it reads the full history it is given and returns
indices into it, so adapters hand back the caller's own message objects.
"""

from __future__ import annotations

import logging
import math
import time
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from tokenlean_core import Ledger, Message, count_tokens, get_ledger, normalize_messages

from .extract import LexicalExtractor, LLMStateExtractor, StateExtractor, key_terms
from .models import TextModel
from .schema import MemoryConfig, MemoryRecord, MemoryState, StateSchema, SummarySegment
from .summarize import Summarizer, drop_covered

__all__ = ["Embedder", "MemoryContext", "MemoryEngine", "MemoryWarning", "split_blocks"]

logger = logging.getLogger("tokenlean.memory")

Embedder = Callable[[Sequence[str]], Sequence[Sequence[float]]]
"""Maps texts to vectors (e.g. :class:`tokenlean_memory.embeddings.MiniLMEmbedder`)."""


class MemoryWarning(UserWarning):
    """The memory degraded (a summariser or extractor failed, or the budget cannot be met)."""


@dataclass
class MemoryContext:
    """What the model gets this turn, and the figures behind it."""

    messages: list[Message]
    """The context as neutral messages: the system message (if any) first, then recent turns."""
    indices: list[int]
    """History indices of the verbatim turns, in order (adapters map them to their own objects)."""
    system_text: str | None
    """The system message: the caller's system prompt followed by the memory block."""
    memory_text: str
    tokens: int
    full_tokens: int
    budget: int
    window_start: int
    recalled: list[int] = field(default_factory=list)
    over_budget: bool = False
    uses_memory: bool = False
    replaces_index: int | None = None
    """Index of a history system message the combined system message replaces."""

    @property
    def saved_tokens(self) -> int:
        return max(0, self.full_tokens - self.tokens)


def split_blocks(msgs: Sequence[Message], start: int = 0) -> tuple[list[tuple[int, int]], set[int]]:
    """Split ``msgs[start:]`` into atomic blocks ``(begin, end)``; return them and the orphans.

    An assistant message with tool calls forms one block with the tool results that follow it; a
    tool result that does not follow its call is an orphan and is never sent.
    """
    blocks: list[tuple[int, int]] = []
    orphans: set[int] = set()
    i, n = start, len(msgs)
    while i < n:
        m = msgs[i]
        if m.role == "assistant" and m.tool_calls:
            ids = {c.id for c in m.tool_calls if c.id}
            j = i + 1
            while j < n and msgs[j].role == "tool" and (not ids or msgs[j].tool_call_id in ids):
                j += 1
            blocks.append((i, j))
            i = j
        elif m.role in ("tool", "function"):
            orphans.add(i)
            i += 1
        else:
            blocks.append((i, i + 1))
            i += 1
    return blocks, orphans


@dataclass
class _Plan:
    selected: list[int]  # block ids, ascending
    window_start: int
    mandatory: set[int]
    required: set[int]  # the irreducible part: the last block and the latest user message
    summary: list[str]
    state_cap: int


class MemoryEngine:
    """Builds budgeted contexts and keeps the summary and state up to date.

    Args:
        config: budget and caps (:class:`MemoryConfig`).
        summarizer: a :class:`Summarizer` or any :class:`TextModel` (wrapped in one). Without it the
            memory keeps state and recent turns only.
        extractor: the state extractor run on every new message (default :class:`LexicalExtractor`).
        schema: the application's slots and their possible values (:class:`StateSchema`), given
            to the default extractor so categorical values are found in any casing.
        llm_extractor: optional second extractor (a :class:`TextModel` is wrapped in
            :class:`LLMStateExtractor`); its findings merge into the same validated state.
        embedder: optional embedding function for recall by similarity.
        ledger: where savings are recorded (default: ``tokenlean_core.get_ledger()``).
    """

    def __init__(
        self,
        config: MemoryConfig | None = None,
        *,
        summarizer: Summarizer | TextModel | None = None,
        extractor: StateExtractor | None = None,
        llm_extractor: StateExtractor | TextModel | None = None,
        embedder: Embedder | None = None,
        ledger: Ledger | None = None,
        schema: StateSchema | None = None,
    ) -> None:
        self.config = config or MemoryConfig()
        if schema is not None and extractor is not None:
            raise ValueError(
                "pass schema= to your own extractor (e.g. LexicalExtractor(schema=...)), "
                "not beside it"
            )
        if summarizer is not None and not isinstance(summarizer, Summarizer):
            summarizer = Summarizer(summarizer)
        self.summarizer: Summarizer | None = summarizer
        self.extractor: StateExtractor = extractor or LexicalExtractor(schema=schema)
        if llm_extractor is not None and not isinstance(llm_extractor, StateExtractor):
            llm_extractor = LLMStateExtractor(llm_extractor)
        self.llm_extractor: StateExtractor | None = llm_extractor
        self.embedder = embedder
        self._ledger = ledger
        self._lexical = LexicalExtractor()
        self._cost_cache: dict[Message, int] = {}
        self._terms_cache: dict[str, frozenset[str]] = {}
        self._vec_cache: dict[str, list[float]] = {}

    # ------------------------------------------------------------------ counting
    @property
    def ledger(self) -> Ledger:
        return self._ledger or get_ledger()

    def count(self, messages: Sequence[Message], tools: Sequence[Mapping[str, Any]] | None) -> int:
        """Exact prompt tokens of ``messages`` (+ tool schemas) for the configured model."""
        return int(count_tokens(list(messages), self.config.model, tools=tools or None))

    def _cost(self, m: Message) -> int:
        c = self._cost_cache.get(m)
        if c is None:
            c = self.count([m], None) - self.count([], None)
            if len(self._cost_cache) > 50_000:
                self._cost_cache.clear()
            self._cost_cache[m] = c
        return c

    def _text_cost(self, text: str) -> int:
        return int(count_tokens(text, self.config.model))

    # ------------------------------------------------------------------ rendering
    def _summary_lines(
        self, record: MemoryRecord, cap: int, covered: frozenset[str] = frozenset()
    ) -> list[str]:
        """The newest summary segments within ``cap`` tokens; if even the newest does not fit, its
        head cut to the cap (the summary is never silently dropped for being long).

        Sentences whose content words are all in ``covered`` (the rendered state and the verbatim
        turns of this context) are left out: the context says them already.
        """
        out: list[str] = []
        used = 0
        for seg in reversed(record.summary):
            text = drop_covered(seg.text, covered) if covered and seg.text else seg.text
            if not text:
                continue
            c = self._text_cost(text) + 1
            if used + c > cap:
                if not out and cap >= 8:
                    out.append(self._clip(text, cap - 1))
                break
            out.append(text)
            used += c
        return list(reversed(out))

    def _clip(self, text: str, cap: int) -> str:
        """``text`` cut (at a word boundary where possible) to at most ``cap`` tokens."""
        if self._text_cost(text) <= cap:
            return text
        cut = text[: max(1, int(len(text) * cap / max(1, self._text_cost(text))))]
        while cut and self._text_cost(cut + " ...") > cap:
            cut = cut[: int(len(cut) * 0.9)]
        head = cut.rsplit(" ", 1)[0] if " " in cut else cut
        return head + " ..." if head else ""

    def _state_items(
        self, state: MemoryState, visible: str, now: int | None = None
    ) -> list[tuple[str, str]]:
        """(group, item) in priority order; items already visible verbatim are skipped.

        Slots first, then open tasks, decisions, the latest tool results, then entities: the ones
        the user stated, accepted or repeated before those offered once, newest first. A schema
        slot's value superseded by a newer confirmed one is left out.
        """
        cfg = self.config
        items: list[tuple[str, str]] = []
        for k, v in reversed(list(state.slots.items())):
            if v.lower() not in visible:
                items.append(("slots", f"{k}={v}"))
        for t in reversed(state.open_tasks):
            items.append(("open tasks", t))
        for d in reversed(state.decisions):
            items.append(("decisions", d))
        for tr in reversed(state.tool_results[-3:]):
            if tr.content.lower() not in visible:
                content = tr.content[: cfg.tool_result_max_chars]
                items.append(("tool results", f"{tr.name} -> {content}"))
        # stated, accepted or mentioned twice outranks offered once; then the newest first
        ents = sorted(
            state.entities,
            key=lambda e: (e.confirmed or e.mentions > 1, e.last_index, e.mentions),
            reverse=True,
        )
        filled: set[str] = set()
        for e in ents:
            if e.slot is not None and e.confirmed:
                if e.slot in filled:
                    continue  # an older value of a slot the user has since set again
                filled.add(e.slot)
            weak = not e.confirmed and e.mentions < 2
            if not e.confirmed and not cfg.unconfirmed_entities:
                continue
            age_cap = cfg.offered_max_age
            if weak and age_cap is not None and now is not None and now - e.last_index > age_cap:
                continue
            if e.value.lower() not in visible:
                items.append((e.kind, e.value))
        return items

    def _render_state(self, items: Sequence[tuple[str, str]]) -> str:
        if self.config.state_style == "compact":
            return "; ".join(item for _, item in items)
        groups: dict[str, list[str]] = {}
        for g, item in items:
            groups.setdefault(g, []).append(item)
        return "\n".join(f"{g}: " + "; ".join(v) for g, v in groups.items())

    def _fit_state(
        self, state: MemoryState, visible: str, cap: int, now: int | None = None
    ) -> list[tuple[str, str]]:
        compact = self.config.state_style == "compact"
        chosen: list[tuple[str, str]] = []
        used = 0
        groups: set[str] = set()
        for g, item in self._state_items(state, visible, now):
            low = item.lower()
            if compact and any(low in c.lower() for _, c in chosen):
                continue  # already said by a longer value ("Sacramento" in "Sacramento, CA")
            label = 0 if compact or g in groups else self._text_cost(g) + 2
            c = self._text_cost(item) + 1 + label
            inner = [x for x in chosen if x[1].lower() in low] if compact else []
            freed = sum(self._text_cost(x[1]) + 1 for x in inner)
            if used + c - freed > cap:
                continue
            chosen = [x for x in chosen if x not in inner]  # this longer value says them too
            used -= freed
            chosen.append((g, item))
            groups.add(g)
            used += c
        return chosen

    def _memory_text(
        self, summary: Sequence[str], state: Sequence[tuple[str, str]], recalls: Sequence[str]
    ) -> str:
        if not summary and not state and not recalls:
            return ""
        parts = [self.config.memory_header]
        if state and self.config.state_style == "compact":
            parts[0] += " " + self._render_state(state)
        if summary:
            parts.append("Summary: " + " ".join(summary))
        if state and self.config.state_style != "compact":
            parts.append(self._render_state(state))
        if recalls:
            parts.append("Earlier turns relevant now:\n" + "\n".join(recalls))
        return "\n".join(parts)

    @staticmethod
    def _system_text(sys_parts: Sequence[str], memory: str) -> str | None:
        parts = [p for p in sys_parts if p] + ([memory] if memory else [])
        return "\n\n".join(parts) if parts else None

    # ------------------------------------------------------------------ recall
    def _terms(self, text: str) -> frozenset[str]:
        t = self._terms_cache.get(text)
        if t is None:
            t = frozenset(key_terms(text, self._lexical))
            if len(self._terms_cache) > 50_000:
                self._terms_cache.clear()
            self._terms_cache[text] = t
        return t

    def _entity_terms(self, text: str) -> frozenset[str]:
        return frozenset(e.value.lower() for e in self._lexical.entities(text))

    def _vectors(self, texts: Sequence[str]) -> list[list[float]]:
        assert self.embedder is not None
        missing = [t for t in dict.fromkeys(texts) if t not in self._vec_cache]
        if missing:
            for t, v in zip(missing, self.embedder(missing), strict=True):
                self._vec_cache[t] = [float(x) for x in v]
        return [self._vec_cache[t] for t in texts]

    @staticmethod
    def _cos(a: Sequence[float], b: Sequence[float]) -> float:
        num = sum(x * y for x, y in zip(a, b, strict=False))
        den = math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b))
        return num / den if den else 0.0

    def _recall_candidates(self, msgs: Sequence[Message], upto: int, query: str) -> list[int]:
        cfg = self.config
        if cfg.recall_k == 0 or not query or upto <= 0:
            return []
        q = self._terms(query)
        cands = [i for i in range(upto) if msgs[i].content and msgs[i].role != "system"]
        if not cands:
            return []
        scores: dict[int, float] = {}
        q_ents = self._entity_terms(query)
        df: dict[str, int] = {}
        for i in cands:
            for t in q & self._terms(msgs[i].content):
                df[t] = df.get(t, 0) + 1
        rare = max(2, len(cands) // 20)
        for i in cands:
            terms = self._terms(msgs[i].content)
            shared = q & terms
            # a shared entity (date, amount, name, ...) or a word rare in the conversation weighs
            # two shared common words
            overlap = len(shared) + len(q_ents & terms)
            overlap += sum(1 for t in shared - q_ents if df.get(t, 0) <= rare)
            if overlap >= cfg.recall_min_overlap:
                scores[i] = float(overlap)
        if self.embedder is not None:
            try:
                vecs = self._vectors([query] + [msgs[i].content for i in cands])
            except Exception as exc:  # an optional layer must not break the turn
                logger.warning("recall embedding failed (%s); using entity overlap only", exc)
            else:
                for i, v in zip(cands, vecs[1:], strict=True):
                    sim = self._cos(vecs[0], v)
                    if sim >= cfg.recall_min_similarity:
                        scores[i] = scores.get(i, 0.0) + 1.0 + sim
        ranked = sorted(scores, key=lambda i: (scores[i], i), reverse=True)
        return ranked[: cfg.recall_k]

    def _recall_line(self, msgs: Sequence[Message], i: int) -> str:
        m = msgs[i]
        text = self._clip(" ".join(m.content.split()), self.config.recall_max_tokens)
        return f"- ({m.role}, message {i}) {text}"

    # ------------------------------------------------------------------ build
    def build(
        self,
        history: Iterable[Any],
        record: MemoryRecord | None = None,
        *,
        system: str | None = None,
        tools: Sequence[Mapping[str, Any]] | None = None,
        query: str | None = None,
        prefix: Iterable[Any] | None = None,
        record_saving: bool | None = None,
    ) -> MemoryContext:
        """The context for this turn (no model calls, no I/O).

        ``history`` is the full history (LangChain, LlamaIndex, OpenAI-dict or core messages);
        ``system`` a system prompt not in the history; ``tools`` the OpenAI-format tool schemas the
        model will get; ``query`` the text recall looks for (default: the latest user message);
        ``prefix`` messages the caller sends ahead of the memory itself (e.g. a chat engine's
        system prompt): counted in the budget but not returned.
        """
        msgs = normalize_messages(history)
        pre = normalize_messages(prefix) if prefix is not None else []
        record = record or MemoryRecord()
        cfg = self.config
        budget = cfg.budget_tokens
        sys_parts: list[str] = [system] if system else []
        body_start = 0
        replaces: int | None = None
        if msgs and msgs[0].role in ("system", "developer"):
            sys_parts.append(msgs[0].content)
            body_start, replaces = 1, 0
        blocks, orphans = split_blocks(msgs, body_start)
        valid = [i for b in blocks for i in range(*b)]

        def assemble(sel_blocks: Sequence[int], memory: str) -> tuple[list[Message], list[int]]:
            idx = [i for b in sorted(sel_blocks) for i in range(*blocks[b])]
            out: list[Message] = list(pre)
            st = self._system_text(sys_parts, memory)
            if st is not None:
                out.append(Message(role="system", content=st))
            out.extend(msgs[i] for i in idx)
            return out, idx

        full_msgs, full_idx = assemble(range(len(blocks)), "")
        full_tokens = self.count(full_msgs, tools)

        def whole() -> MemoryContext:
            ctx = MemoryContext(
                messages=full_msgs[len(pre) :],
                indices=full_idx,
                system_text=self._system_text(sys_parts, ""),
                memory_text="",
                tokens=full_tokens,
                full_tokens=full_tokens,
                budget=budget,
                window_start=full_idx[0] if full_idx else len(msgs),
                replaces_index=replaces,
            )
            self._record(ctx, record, record_saving)
            return ctx

        if full_tokens <= budget and not cfg.compact_under_budget:
            return whole()

        plan = self._plan(msgs, blocks, record, sys_parts, tools, pre)
        window_text = " ".join(msgs[i].content for b in plan.selected for i in range(*blocks[b]))
        visible = window_text.lower()
        summary = list(plan.summary)
        state = self._fit_state(record.state, visible, plan.state_cap, len(msgs))
        latest_user = next((i for i in reversed(valid) if msgs[i].role == "user"), None)
        q = query if query is not None else (msgs[latest_user].content if latest_user else "")
        selected = list(plan.selected)
        recalls: list[str] = []
        recalled: list[int] = []
        memory = self._memory_text(summary, state, recalls)
        # grow the window into the room the de-duplicated state freed
        sel_set = set(selected)
        first = len(blocks)
        while first - 1 in sel_set:
            first -= 1
        grow = range(first - 1, -1, -1) if cfg.max_recent_messages is None else range(0)
        for b in grow:
            if b in sel_set:
                continue
            trial, _ = assemble([*selected, b], memory)
            if self.count(trial, tools) > budget:
                break
            selected.append(b)
            sel_set.add(b)
        window_start = self._window_start(blocks, sel_set, plan.mandatory, len(msgs))
        # recall outranks the oldest turns of the window: those are recent, not relevant
        for i in self._recall_candidates(msgs, window_start, q):
            if i in orphans or any(i in range(*blocks[b]) for b in selected):
                continue
            line = self._recall_line(msgs, i)
            trial_mem = self._memory_text(summary, state, [*recalls, line])
            trial_sel = list(selected)
            trial, _ = assemble(trial_sel, trial_mem)
            while self.count(trial, tools) > budget:
                movable = [b for b in trial_sel if b not in plan.mandatory]
                if not movable:
                    break
                trial_sel.remove(min(movable))
                trial, _ = assemble(trial_sel, trial_mem)
            if self.count(trial, tools) <= budget:
                selected = trial_sel
                recalls.append(line)
                recalled.append(i)
                memory = trial_mem
        out, idx = assemble(selected, memory)
        tokens = self.count(out, tools)
        # exact fix-up: the estimates above can be off by a few tokens for some tokenizers
        while tokens > budget:
            if recalls:
                recalls.pop()
                recalled.pop()
            elif [b for b in selected if b not in plan.required]:
                oldest = min(b for b in selected if b not in plan.required)
                selected.remove(oldest)
            elif summary:
                summary = summary[1:]
            elif state:
                state = state[:-1]
            else:
                break
            memory = self._memory_text(summary, state, recalls)
            out, idx = assemble(selected, memory)
            tokens = self.count(out, tools)
        if full_tokens <= budget and full_tokens <= tokens:
            return whole()  # compact_under_budget, and the memory would not be smaller
        over = tokens > budget
        if over:
            warnings.warn(
                f"memory budget of {budget} tokens cannot hold the system prompt, tool schemas and "
                f"latest turn ({tokens} tokens); sending them anyway, raise budget_tokens",
                MemoryWarning,
                stacklevel=2,
            )
        ctx = MemoryContext(
            messages=out[len(pre) :],
            indices=idx,
            system_text=self._system_text(sys_parts, memory),
            memory_text=memory,
            tokens=tokens,
            full_tokens=full_tokens,
            budget=budget,
            window_start=self._window_start(blocks, set(selected), plan.mandatory, len(msgs)),
            recalled=recalled,
            over_budget=over,
            uses_memory=bool(memory),
            replaces_index=replaces,
        )
        self._record(ctx, record, record_saving)
        return ctx

    async def abuild(
        self,
        history: Iterable[Any],
        record: MemoryRecord | None = None,
        *,
        system: str | None = None,
        tools: Sequence[Mapping[str, Any]] | None = None,
        query: str | None = None,
        prefix: Iterable[Any] | None = None,
        record_saving: bool | None = None,
    ) -> MemoryContext:
        """Async twin of :meth:`build` (building is CPU-only: counting and selection, no I/O)."""
        return self.build(
            history,
            record,
            system=system,
            tools=tools,
            query=query,
            prefix=prefix,
            record_saving=record_saving,
        )

    @staticmethod
    def _window_start(
        blocks: Sequence[tuple[int, int]], selected: set[int], mandatory: set[int], n: int
    ) -> int:
        """First history index of the contiguous run of selected blocks that ends the history."""
        start = n
        for b in range(len(blocks) - 1, -1, -1):
            if b not in selected:
                break
            start = blocks[b][0]
        return start

    def _plan(
        self,
        msgs: Sequence[Message],
        blocks: Sequence[tuple[int, int]],
        record: MemoryRecord,
        sys_parts: Sequence[str],
        tools: Sequence[Mapping[str, Any]] | None,
        pre: Sequence[Message] = (),
    ) -> _Plan:
        """Pick the mandatory blocks and the longest recent run that fits beside the memory."""
        cfg = self.config
        mandatory: set[int] = set()
        if blocks:
            mandatory.add(len(blocks) - 1)
        latest_user = next(
            (b for b in range(len(blocks) - 1, -1, -1) if msgs[blocks[b][0]].role == "user"), None
        )
        if latest_user is not None:
            mandatory.add(latest_user)
        required = set(mandatory)

        def cost_of(bl: int) -> int:
            return sum(self._cost(msgs[i]) for i in range(*blocks[bl]))

        base_st = self._system_text(sys_parts, "")
        base_msgs = [*pre, Message(role="system", content=base_st)] if base_st else list(pre)
        base = self.count(base_msgs, tools)
        used = base + sum(cost_of(b) for b in mandatory)
        # the last few messages come before the memory layers (the user answers them)
        n_msgs = sum(blocks[b][1] - blocks[b][0] for b in mandatory)
        for b in range(len(blocks) - 1, -1, -1):
            if n_msgs >= cfg.min_recent_messages:
                break
            if b in mandatory:
                continue
            c = cost_of(b)
            if used + c > cfg.budget_tokens:
                break
            mandatory.add(b)
            used += c
            n_msgs += blocks[b][1] - blocks[b][0]
        visible = " ".join(msgs[i].content for b in mandatory for i in range(*blocks[b])).lower()
        room = max(0, cfg.budget_tokens - used - self._text_cost(cfg.memory_header) - 4)
        state_cap = min(cfg.state_max_tokens, room)
        state = self._fit_state(record.state, visible, state_cap, len(msgs))
        rendered = self._render_state(state) if state else ""
        state_cost = self._text_cost(rendered) if state else 0
        covered = self._terms(visible) | self._terms(rendered) if record.summary else frozenset()
        summary = self._summary_lines(
            record, min(cfg.summary_max_tokens, room - state_cost), covered
        )
        memory = self._memory_text(summary, state, [])
        st = self._system_text(sys_parts, memory)
        fixed = self.count([*pre, Message(role="system", content=st)] if st else list(pre), tools)
        used = fixed + sum(cost_of(b) for b in mandatory)
        selected = set(mandatory)
        for b in range(len(blocks) - 1, -1, -1):
            if b in selected:
                continue
            c = cost_of(b)
            size = blocks[b][1] - blocks[b][0]
            if used + c > cfg.budget_tokens:
                break
            if cfg.max_recent_messages is not None and n_msgs + size > cfg.max_recent_messages:
                break
            n_msgs += size
            selected.add(b)
            used += c
        return _Plan(
            selected=sorted(selected),
            window_start=self._window_start(blocks, selected, mandatory, len(msgs)),
            mandatory=mandatory,
            required=required,
            summary=summary,
            state_cap=state_cap,
        )

    def _record(self, ctx: MemoryContext, record: MemoryRecord, flag: bool | None) -> None:
        if not (self.config.record_savings if flag is None else flag):
            return
        self.ledger.record_saving(
            "memory",
            tokens_in=ctx.saved_tokens,
            model=self.config.model,
            detail={
                "context_tokens": ctx.tokens,
                "full_history_tokens": ctx.full_tokens,
                "budget_tokens": ctx.budget,
                "recent_messages": len(ctx.indices),
                "recalled": len(ctx.recalled),
                "summary_segments": len(record.summary),
                "over_budget": ctx.over_budget,
            },
        )

    # ------------------------------------------------------------------ update
    def _prepare(self, msgs: Sequence[Message], record: MemoryRecord | None) -> MemoryRecord:
        rec = record.model_copy(deep=True) if record is not None else MemoryRecord()
        if rec.extracted_upto > len(msgs) or rec.summarized_upto > len(msgs):
            logger.info("history shorter than the memory record; starting the record afresh")
            rec = MemoryRecord(session_id=rec.session_id)
        return rec

    def _merge_state(self, rec: MemoryRecord, new: MemoryState) -> None:
        cfg = self.config
        rec.state.merge(new, cfg.max_entities)
        for tr in rec.state.tool_results:
            tr.content = tr.content[: cfg.tool_result_max_chars]
        if len(rec.state.tool_results) > cfg.max_tool_results:
            del rec.state.tool_results[: len(rec.state.tool_results) - cfg.max_tool_results]

    def _pending(self, msgs: Sequence[Message], rec: MemoryRecord) -> tuple[int, list[Message]]:
        sys_parts: list[str] = []
        start = 0
        if msgs and msgs[0].role in ("system", "developer"):
            sys_parts.append(msgs[0].content)
            start = 1
        blocks, _ = split_blocks(msgs, start)
        full = [Message(role="system", content=p) for p in sys_parts] + list(msgs[start:])
        if (
            not self.config.compact_under_budget
            and self.count(full, None) <= self.config.budget_tokens
        ):
            return rec.summarized_upto, []
        plan = self._plan(msgs, blocks, rec, sys_parts, None)
        lo = max(rec.summarized_upto, start)
        cut = plan.window_start
        pending = [m for m in msgs[lo:cut] if m.content or m.tool_calls]
        if len(pending) < self.config.summarize_min_messages:
            return rec.summarized_upto, []
        return cut, list(msgs[lo:cut])

    def _cap_summary(self, text: str) -> str:
        """An extension cut to ``summary_max_tokens`` (more could never be shown) and to
        ``summary_segment_max_chars``."""
        text = text[: self.config.summary_segment_max_chars]
        cap = self.config.summary_max_tokens
        return self._clip(text, cap) if cap >= 8 else text

    def _summary_failed(self, rec: MemoryRecord, exc: BaseException) -> None:
        rec.summary_failures += 1
        logger.warning("summariser failed (%s); keeping the previous summary", type(exc).__name__)
        warnings.warn(
            f"summarising evicted turns failed ({type(exc).__name__}: {exc}); the context falls "
            "back to the state and the recent turns within budget",
            MemoryWarning,
            stacklevel=3,
        )

    def update(self, history: Iterable[Any], record: MemoryRecord | None = None) -> MemoryRecord:
        """Read new messages into the state and extend the summary with evicted turns.

        Call it after the reply (it may call models). Returns a new record; the input is not
        mutated. Failures of the summariser or LLM extractor warn and keep the previous values.
        """
        msgs = normalize_messages(history)
        rec = self._prepare(msgs, record)
        new = msgs[rec.extracted_upto :]
        if new:
            self._merge_state(rec, self.extractor.extract(new, rec.extracted_upto))
            if self.llm_extractor is not None:
                try:
                    self._merge_state(rec, self.llm_extractor.extract(new, rec.extracted_upto))
                except Exception as exc:
                    logger.warning("LLM state extractor failed (%s)", type(exc).__name__)
            rec.extracted_upto = len(msgs)
        if self.summarizer is not None:
            cut, pending = self._pending(msgs, rec)
            if pending:
                t0 = time.perf_counter()
                try:
                    text = self.summarizer.extend(rec.summary_text, pending, rec.state)
                except Exception as exc:
                    self._summary_failed(rec, exc)
                else:
                    rec.summary.append(
                        SummarySegment(
                            start=rec.summarized_upto, end=cut, text=self._cap_summary(text)
                        )
                    )
                    rec.summarized_upto = cut
                    logger.debug("summary extended in %.2fs", time.perf_counter() - t0)
        rec.updated_at = time.time()
        return rec

    async def aupdate(
        self, history: Iterable[Any], record: MemoryRecord | None = None
    ) -> MemoryRecord:
        """Async twin of :meth:`update` (awaits the models' async APIs)."""
        msgs = normalize_messages(history)
        rec = self._prepare(msgs, record)
        new = msgs[rec.extracted_upto :]
        if new:
            self._merge_state(rec, await self.extractor.aextract(new, rec.extracted_upto))
            if self.llm_extractor is not None:
                try:
                    found = await self.llm_extractor.aextract(new, rec.extracted_upto)
                    self._merge_state(rec, found)
                except Exception as exc:
                    logger.warning("LLM state extractor failed (%s)", type(exc).__name__)
            rec.extracted_upto = len(msgs)
        if self.summarizer is not None:
            cut, pending = self._pending(msgs, rec)
            if pending:
                try:
                    text = await self.summarizer.aextend(rec.summary_text, pending, rec.state)
                except Exception as exc:
                    self._summary_failed(rec, exc)
                else:
                    rec.summary.append(
                        SummarySegment(
                            start=rec.summarized_upto, end=cut, text=self._cap_summary(text)
                        )
                    )
                    rec.summarized_upto = cut
        rec.updated_at = time.time()
        return rec
