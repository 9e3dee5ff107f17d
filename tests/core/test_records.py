"""Tests for tokenlean_core.records.Record: the ledger row and its JSON-lines form."""

from __future__ import annotations

import json
from pathlib import PurePosixPath
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tokenlean_core.errors import TokenleanError, UsageParseError
from tokenlean_core.records import KINDS, SCOPE_FIELDS, Record, Scope
from tokenlean_core.usage import Usage


def full_record() -> Record:
    return Record(
        kind="llm_call",
        ts=1747216200.25,
        component="langchain",
        scope=Scope(request="r-1", session="s-1", tenant="acme", task="summarise"),
        model="gpt-4o-mini",
        usage=Usage(2006, 300, 1920, 64, 192, exact=True, source="openai"),
        usd=0.000421,
        latency_s=1.5,
        ttft_s=0.25,
        name="call",
        value=3.0,
        run_id="run-42",
        detail={"stream": True, "tools": ["search"], "nested": {"k": None}},
    )


# ------------------------------------------------------------------ to_dict / to_json


def test_to_dict_is_flat_and_omits_unset_fields() -> None:
    assert full_record().to_dict() == {
        "kind": "llm_call",
        "ts": 1747216200.25,
        "component": "langchain",
        "request": "r-1",
        "session": "s-1",
        "tenant": "acme",
        "task": "summarise",
        "model": "gpt-4o-mini",
        "usd": 0.000421,
        "latency_s": 1.5,
        "ttft_s": 0.25,
        "name": "call",
        "value": 3.0,
        "run_id": "run-42",
        "usage": {
            "input_tokens": 2006,
            "output_tokens": 300,
            "cache_read_tokens": 1920,
            "cache_write_tokens": 64,
            "reasoning_tokens": 192,
            "exact": True,
            "source": "openai",
        },
        "detail": {"stream": True, "tools": ["search"], "nested": {"k": None}},
    }
    minimal = Record(kind="event", ts=1.0, component="cache")
    assert minimal.to_dict() == {"kind": "event", "ts": 1.0, "component": "cache"}
    assert minimal.to_json() == '{"kind":"event","ts":1.0,"component":"cache"}'


def test_to_json_is_one_compact_line() -> None:
    line = full_record().to_json()
    assert "\n" not in line
    assert ", " not in line
    assert json.loads(line) == full_record().to_dict()


def test_to_json_keeps_non_ascii_and_stringifies_unknown_detail_values() -> None:
    r = Record(
        kind="event",
        ts=2.0,
        component="compress",
        model="modèle-é",
        detail={"path": PurePosixPath("/tmp/x"), "text": "naïve ☃"},
    )
    line = r.to_json()
    assert "modèle-é" in line
    assert "naïve ☃" in line
    back = Record.from_json(line)
    assert back.model == "modèle-é"
    assert back.detail == {"path": "/tmp/x", "text": "naïve ☃"}


# ------------------------------------------------------------------ round trips


def test_round_trip_full_record() -> None:
    r = full_record()
    assert Record.from_dict(r.to_dict()) == r
    assert Record.from_json(r.to_json()) == r
    assert Record.from_json(r.to_json()).to_json() == r.to_json()


@pytest.mark.parametrize("kind", KINDS)
def test_round_trip_each_kind(kind: str) -> None:
    r = Record(kind=kind, ts=0.0, component="c", name="success" if kind == "outcome" else None)
    assert Record.from_json(r.to_json()) == r


def test_from_dict_normalises_numbers() -> None:
    r = Record.from_dict({"kind": "saving", "ts": 5, "component": "cache", "usd": 2, "value": 0})
    assert r.ts == 5.0
    assert type(r.ts) is float
    assert r.usd == 2.0
    assert type(r.usd) is float
    assert r.value == 0.0
    assert r.scope == Scope()
    assert r.usage is None
    assert r.detail == {}


def test_from_dict_detail_is_a_copy() -> None:
    detail = {"a": 1}
    r = Record.from_dict({"kind": "event", "ts": 1, "component": "c", "detail": detail})
    detail["a"] = 2
    assert r.detail == {"a": 1}


