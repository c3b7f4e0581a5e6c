"""Hostile records: whatever a record holds, decoding never raises and stays within a memory bound.

The records are built from the shapes that broke decoders before: tiny gzip that expands to a flood of
items, nesting at and past the parser's limit, numbers out of range, invalid UTF-8, items that are not log
events, arrays and log files that never close. A deeper run: ``HOSTILE_EXAMPLES=2000 pytest ...``.
"""

from __future__ import annotations

import gzip
import os
import tracemalloc

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stream_processor.decode import MALFORMED_KINDS, DecodeBudget, decode_file, decode_record
from stream_processor.model import Position, RawRecord

BUDGET = DecodeBudget(record_bytes=1 << 20, file_bytes=4 << 20, record_items=2_000, event_bytes=64 << 10)
# Python objects for the largest text the budget admits, plus the bounded samples kept for parking.
MEMORY_BOUND = 48 * BUDGET.record_bytes
POSITION = Position("shardId-000000000009", "4959")

EVENT = orjson.dumps({"eventVersion": "1.08", "eventName": "CreateAccessKey", "eventSource": "iam.amazonaws.com"})

pieces = st.one_of(
    st.just(EVENT),
    st.integers(1, 3_000).map(lambda depth: b"[" * depth + b"]" * depth),
    st.integers(1, 3_000).map(
        lambda depth: b'{"eventVersion":"1","eventName":"x","eventSource":"y","a":' + b"[" * depth + b"]" * depth + b"}"
    ),
    st.sampled_from([b"1e400", b"-1e999", b"NaN", b"18446744073709551616", b'"\xff\xfe"', b'"\\ud800"', b"{", b"]"]),
    st.binary(max_size=64),
    st.integers(0, 50_000).map(lambda count: b"[" + b"0," * count + b"0]"),
)


@st.composite
def hostile_text(draw: st.DrawFn) -> bytes:
    shape = draw(st.sampled_from(["subscription", "records", "array", "lines", "raw"]))
    items = draw(st.lists(pieces, max_size=12))
    repeat = draw(st.sampled_from([1, 10, 1_000, 20_000]))
    if shape == "subscription":
        messages = b",".join(
            b'{"id":"1","timestamp":1,"message":' + orjson.dumps(i.decode("utf-8", "replace")) + b"}" for i in items
        )
        flood = b",0" * repeat
        return b'{"messageType":"DATA_MESSAGE","logEvents":[' + messages + (flood if messages else flood[1:]) + b"]}"
    if shape == "records":
        return b'{"Records":[' + b",".join(items * min(repeat, 50)) + draw(st.sampled_from([b"]}", b"]", b""]))
    if shape == "array":
        return b"[" + b",".join(items * min(repeat, 50)) + draw(st.sampled_from([b"]", b""]))
    if shape == "lines":
        return b"\n".join(items * min(repeat, 50))
    return b"".join(items)


HOSTILE = settings(
    max_examples=int(os.environ.get("HOSTILE_EXAMPLES", "40")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def peak_of(run: object) -> int:
    tracemalloc.start()
    try:
        run()  # type: ignore[operator]
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


@HOSTILE
@given(text=hostile_text(), compress=st.booleans())
def test_a_hostile_record_never_raises_and_stays_within_its_memory_bound(text: bytes, compress: bool) -> None:
    data = gzip.compress(text, mtime=0) if compress else text
    results = []

    decode_record(RawRecord(data, POSITION), BUDGET)  # once first: caches (regexes, imports) are not the record's
    peak = peak_of(lambda: results.append(decode_record(RawRecord(data, POSITION), BUDGET)))

    [result] = results
    assert peak < MEMORY_BOUND, f"{peak:,} bytes for a {len(data):,}-byte record"
    assert {item.kind for item in result.malformed} <= MALFORMED_KINDS - {"decoder_error"}
    assert len(result.malformed) <= BUDGET.malformed_entries + 1  # past the budget: one folded entry
    assert all(item.position.origin == POSITION.origin for item in result.events + result.malformed)  # type: ignore[operator]


@HOSTILE
@given(text=hostile_text())
def test_a_hostile_file_never_raises(text: bytes) -> None:
    chunks = [text[i : i + 4096] for i in range(0, len(text), 4096)]
    for part in decode_file(iter(chunks), "hostile.json", BUDGET):
        assert {item.kind for item in part.malformed} <= MALFORMED_KINDS - {"decoder_error"}
