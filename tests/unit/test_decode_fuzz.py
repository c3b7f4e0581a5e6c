"""Fuzz decode with mutated real records: nothing escapes as an exception, and nothing silently vanishes.

The accounting is checked against a reference decoder built from the standard library (``gzip`` and
``json``), not from the code under test: when the reference reads an intact subscription record with N log
events, decode must give exactly N items (events + malformed log events), one per index; when it cannot,
decode must park the record whole, as exactly one malformed item.
A deeper run: ``DECODE_FUZZ_EXAMPLES=5000 pytest tests/unit/test_decode_fuzz.py``.
"""

from __future__ import annotations

import gzip
import json
import os
import zlib
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import event as tally
from hypothesis import strategies as st

from stream_processor.decode import (
    KIND_CORRUPT_GZIP,
    KIND_DECODER_ERROR,
    KIND_TOO_LARGE,
    KIND_TRUNCATED_GZIP,
    MALFORMED_KINDS,
    decode_bytes,
    decode_record,
    encode_subscription_record,
    is_cloudtrail_event,
)
from stream_processor.model import DecodeResult, Position, RawRecord
from tests.conftest import corpus_path

FUZZ = settings(
    max_examples=int(os.environ.get("DECODE_FUZZ_EXAMPLES", "150")),  # raise it for a deeper run
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
POSITION = Position("shardId-000000000007", "49590338271490256608559692538361571095921575989136588898")
STRATUS = [
    "aws.execution.ssm-start-session.json",
    "aws.persistence.iam-create-admin-user.json",
    "aws.credential-access.secretsmanager-batch-retrieve-secrets.json",
]
JSONISH = [b'"', b"{", b"}", b"[", b"]", b",", b":", b"\\", b"\n", b"null", b"\xff", b"\xc3", b'\\"', b"\x00"]

GZIP_KINDS = {KIND_TRUNCATED_GZIP, KIND_CORRUPT_GZIP, KIND_TOO_LARGE}

Mutation = tuple[Any, ...]


@pytest.fixture(scope="module")
def corpus_events() -> list[list[dict[str, Any]]]:
    groups: list[list[dict[str, Any]]] = []
    for name in STRATUS:
        events: list[dict[str, Any]] = json.loads(corpus_path("stratus-red-team", name).read_bytes())
        groups.append(events[:12])
    return groups


mutations = st.lists(
    st.one_of(
        st.tuples(st.just("flip"), st.integers(0, 1 << 30), st.integers(0, 7)),
        st.tuples(st.just("truncate"), st.integers(0, 1 << 30)),
        st.tuples(st.just("insert"), st.integers(0, 1 << 30), st.binary(min_size=1, max_size=6)),
        st.tuples(st.just("insert"), st.integers(0, 1 << 30), st.sampled_from(JSONISH)),
        st.tuples(st.just("delete"), st.integers(0, 1 << 30), st.integers(1, 40)),
    ),
    min_size=1,
    max_size=3,
)


def mutate(data: bytes, steps: list[Mutation]) -> bytes:
    buffer = bytearray(data)
    for step in steps:
        at = step[1] % (len(buffer) + 1)
        if step[0] == "flip" and buffer:
            buffer[at % len(buffer)] ^= 1 << step[2]
        elif step[0] == "truncate":
            del buffer[at:]
        elif step[0] == "insert":
            buffer[at:at] = step[2]
        elif step[0] == "delete":
            del buffer[at : at + step[2]]
    return bytes(buffer)


# --- the reference: standard library only --------------------------------------------------------------------


class Broken(Exception):
    """The reference could not read the input."""


def _no_constants(name: str) -> Any:
    raise Broken(f"JSON does not allow {name}")


def reference_payload(data: bytes) -> bytes:
    """gzip.decompress with RFC 1952's rule that reserved header flags must be zero; plain input as is."""
    if data[:2] != b"\x1f\x8b":
        return data
    if len(data) > 3 and data[3] & 0xE0:
        raise Broken("reserved gzip flags set")
    try:
        return gzip.decompress(data)
    except (OSError, EOFError, zlib.error) as exc:
        raise Broken(str(exc)) from exc


def reference_json(payload: bytes) -> Any:
    try:
        return json.loads(payload.decode("utf-8"), parse_constant=_no_constants)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise Broken(str(exc)) from exc


def reference_log_event_count(data: bytes) -> int | None:
    """N if the input is an intact DATA_MESSAGE with a list of N log events, else None."""
    try:
        document = reference_json(reference_payload(data))
    except Broken:
        return None
    if not isinstance(document, dict) or document.get("messageType") != "DATA_MESSAGE":
        return None
    log_events = document.get("logEvents")
    return len(log_events) if isinstance(log_events, list) else None


# --- invariants --------------------------------------------------------------------------------------------


def assert_sound(result: DecodeResult, origin: str) -> None:
    """No decoder bug, only known kinds, every event a real event whose raw bytes are its data."""
    assert KIND_DECODER_ERROR not in [m.kind for m in result.malformed], result.malformed
    assert {m.kind for m in result.malformed} <= MALFORMED_KINDS
    for event in result.events:
        assert is_cloudtrail_event(event.data)
        assert orjson.loads(event.raw) == event.data
        assert event.position.origin == origin
    for item in result.malformed:
        assert item.position.origin == origin


def assert_record_accounting(data: bytes, result: DecodeResult) -> None:
    assert_sound(result, POSITION.origin)
    items = [e.position for e in result.events] + [m.position for m in result.malformed]
    assert all(p.sequence == POSITION.sequence for p in items)
    if any(p.sub_sequence is None for p in items):
        # The record as a whole: exactly one item (one malformed report, or a record that is one event).
        assert len(items) == 1
        assert result.control_messages == result.digest_files == 0
    indexes = [p.sub_sequence for p in items if p.sub_sequence is not None]
    assert len(indexes) == len(set(indexes)), "an index reported twice"
    try:
        reference_payload(data)
        gzip_intact = True
    except Broken:
        gzip_intact = False
    gzip_kinds = [m.kind for m in result.malformed if m.kind in GZIP_KINDS]
    if gzip_intact:
        assert gzip_kinds == [], "intact gzip refused"
    else:
        assert len(items) == 1 and gzip_kinds, "broken gzip not parked whole"
    expected = reference_log_event_count(data)
    tally(f"reference reads {'no' if expected is None else 'a'} subscription record; {_outcome(result)}")
    if expected is not None:
        assert sorted(indexes) == list(range(expected)), "a log event vanished or was invented"
    elif not items:
        # Nothing reported is only right for a control message or a digest/empty container.
        assert result.control_messages + result.digest_files > 0 or _reference_is_empty_container(data)


def _outcome(result: DecodeResult) -> str:
    if result.malformed and not result.events:
        return "all malformed"
    return "some malformed" if result.malformed else "all decoded"


def _reference_is_empty_container(data: bytes) -> bool:
    try:
        value = reference_json(reference_payload(data))
    except Broken:
        return False
    return value == [] or (isinstance(value, dict) and value.get("Records") == [])


# --- the fuzz tests ----------------------------------------------------------------------------------------


@FUZZ
@given(group=st.integers(0, len(STRATUS) - 1), steps=mutations)
def test_mutated_gzip_bytes_are_decoded_or_parked_whole(
    corpus_events: list[list[dict[str, Any]]], group: int, steps: list[Mutation]
) -> None:
    data = mutate(encode_subscription_record(corpus_events[group]), steps)

    result = decode_record(RawRecord(data, POSITION))

    assert_record_accounting(data, result)


@FUZZ
@given(group=st.integers(0, len(STRATUS) - 1), steps=mutations, compress=st.booleans())
def test_mutated_subscription_json_never_loses_a_log_event(
    corpus_events: list[list[dict[str, Any]]], group: int, steps: list[Mutation], compress: bool
) -> None:
    document = zlib.decompress(encode_subscription_record(corpus_events[group]), 31)
    mutated = mutate(document, steps)
    data = gzip.compress(mutated) if compress else mutated

    result = decode_record(RawRecord(data, POSITION))

    assert_record_accounting(data, result)


@FUZZ
@given(
    group=st.integers(0, len(STRATUS) - 1),
    damaged=st.lists(st.tuples(st.integers(0, 11), mutations), min_size=1, max_size=4),
)
def test_mutated_messages_are_reported_one_by_one(
    corpus_events: list[list[dict[str, Any]]], group: int, damaged: list[tuple[int, list[Mutation]]]
) -> None:
    messages = [orjson.dumps(event) for event in corpus_events[group]]
    for index, steps in damaged:
        index %= len(messages)
        messages[index] = mutate(messages[index], steps)
    texts = [m.decode("utf-8", errors="replace") for m in messages]

    result = decode_record(RawRecord(encode_subscription_record(texts), POSITION))

    assert_record_accounting(encode_subscription_record(texts), result)
    assert len(result.events) + len(result.malformed) == len(texts)
    for event in result.events:
        assert event.position.sub_sequence is not None
        assert event.raw == texts[event.position.sub_sequence].encode()


@FUZZ
@given(
    group=st.integers(0, len(STRATUS) - 1),
    shape=st.sampled_from(["array", "records", "lines"]),
    steps=mutations,
    compress=st.booleans(),
)
def test_mutated_files_never_lose_a_record(
    corpus_events: list[list[dict[str, Any]]], group: int, shape: str, steps: list[Mutation], compress: bool
) -> None:
    events = corpus_events[group]
    if shape == "array":
        text = json.dumps(events, indent=1).encode()
    elif shape == "records":
        text = orjson.dumps({"Records": events})
    else:
        text = b"\n".join(orjson.dumps(e) for e in events) + b"\n"
    mutated = mutate(text, steps)
    data = gzip.compress(mutated) if compress else mutated

    result = decode_bytes(data, "fuzz.json")

    assert_sound(result, "fuzz.json")
    tally(f"{shape}: {_outcome(result)}")
    reported = len(result.events) + len(result.malformed) + result.digest_files + result.control_messages
    try:
        document = reference_json(reference_payload(data))
    except Broken:
        document = None
    if isinstance(document, list):
        assert sorted(p.sequence or "" for p in _positions(result)) == sorted(f"[{i}]" for i in range(len(document)))
    elif isinstance(document, dict) and isinstance(document.get("Records"), list) and "messageType" not in document:
        expected = sorted(f"Records[{i}]" for i in range(len(document["Records"])))
        assert sorted(p.sequence or "" for p in _positions(result)) == expected
    elif shape == "lines" and document is None and b"\n" in mutated.strip():
        # Read as JSON lines: at least one item per non-blank line that the reference cannot read as JSON.
        unreadable = 0
        for line in mutated.split(b"\n"):
            try:
                reference_json(line)
            except Broken:
                unreadable += bool(line.strip())
        assert reported >= min(unreadable, 1)
    if document not in ([], {"Records": []}):
        assert reported >= 1, "a non-empty input produced nothing at all"


def _positions(result: DecodeResult) -> list[Position]:
    return [e.position for e in result.events] + [m.position for m in result.malformed]
