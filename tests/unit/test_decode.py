"""Decode: every input format the design names, and every kind of malformed input, reported and never raised."""

from __future__ import annotations

import gzip
import json
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from stream_processor import decode
from stream_processor.decode import (
    DEFAULT_BUDGET,
    KIND_BAD_LOG_EVENT,
    KIND_BAD_LOG_FILE,
    KIND_BAD_SUBSCRIPTION_RECORD,
    KIND_CORRUPT_GZIP,
    KIND_DECODER_ERROR,
    KIND_EMPTY,
    KIND_INVALID_UTF8,
    KIND_MANY_MALFORMED,
    KIND_NOT_CLOUDTRAIL_EVENT,
    KIND_NOT_GZIP_OR_JSON,
    KIND_NOT_JSON,
    KIND_NOT_OBJECT_OR_ARRAY,
    KIND_TOO_LARGE,
    KIND_TRUNCATED_GZIP,
    KIND_UNKNOWN_MESSAGE_TYPE,
    MALFORMED_KINDS,
    MAX_MALFORMED_DATA,
    DecodeBudget,
    decode_bytes,
    decode_file,
    decode_record,
    decode_records,
    encode_subscription_record,
    event_identity,
    is_cloudtrail_event,
)
from stream_processor.model import CloudTrailEvent, DecodeResult, Position, RawRecord
from tests.conftest import corpus_path

SHARD = "shardId-000000000003"
LIBRARY = "aws-cloudtrail-processing-library"


def cloudtrail_event(name: str = "CreateAccessKey", event_id: str | None = "e-1", **extra: Any) -> dict[str, Any]:
    event: dict[str, Any] = {
        "eventVersion": "1.08",
        "eventSource": "iam.amazonaws.com",
        "eventName": name,
        "eventTime": "2024-08-01T12:19:16Z",
        "awsRegion": "us-east-1",
        **extra,
    }
    if event_id is not None:
        event["eventID"] = event_id
    return event


def kinesis(data: bytes, sequence: str = "49590338271490256608559692538361571095921575989136588898") -> RawRecord:
    return RawRecord(data, Position(SHARD, sequence))


def subscription_json(**fields: Any) -> bytes:
    """A CloudWatch Logs object with any fields replaced or removed (value None removes), gzipped."""
    document = json.loads(gzip.decompress(encode_subscription_record([cloudtrail_event()])))
    for key, value in fields.items():
        if value is None:
            document.pop(key, None)
        else:
            document[key] = value
    return gzip.compress(json.dumps(document).encode())


def stratus_events(name: str = "aws.execution.ssm-start-session.json") -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = json.loads(corpus_path("stratus-red-team", name).read_bytes())
    return events


def kinds(result: DecodeResult) -> list[str]:
    return [item.kind for item in result.malformed]


def assert_well_formed(result: DecodeResult) -> None:
    """What every result must satisfy: known kinds, and events whose raw bytes are the parsed data."""
    assert set(kinds(result)) <= MALFORMED_KINDS
    for event in result.events:
        assert is_cloudtrail_event(event.data)
        assert orjson.loads(event.raw) == event.data


# --- CloudWatch Logs subscription records (what Kinesis carries) -------------------------------------------


def test_a_subscription_record_yields_each_log_event_with_the_record_position_and_its_index() -> None:
    events = stratus_events()
    record = kinesis(encode_subscription_record(events))

    result = decode_record(record)

    assert_well_formed(result)
    assert result.malformed == []
    assert [e.data for e in result.events] == events
    assert [e.position for e in result.events] == [
        Position(SHARD, record.position.sequence, index) for index in range(len(events))
    ]
    message = json.loads(gzip.decompress(record.data))["logEvents"][0]["message"]
    assert result.events[0].raw == message.encode()


def test_a_control_message_is_skipped_and_counted() -> None:
    control = kinesis(encode_subscription_record([], message_type="CONTROL_MESSAGE"), sequence="1")
    data = kinesis(encode_subscription_record([cloudtrail_event()]), sequence="2")

    result = decode_records([control, data, control])

    assert result.control_messages == 2
    assert result.malformed == []
    assert [e.position.sequence for e in result.events] == ["2"]