def test_from_dict_reads_scope_fields() -> None:
    r = Record.from_dict(
        {"kind": "event", "ts": 1, "component": "c", "tenant": "acme", "task": None}
    )
    assert r.scope == Scope(tenant="acme")


# ------------------------------------------------------------------ malformed rows


BASE: dict[str, Any] = {"kind": "llm_call", "ts": 1.0, "component": "c"}


@pytest.mark.parametrize(
    ("row", "words"),
    [
        ({"ts": 1.0, "component": "c"}, "'kind'"),
        ({"kind": "llm_call", "component": "c"}, "'ts'"),
        ({"kind": "llm_call", "ts": 1.0}, "'component'"),
        ({**BASE, "kind": "call"}, "'kind'"),
        ({**BASE, "kind": ["llm_call"]}, "'kind'"),
        ({**BASE, "ts": "yesterday"}, "'ts'"),
        ({**BASE, "ts": None}, "'ts'"),
        ({**BASE, "ts": [1]}, "'ts'"),
        ({**BASE, "ts": True}, "'ts'"),  # a bool is not a timestamp
        ({**BASE, "ts": 10**400}, "'ts'"),  # regression: OverflowError escaped
        ({**BASE, "usd": "0.1"}, "'usd'"),
        ({**BASE, "usd": True}, "'usd'"),
        ({**BASE, "usd": 10**400}, "'usd'"),  # regression: OverflowError escaped
        ({**BASE, "latency_s": {}}, "'latency_s'"),
        ({**BASE, "ttft_s": [0.1]}, "'ttft_s'"),
        ({**BASE, "value": "3"}, "'value'"),
        ({**BASE, "detail": "x"}, "'detail'"),
        ({**BASE, "detail": []}, "'detail'"),  # regression: silently became {}
        ({**BASE, "detail": 0}, "'detail'"),  # regression: silently became {}
        ({**BASE, "usage": "2306"}, "'usage'"),  # regression: silently dropped
        ({**BASE, "usage": [1, 2]}, "'usage'"),  # regression: silently dropped
        ({**BASE, "model": ["gpt-4o"]}, "'model'"),  # regression: kept a list as the model
        ({**BASE, "model": 4}, "'model'"),
        ({**BASE, "name": {"n": 1}}, "'name'"),
        ({**BASE, "run_id": 7}, "'run_id'"),
    ],
)
def test_from_dict_rejects_malformed_rows(row: dict[str, Any], words: str) -> None:
    with pytest.raises(TokenleanError, match=words):
        Record.from_dict(row)


@pytest.mark.parametrize(
    ("usage", "field"),
    [
        ({"input_tokens": "10"}, "input_tokens"),
        ({"input_tokens": -1}, "input_tokens"),
        ({"output_tokens": 1.5}, "output_tokens"),
        ({"input_tokens": 1, "cache_read_tokens": 2}, "cache_read_tokens"),
    ],
)
def test_from_dict_bad_usage_raises_usage_parse_error(usage: dict[str, Any], field: str) -> None:
    with pytest.raises(UsageParseError) as info:
        Record.from_dict({**BASE, "usage": usage})
    assert info.value.field == field
    assert isinstance(info.value, TokenleanError)


@pytest.mark.parametrize(
    "line",
    [
        "",
        "not json",
        "{",
        '{"kind": "llm_call",}',
        "[]",
        '"llm_call"',
        "1",
        "null",
        "1" * 5000,  # regression: int past sys.get_int_max_str_digits raised plain ValueError
        '{"kind":"event","ts":' + "1" * 5000 + ',"component":"c"}',
        "[" * 100_000 + "]" * 100_000,  # regression: RecursionError escaped
        '{"kind":"event","ts":' + "1" + "0" * 400 + ',"component":"c"}',
    ],
    ids=lambda line: line[:20] if len(line) < 40 else f"{line[:12]}...({len(line)})",
)
def test_from_json_rejects_bad_lines(line: str) -> None:
    with pytest.raises(TokenleanError):
        Record.from_json(line)


# ------------------------------------------------------------------ property tests

PROPS = settings(
    max_examples=100,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)