def test_one_bad_record_in_a_batch_does_not_stop_the_others() -> None:
    good = encode_subscription_record([cloudtrail_event(event_id="a"), cloudtrail_event(event_id="b")])
    records = [
        kinesis(good, "1"),
        kinesis(b"this is not a record", "2"),
        kinesis(good[: len(good) // 2], "3"),
        kinesis(encode_subscription_record([cloudtrail_event(event_id="c")]), "4"),
    ]

    result = decode_records(records)

    assert [(e.position.sequence, e.event_id) for e in result.events] == [("1", "a"), ("1", "b"), ("4", "c")]
    assert [(m.position, m.kind) for m in result.malformed] == [
        (Position(SHARD, "2"), KIND_NOT_GZIP_OR_JSON),
        (Position(SHARD, "3"), KIND_TRUNCATED_GZIP),
    ]


def test_a_bad_log_event_is_reported_alone_and_its_neighbours_still_decode() -> None:
    record = kinesis(
        encode_subscription_record(
            [
                cloudtrail_event(event_id="first"),
                "CWL sometimes carries plain text",
                {"not": "cloudtrail"},
                b'{"eventVersion": "1.08", "eventName": 7, "eventSource": "s3.amazonaws.com"}',
                "[1, 2]",
                cloudtrail_event(event_id="last"),
            ]
        )
    )

    result = decode_record(record)

    assert_well_formed(result)
    assert [(e.position.sub_sequence, e.event_id) for e in result.events] == [(0, "first"), (5, "last")]
    assert [(m.position.sub_sequence, m.kind) for m in result.malformed] == [
        (1, KIND_NOT_JSON),
        (2, KIND_NOT_CLOUDTRAIL_EVENT),
        (3, KIND_NOT_CLOUDTRAIL_EVENT),
        (4, KIND_NOT_CLOUDTRAIL_EVENT),
    ]
    assert result.malformed[0].data == b"CWL sometimes carries plain text"
    assert "eventName is a JSON number" in result.malformed[2].reason


def test_log_events_without_a_string_message_are_each_reported() -> None:
    log_events = [{"id": "1", "timestamp": 0, "message": json.dumps(cloudtrail_event())}, {"id": "2"}, 3, None]
    result = decode_record(kinesis(subscription_json(logEvents=log_events)))

    assert len(result.events) == 1
    assert [(m.position.sub_sequence, m.kind) for m in result.malformed] == [
        (1, KIND_BAD_LOG_EVENT),
        (2, KIND_BAD_LOG_EVENT),
        (3, KIND_BAD_LOG_EVENT),
    ]


@pytest.mark.parametrize(
    ("fields", "kind", "reason"),
    [
        ({"logEvents": None}, KIND_BAD_SUBSCRIPTION_RECORD, "logEvents is missing"),
        ({"logEvents": {"message": "x"}}, KIND_BAD_SUBSCRIPTION_RECORD, "logEvents is a JSON object"),
        ({"messageType": "DATA"}, KIND_UNKNOWN_MESSAGE_TYPE, 'messageType "DATA"'),
        ({"messageType": 1}, KIND_UNKNOWN_MESSAGE_TYPE, "messageType 1"),
    ],
)
def test_a_broken_subscription_record_is_malformed_as_a_whole(fields: dict[str, Any], kind: str, reason: str) -> None:
    record = kinesis(subscription_json(**fields))

    result = decode_record(record)

    assert result.events == []
    assert [(m.position, m.kind) for m in result.malformed] == [(record.position, kind)]
    assert reason in result.malformed[0].reason
    assert result.malformed[0].data == record.data


def test_a_data_message_with_no_log_events_is_empty_not_malformed() -> None:
    result = decode_record(kinesis(subscription_json(logEvents=[])))
    assert result == DecodeResult()


# --- malformed whole inputs ----------------------------------------------------------------------------------


def _gzip_with_bad_crc() -> bytes:
    data = bytearray(encode_subscription_record([cloudtrail_event()]))
    data[-8] ^= 0xFF  # the CRC32 of the trailer
    return bytes(data)


@pytest.mark.parametrize(
    ("data", "kind"),
    [
        # Explicit ids: gzip output carries the current time, and a test id that embeds it differs between the
        # two pytest-xdist workers when they collect across a second boundary.
        pytest.param(b"", KIND_EMPTY, id="empty"),
        pytest.param(b" \n\t ", KIND_EMPTY, id="whitespace"),
        pytest.param(gzip.compress(b""), KIND_EMPTY, id="gzip-of-nothing"),
        pytest.param(b"PK\x03\x04 a zip file", KIND_NOT_GZIP_OR_JSON, id="zip"),
        pytest.param(b"\x00\x01\xff\xfe binary", KIND_NOT_GZIP_OR_JSON, id="binary"),
        pytest.param(b"\x1f\x8b but not really gzip", KIND_CORRUPT_GZIP, id="gzip-magic-only"),
        pytest.param(_gzip_with_bad_crc(), KIND_CORRUPT_GZIP, id="gzip-bad-crc"),
        pytest.param(
            encode_subscription_record([cloudtrail_event()]) + b"trailing junk", KIND_CORRUPT_GZIP, id="gzip-junk-after"
        ),
        pytest.param(encode_subscription_record([cloudtrail_event()])[:-3], KIND_TRUNCATED_GZIP, id="gzip-cut-trailer"),
        pytest.param(encode_subscription_record([cloudtrail_event()])[:5], KIND_TRUNCATED_GZIP, id="gzip-cut-header"),
        pytest.param(b'{"eventVersion": "1.08", "eventName": "\xff\xfe"}', KIND_INVALID_UTF8, id="invalid-utf8"),
        pytest.param(gzip.compress(b'{"eventVersion": "\xc3\x28"}'), KIND_INVALID_UTF8, id="gzip-invalid-utf8"),
        pytest.param(b'{"eventVersion": "1.08", ', KIND_NOT_JSON, id="cut-json"),
        pytest.param(gzip.compress(b"CWL text, not JSON"), KIND_NOT_JSON, id="gzip-text"),
        pytest.param(b"42", KIND_NOT_OBJECT_OR_ARRAY, id="number"),
        pytest.param(gzip.compress(b'"a string"'), KIND_NOT_OBJECT_OR_ARRAY, id="gzip-string"),
        pytest.param(b"null", KIND_NOT_OBJECT_OR_ARRAY, id="null"),
        pytest.param(b'{"hello": "world"}', KIND_NOT_CLOUDTRAIL_EVENT, id="not-cloudtrail"),
        pytest.param(b'{"Records": {"eventVersion": "1.08"}}', KIND_BAD_LOG_FILE, id="records-not-a-list"),
    ],
)
def test_a_malformed_record_is_reported_once_with_its_position_and_bytes(data: bytes, kind: str) -> None:
    record = kinesis(data)

    result = decode_record(record)

    assert result.events == []
    assert [(m.position, m.kind) for m in result.malformed] == [(record.position, kind)]
    assert result.malformed[0].data == data
    assert result.malformed[0].reason
    assert kind in MALFORMED_KINDS


def test_trailing_zero_padding_after_gzip_is_ignored() -> None:
    result = decode_record(kinesis(encode_subscription_record([cloudtrail_event()]) + bytes(512)))
    assert len(result.events) == 1 and result.malformed == []


def test_a_gzip_bomb_is_refused_past_the_record_budget() -> None:
    bomb = gzip.compress(b"[" + b" " * (2 << 20) + b"]")

    result = decode_record(kinesis(bomb), DecodeBudget(record_bytes=1 << 20))

    assert kinds(result) == [KIND_TOO_LARGE]
    assert "bytes per record" in result.malformed[0].reason


def test_the_bytes_kept_for_a_huge_bad_record_are_capped_but_the_position_is_whole() -> None:
    sequence = "9" * 56
    huge = b"x" * (3 * MAX_MALFORMED_DATA)

    result = decode_records([kinesis(huge, sequence)])

    (item,) = result.malformed
    assert item.position == Position(SHARD, sequence)
    assert item.data == huge[:MAX_MALFORMED_DATA]


def test_a_decoder_bug_parks_that_record_and_the_batch_goes_on(monkeypatch: pytest.MonkeyPatch) -> None:
    original = decode._decode_subscription

    def explode(value: dict[str, Any], scope: Any) -> None:
        if value["logEvents"][0]["message"] == "boom":
            raise KeyError("simulated bug")
        original(value, scope)

    monkeypatch.setattr(decode, "_decode_subscription", explode)
    records = [kinesis(encode_subscription_record(["boom", cloudtrail_event()]), "1")]
    records.append(kinesis(encode_subscription_record([cloudtrail_event()]), "2"))

    result = decode_records(records)

    assert [(m.position.sequence, m.kind) for m in result.malformed] == [("1", KIND_DECODER_ERROR)]
    assert "simulated bug" in result.malformed[0].reason
    assert [e.position.sequence for e in result.events] == ["2"]


# --- files: CloudTrail log files, arrays, JSON lines, digests -----------------------------------------------


@pytest.mark.parametrize(
    "name", ["aws.execution.ssm-start-session.json", "aws.credential-access.ec2-get-password-data.json"]
)
def test_a_stratus_json_array_file_yields_every_event_with_its_index(name: str) -> None:
    path = corpus_path("stratus-red-team", name)
    expected = json.loads(path.read_bytes())

    result = decode_bytes(path.read_bytes(), name)

    assert_well_formed(result)
    assert result.malformed == []
    assert [e.data for e in result.events] == expected
    assert [e.position for e in result.events] == [Position(name, f"[{i}]") for i in range(len(expected))]


def test_a_cloudtrail_log_file_yields_its_records() -> None:
    path = corpus_path(LIBRARY, "SerializerTestFile.json")

    result = decode_bytes(path.read_bytes(), path.name)

    assert_well_formed(result)
    assert result.malformed == []
    assert [e.event_name for e in result.events] == [f"eventName{i}" for i in range(1, 7)]
    assert result.events[2].position == Position(path.name, "Records[2]")
    # These fixtures carry no eventID: they decode, and dedupe still tells them apart by content.
    assert all(e.event_id == "" for e in result.events)
    assert len({event_identity(e) for e in result.events}) == 6


def test_a_gzipped_log_file_decodes_like_its_uncompressed_twin() -> None:
    gzipped = corpus_path(LIBRARY, "SerializerTestFileCompact.json.gz")
    plain = corpus_path(LIBRARY, "SerializerTestFileCompact.json")

    from_gzip = decode_bytes(gzipped.read_bytes(), gzipped.name)
    from_plain = decode_bytes(plain.read_bytes(), plain.name)

    assert len(from_gzip.events) == 6 and from_gzip.malformed == []
    assert [e.data for e in from_gzip.events] == [e.data for e in from_plain.events]


def test_a_record_whose_fields_are_all_null_still_counts_as_an_event() -> None:
    path = corpus_path(LIBRARY, "SerializerAllFieldsNull.json")

    result = decode_bytes(path.read_bytes(), path.name)

    assert result.malformed == []
    assert [e.data["eventName"] for e in result.events] == [None, "eventName2"]
    assert result.events[0].event_name == ""


@pytest.mark.parametrize("name", ["SerializerTestFileBadFieldName.json", "SerializerTestFileNewFieldName.json"])
def test_a_record_without_the_cloudtrail_keys_is_reported_and_the_next_record_decodes(name: str) -> None:
    path = corpus_path(LIBRARY, name)

    result = decode_bytes(path.read_bytes(), name)

    assert [e.position.sequence for e in result.events] == ["Records[1]"]
    (item,) = result.malformed
    assert (item.position, item.kind) == (Position(name, "Records[0]"), KIND_NOT_CLOUDTRAIL_EVENT)
    assert "no eventVersion" in item.reason
    assert orjson.loads(item.data) == json.loads(path.read_bytes())["Records"][0]


def test_a_broken_record_in_a_log_file_is_malformed_alone() -> None:
    # Its first record never closes `userIdentity`, so it runs into the second one: that stretch is parked
    # with the parser's reason; nothing is read past a document that does not check out.
    path = corpus_path(LIBRARY, "SerializerTestFileBadJsonFormat.json")

    result = decode_bytes(path.read_bytes(), path.name)

    assert result.events == []
    assert (result.malformed[0].position.sequence, result.malformed[0].kind) == ("Records[0]", KIND_NOT_JSON)
    assert "line 35" in result.malformed[0].reason


def test_an_sns_notification_is_not_an_event() -> None:
    path = corpus_path(LIBRARY, "SQSMessageBody.json")
    assert kinds(decode_bytes(path.read_bytes(), path.name)) == [KIND_NOT_CLOUDTRAIL_EVENT]


def test_a_json_lines_file_yields_one_event_per_line_with_its_line_number() -> None:
    path = corpus_path("otrf-security-datasets", "ec2_proxy_s3_exfiltration_2020-09-14011940.json")
    lines = [line for line in path.read_bytes().splitlines() if line.strip()]

    result = decode_bytes(path.read_bytes(), path.name)

    assert_well_formed(result)
    assert result.malformed == []
    assert len(result.events) == len(lines) == 103
    assert result.events[11].position == Position(path.name, "line 12")
    assert result.events[11].raw == lines[11]


def test_json_lines_of_wrapped_events_are_reported_line_by_line() -> None:
    # The labelled stratus file wraps each event as {"technique": ..., "event": {...}}: not events themselves.
    path = corpus_path("stratus-red-team", "stratus-detonations.labelled.jsonl")

    result = decode_bytes(path.read_bytes(), path.name)

    lines = len(path.read_bytes().splitlines())
    assert result.events == []
    assert set(kinds(result)) == {KIND_NOT_CLOUDTRAIL_EVENT, KIND_MANY_MALFORMED}
    assert result.malformed[4].position == Position(path.name, "line 5")
    # Past the budget of entries per input, the rest is one entry with its count (lines > 100 here).
    kept = DEFAULT_BUDGET.malformed_entries
    assert len(result.malformed) == kept + 1
    assert result.malformed[-1].kind == KIND_MANY_MALFORMED
    assert f"{lines - kept} more malformed item(s)" in result.malformed[-1].reason


def test_a_bad_json_line_is_reported_and_the_other_lines_decode() -> None:
    lines = [
        json.dumps(cloudtrail_event(event_id="1")),
        "",
        '{"eventVersion": "1.08", "eventName": truncat',
        json.dumps(cloudtrail_event(event_id="2")),
        "   ",
        "17",
        json.dumps({"Records": [cloudtrail_event(event_id="3")]}),
    ]
    data = ("\r\n".join(lines) + "\n").encode()

    result = decode_bytes(data, "events.jsonl")

    assert [(e.position.sequence, e.event_id) for e in result.events] == [
        ("line 1", "1"),
        ("line 4", "2"),
        ("line 7 Records[0]", "3"),
    ]
    assert [(m.position.sequence, m.kind) for m in result.malformed] == [
        ("line 3", KIND_NOT_JSON),
        ("line 6", KIND_NOT_OBJECT_OR_ARRAY),
    ]
    assert result.malformed[0].data == lines[2].encode()


def test_a_single_event_object_file_yields_that_event() -> None:
    data = json.dumps(cloudtrail_event(), indent=2).encode() + b"\n"

    result = decode_bytes(data, "one.json")

    assert [e.position for e in result.events] == [Position("one.json")]
    assert result.events[0].raw == data.strip()


def test_a_utf8_byte_order_mark_is_tolerated() -> None:
    result = decode_bytes(b"\xef\xbb\xbf" + json.dumps([cloudtrail_event()]).encode(), "bom.json")
    assert len(result.events) == 1 and result.malformed == []


def test_a_digest_file_yields_nothing_and_is_counted() -> None:
    digest = {
        "awsAccountId": "123456789012",
        "digestStartTime": "2024-08-01T11:00:00Z",
        "digestEndTime": "2024-08-01T12:00:00Z",
        "digestS3Bucket": "trail-bucket",
        "digestS3Object": "AWSLogs/123456789012/CloudTrail-Digest/us-east-1/2024/08/01/x.json.gz",
        "previousDigestSignature": "abc",
        "logFiles": [{"s3Bucket": "trail-bucket", "s3Object": "AWSLogs/.../y.json.gz", "hashValue": "00"}],
    }

    result = decode_bytes(gzip.compress(json.dumps(digest).encode()), "x.json.gz")

    assert result == DecodeResult(digest_files=1)


def test_a_subscription_record_saved_to_a_file_decodes_with_log_event_paths() -> None:
    data = encode_subscription_record([cloudtrail_event(event_id="a"), "oops"])

    result = decode_bytes(data, "record.bin")

    assert [e.position for e in result.events] == [Position("record.bin", "logEvents[0]")]
    assert [m.position for m in result.malformed] == [Position("record.bin", "logEvents[1]")]


def test_concatenated_gzip_files_decode_document_by_document(tmp_path: Path) -> None:
    # `cat a.json.gz b.json.gz > both.gz`: two documents, read as `zcat` reads them.
    log_file = corpus_path(LIBRARY, "SerializerTestFileCompact.json.gz").read_bytes()
    stratus = stratus_events("aws.defense-evasion.organizations-leave.json")
    both = log_file + gzip.compress(json.dumps(stratus).encode())

    result = decode_bytes(both, "both.gz")

    assert result.malformed == []
    assert len(result.events) == 6 + len(stratus)
    assert result.events[0].position == Position("both.gz", "Records[0]")
    assert result.events[6].position == Position("both.gz", "document 2 [0]")
    assert [e.data for e in result.events[6:]] == stratus


def test_json_lines_split_across_gzip_members_are_read_as_one_stream() -> None:
    text = "".join(json.dumps(cloudtrail_event(event_id=str(i))) + "\n" for i in range(5)).encode()
    cut = text.index(b"\n", len(text) // 2) - 10  # in the middle of a line
    data = gzip.compress(text[:cut]) + gzip.compress(text[cut:])

    result = decode_bytes(data, "split.jsonl.gz")

    assert result.malformed == []
    assert [(e.position.sequence, e.event_id) for e in result.events] == [(f"line {i + 1}", str(i)) for i in range(5)]


def test_a_record_may_carry_a_file_format_too() -> None:
    data = json.dumps({"Records": [cloudtrail_event(event_id="x"), {"no": 1}, cloudtrail_event(event_id="y")]})

    result = decode_record(kinesis(data.encode(), "5"))

    assert [(e.position.sub_sequence, e.event_id) for e in result.events] == [(0, "x"), (2, "y")]
    assert [(m.position, m.kind) for m in result.malformed] == [(Position(SHARD, "5", 1), KIND_NOT_CLOUDTRAIL_EVENT)]


def test_gzip_integrity_is_checked_for_files_too() -> None:
    # A file is read as a stream: the events before the cut are read, and the cut is reported after them.
    path = corpus_path(LIBRARY, "SerializerTestFileCompact.json.gz")
    data = path.read_bytes()

    result = decode_bytes(data[:-1], path.name)

    assert len(result.events) == 6
    assert [(m.position, m.kind) for m in result.malformed] == [(Position(path.name), KIND_TRUNCATED_GZIP)]
    assert result.malformed[0].data.startswith(b'{"Records"')


# --- what counts as an event, identity, and the encoder ------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "is_event"),
    [
        (cloudtrail_event(), True),
        (cloudtrail_event(event_id=None), True),
        ({"eventVersion": "1.1", "eventName": None, "eventSource": None}, True),
        ({"eventName": "X", "eventSource": "s"}, False),
        ({"eventVersion": 1.08, "eventName": "X", "eventSource": "s"}, False),
        ({"eventVersion": "1.08", "eventSource": "s"}, False),
        ({"eventVersion": "1.08", "eventName": "X"}, False),
        ({"eventVersion": "1.08", "eventName": ["X"], "eventSource": "s"}, False),
        ([cloudtrail_event()], False),
        ("eventVersion", False),
    ],
)
def test_what_counts_as_a_cloudtrail_event(value: Any, is_event: bool) -> None:
    assert is_cloudtrail_event(value) is is_event


def test_event_identity_is_the_event_id_or_a_content_digest() -> None:
    def event(data: dict[str, Any]) -> CloudTrailEvent:
        return CloudTrailEvent(orjson.dumps(data), data, Position("x"))

    assert event_identity(event(cloudtrail_event(event_id="abc"))) == "abc"
    no_id = cloudtrail_event(event_id=None)
    reordered = dict(reversed(list(no_id.items())))
    other = cloudtrail_event(name="DeleteTrail", event_id=None)
    assert event_identity(event(no_id)) == event_identity(event(reordered))
    assert event_identity(event(no_id)) != event_identity(event(other))
    assert event_identity(event(no_id)).startswith("sha256:")


def test_the_encoder_writes_what_cloudwatch_logs_writes() -> None:
    data = encode_subscription_record(
        [cloudtrail_event(), b'{"eventVersion": "1.08"}', "plain text"], log_group="trail", owner="111122223333"
    )

    document = json.loads(zlib.decompress(data, 31))

    assert data[:2] == b"\x1f\x8b"
    assert document["messageType"] == "DATA_MESSAGE"
    assert (document["owner"], document["logGroup"]) == ("111122223333", "trail")
    assert {"logStream", "subscriptionFilters"} <= document.keys()
    assert [set(e) for e in document["logEvents"]] == [{"id", "timestamp", "message"}] * 3
    assert document["logEvents"][0]["timestamp"] == 1722514756000  # the event's eventTime
    assert json.loads(document["logEvents"][0]["message"]) == cloudtrail_event()
    assert [e["message"] for e in document["logEvents"][1:]] == ['{"eventVersion": "1.08"}', "plain text"]
    assert len({e["id"] for e in document["logEvents"]}) == 3


def test_the_encoder_writes_aws_health_check_control_messages() -> None:
    document = json.loads(gzip.decompress(encode_subscription_record([], message_type="CONTROL_MESSAGE")))
    assert document["messageType"] == "CONTROL_MESSAGE"
    assert document["logEvents"][0]["message"].startswith("CWL CONTROL MESSAGE")


# --- hostile input: one bad item is one bad item, budgets bound the rest --------------------------------------


def test_one_event_with_a_number_out_of_range_hides_nothing_in_its_log_file() -> None:
    # orjson refuses 1e400; jq reads it (as the largest double), so the event is matched like the others.
    text = (
        b'{"Records": [' + orjson.dumps(cloudtrail_event(event_id="a")) + b", "
        + orjson.dumps(cloudtrail_event(event_id="b"))[:-1] + b', "odd": 1e400}, '
        + orjson.dumps(cloudtrail_event(event_id="c")) + b"]}"
    )  # fmt: skip

    result = decode_bytes(text, "trail.json")

    assert [e.event_id for e in result.events] == ["a", "b", "c"]
    assert result.events[1].data["odd"] == 1.7976931348623157e308
    assert b"1e400" in result.events[1].raw  # the raw text as received, never written again
    assert result.malformed == []


def test_an_event_nested_too_deep_is_parked_alone_and_its_neighbours_decode() -> None:
    deep = b'{"eventVersion": "1.08", "eventName": "X", "eventSource": "s", "x": ' + b"[" * 2000 + b"]" * 2000 + b"}"
    shallow = b'{"eventVersion": "1.08", "eventName": "Y", "eventSource": "s", "x": ' + b"[" * 300 + b"]" * 300 + b"}"
    text = b"[" + orjson.dumps(cloudtrail_event(event_id="a")) + b"," + deep + b"," + shallow + b"]"

    result = decode_bytes(text, "events.json")

    # 300 levels were too deep for orjson to write again: the slice is kept as it came, so it decodes.
    assert [e.position.sequence for e in result.events] == ["[0]", "[2]"]
    assert [(m.position.sequence, m.kind) for m in result.malformed] == [("[1]", decode.KIND_TOO_DEEP)]


def test_a_record_with_too_many_log_events_is_one_entry_whatever_its_count() -> None:
    # 200,000 items that are not log events, from a record of a few hundred bytes
    data = gzip.compress(b'{"messageType": "DATA_MESSAGE", "logEvents": [' + b"0," * 199_999 + b"0]}")
    record = kinesis(data)

    result = decode_record(record)

    assert [(m.position, m.kind) for m in result.malformed] == [(record.position, decode.KIND_TOO_MANY_ITEMS)]
    assert "200000 log events" in result.malformed[0].reason
    assert len(result.malformed[0].data) <= MAX_MALFORMED_DATA


def test_bad_log_events_past_the_budget_fold_into_one_entry() -> None:
    record = kinesis(subscription_json(logEvents=[{"id": str(i)} for i in range(1_000)]))

    result = decode_record(record, DecodeBudget(malformed_entries=10))

    assert [m.kind for m in result.malformed] == [KIND_BAD_LOG_EVENT] * 10 + [KIND_MANY_MALFORMED]
    assert result.malformed[-1].position == record.position
    assert "990 more malformed item(s)" in result.malformed[-1].reason


def test_an_event_over_the_event_budget_is_parked_alone() -> None:
    big = cloudtrail_event(event_id="big")
    big["userAgent"] = "x" * 5_000
    record = kinesis(encode_subscription_record([cloudtrail_event(event_id="a"), big, cloudtrail_event(event_id="b")]))

    result = decode_record(record, DecodeBudget(event_bytes=4_000))

    assert [e.event_id for e in result.events] == ["a", "b"]
    assert [(m.position.sub_sequence, m.kind) for m in result.malformed] == [(1, decode.KIND_EVENT_TOO_LARGE)]


def test_a_file_is_read_in_parts_and_an_endless_one_stops_at_its_budget() -> None:
    line = orjson.dumps(cloudtrail_event()) + b"\n"

    parts = list(decode_file(iter([line] * 5_000), "many.jsonl", events_per_part=1_000))
    assert [len(part.events) for part in parts][:5] == [1_000] * 5

    endless = iter(lambda: line, None)  # never ends
    budget = DecodeBudget(file_bytes=len(line) * 100)
    result = DecodeResult()
    for part in decode_file(endless, "endless.jsonl", budget):
        result.extend(part)
    assert len(result.events) == 100
    assert [m.kind for m in result.malformed] == [KIND_TOO_LARGE]


def test_invalid_utf8_is_reported_at_its_byte() -> None:
    result = decode_bytes(b'{"eventVersion": "1.08", "eventName": "ab\xff"}', "bad.json")
    assert result.malformed[0].kind == KIND_INVALID_UTF8
    assert "byte 41" in result.malformed[0].reason


def test_a_broken_json_line_holding_an_array_does_not_stop_the_lines_after_it() -> None:
    broken = b"[" + orjson.dumps(cloudtrail_event(event_id="2")) + b' "x"'
    lines = [orjson.dumps(cloudtrail_event(event_id="1")), broken, orjson.dumps(cloudtrail_event(event_id="3"))]

    result = decode_bytes(b"\n".join(lines), "lines.jsonl")

    assert [e.event_id for e in result.events] == ["1", "2", "3"]
    assert [m.position.sequence for m in result.malformed] == ["line 2 [1]"]


def test_a_source_that_fails_mid_file_raises_its_own_error_after_the_parts_before() -> None:
    def chunks() -> Iterator[bytes]:
        yield b"\n".join(orjson.dumps(cloudtrail_event(event_id=str(i))) for i in range(10)) + b"\n"
        raise PermissionError(13, "denied")

    parts = decode_file(chunks(), "gone.jsonl", events_per_part=5)

    assert len(next(parts).events) == 5
    with pytest.raises(PermissionError):
        list(parts)