finite = st.floats(allow_nan=False, allow_infinity=False)
texts = st.text(max_size=12)
json_leaf = st.none() | st.booleans() | st.integers() | finite | texts
json_value = st.recursive(
    json_leaf,
    lambda children: st.lists(children, max_size=3) | st.dictionaries(texts, children, max_size=3),
    max_leaves=12,
)


@st.composite
def usages(draw: st.DrawFn) -> Usage:
    read = draw(st.integers(min_value=0))
    write = draw(st.integers(min_value=0))
    return Usage(
        read + write + draw(st.integers(min_value=0)),
        draw(st.integers(min_value=0)),
        read,
        write,
        draw(st.integers(min_value=0)),
        draw(st.booleans()),
        draw(texts),
    )


records = st.builds(
    Record,
    kind=st.sampled_from(KINDS),
    ts=finite,
    component=texts,
    scope=st.builds(
        Scope,
        request=st.none() | texts,
        session=st.none() | texts,
        tenant=st.none() | texts,
        task=st.none() | texts,
    ),
    model=st.none() | texts,
    usage=st.none() | usages(),
    usd=st.none() | finite,
    latency_s=st.none() | finite,
    ttft_s=st.none() | finite,
    name=st.none() | texts,
    value=st.none() | finite,
    run_id=st.none() | texts,
    detail=st.dictionaries(texts, json_value, max_size=4),
)


@PROPS
@given(record=records)
def test_valid_records_round_trip(record: Record) -> None:
    line = record.to_json()
    back = Record.from_json(line)
    assert back == record
    assert back.to_json() == line
    assert Record.from_dict(record.to_dict()) == record


# rows made of the real field names with arbitrary values, so the validators are exercised
ROW_KEYS = ("kind", "ts", "component", "model", "usage", "usd", "latency_s", "ttft_s", "name")
row_keys = st.sampled_from([*ROW_KEYS, "value", "run_id", "detail", *SCOPE_FIELDS])
usage_like = st.dictionaries(
    st.sampled_from(
        [
            "input_tokens",
            "output_tokens",
            "cache_read_tokens",
            "cache_write_tokens",
            "reasoning_tokens",
            "exact",
            "source",
        ]
    ),
    json_leaf | st.floats(),
    max_size=7,
)
row_values = (
    json_value
    | st.sampled_from(KINDS)
    | usage_like
    | st.floats()
    | st.integers(min_value=10**300, max_value=10**400)
)


@st.composite
def record_rows(draw: st.DrawFn) -> dict[str, Any]:
    row: dict[str, Any] = {
        "kind": draw(st.sampled_from(KINDS) | json_value),
        "ts": draw(finite | row_values),
        "component": draw(texts | row_values),
    }
    row.update(draw(st.dictionaries(row_keys, row_values, max_size=6)))
    return row


def _dump(value: Any) -> str:
    return json.dumps(value)  # allow_nan: Python writes NaN/Infinity and reads them back


json_lines = (
    st.text(max_size=40)
    | json_value.map(_dump)
    | record_rows().map(_dump)
    | records.map(lambda r: r.to_json()[: len(r.to_json()) // 2])  # truncated line
)


def _outcome(line: str) -> Record | TokenleanError:
    """``Record.from_json(line)``; any exception other than TokenleanError fails the test."""
    try:
        return Record.from_json(line)
    except TokenleanError as exc:
        return exc


@PROPS
@given(line=json_lines)
def test_any_line_parses_or_raises_tokenlean_error(line: str) -> None:
    result = _outcome(line)
    if isinstance(result, Record):
        assert result.kind in KINDS
        assert isinstance(result.ts, float)
        for key in ("model", "name", "run_id"):
            assert getattr(result, key) is None or isinstance(getattr(result, key), str)
        for key in ("usd", "latency_s", "ttft_s", "value"):
            assert getattr(result, key) is None or isinstance(getattr(result, key), float)
        assert result.usage is None or isinstance(result.usage, Usage)
        assert isinstance(result.detail, dict)
        # whatever was read can be written back and read again to the same row (compared as
        # text: NaN, which Python's json reads and writes, is not equal to itself)
        assert Record.from_json(result.to_json()).to_json() == result.to_json()
