"""Decode raw records and files into CloudTrail events; malformed input is reported, never raised.

Formats, detected on content (never on file names):

- gzip or not: gzip is recognised by its magic bytes (1f 8b); concatenated members (``cat a.gz b.gz``) are
  read as one input. Trailing zero padding after the last member is ignored; any other trailing byte, a
  CRC error or a stream that ends early makes the whole input malformed (integrity failures are parked
  whole, with the original bytes, rather than half-read).
- CloudWatch Logs subscription record (``messageType``): DATA_MESSAGE yields one event per ``logEvents[]``
  message; CONTROL_MESSAGE is skipped and counted in ``control_messages``.
- CloudTrail log file ``{"Records": [...]}``; a digest file (no ``Records``, digest keys such as
  ``digestStartTime`` or ``logFiles``) yields nothing and is counted in ``digest_files``.
- A JSON array of events, JSON lines (one document per line, blank lines ignored; each line may itself be
  any of these shapes), or a single event object.

What counts as a CloudTrail event: a JSON object whose ``eventVersion`` is a string and which has the keys
``eventName`` and ``eventSource`` with a string or null value. Null is accepted because AWS's own
processing-library fixtures carry records with every field null; a rule comparing ``.eventName`` sees
null either way. ``eventID`` is optional (those fixtures have none): such events decode normally and
``event_identity()`` gives dedupe a content digest for them, so id-less events never collapse into one.

Positions: for a Kinesis record every item keeps the record's origin (shard) and sequence number and gets
``sub_sequence`` = its index in the record (for a subscription record, the index in ``logEvents``);
whole-record problems carry the record's own position. For files, ``origin`` is the file name and
``sequence`` a path a person can follow: ``line 12``, ``Records[3]``, ``[3]``, ``logEvents[3]``,
``member 2 Records[0]`` (``zcat FILE | jq '.Records[3]'`` finds it); whole-file problems have no sequence.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
import zlib
from collections import Counter
from collections.abc import Generator, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

import orjson
from zlib_ng import zlib_ng

from stream_processor import json_out
from stream_processor.json_items import NOT_PARSED, ValueScan, guess_object, skip_whitespace
from stream_processor.model import CloudTrailEvent, DecodeResult, MalformedInput, Position, RawRecord

KIND_EMPTY: Final = "empty"
"""No bytes, or only whitespace, where a record or file should be (CloudTrail never writes these)."""
KIND_NOT_GZIP_OR_JSON: Final = "not_gzip_or_json"
"""Raw input that is neither gzip (no magic bytes) nor anything JSON-shaped."""
KIND_TRUNCATED_GZIP: Final = "truncated_gzip"
"""A gzip stream that ends before its end-of-member trailer."""
KIND_CORRUPT_GZIP: Final = "corrupt_gzip"
"""A gzip stream zlib rejects (bad header, bad deflate data, CRC or length mismatch, trailing bytes)."""
KIND_TOO_LARGE: Final = "too_large"
"""Decompresses past the budget's bytes per record or per file (a gzip bomb, or an input too big to hold)."""
KIND_TOO_MANY_ITEMS: Final = "too_many_items"
"""A record holding more log events or array items than the budget's items per record."""
KIND_EVENT_TOO_LARGE: Final = "event_too_large"
"""One event (a log event's message, an array item, a JSON line) longer than the budget's bytes per event."""
KIND_TOO_DEEP: Final = "too_deep"
"""JSON nested deeper than MAX_DEPTH levels (the parser's own limit)."""
KIND_MANY_MALFORMED: Final = "many_malformed"
"""The malformed items of one input past the budget's entries per input, folded into one entry."""
KIND_INVALID_UTF8: Final = "invalid_utf8"
"""JSON-looking bytes that are not valid UTF-8."""
KIND_NOT_JSON: Final = "not_json"
"""Text that does not parse as JSON (a whole document, a JSON line, or a log event's message)."""
KIND_NOT_OBJECT_OR_ARRAY: Final = "not_object_or_array"
"""A document or JSON line that is valid JSON but a string, number, boolean or null."""
KIND_NOT_CLOUDTRAIL_EVENT: Final = "not_cloudtrail_event"
"""A JSON value where an event belongs that is not a CloudTrail event (see the module docstring)."""
KIND_BAD_SUBSCRIPTION_RECORD: Final = "bad_subscription_record"
"""A CloudWatch Logs DATA_MESSAGE whose ``logEvents`` is missing or not a list."""
KIND_BAD_LOG_EVENT: Final = "bad_log_event"
"""One ``logEvents[]`` entry that is not an object with a string ``message``."""
KIND_UNKNOWN_MESSAGE_TYPE: Final = "unknown_message_type"
"""A CloudWatch Logs object whose ``messageType`` is neither DATA_MESSAGE nor CONTROL_MESSAGE."""
KIND_BAD_LOG_FILE: Final = "bad_log_file"
"""A CloudTrail log file whose ``Records`` is not a list."""
KIND_DECODER_ERROR: Final = "decoder_error"
"""A bug in this module: the record is parked whole instead of crashing the worker."""

MALFORMED_KINDS: Final = frozenset(
    {
        KIND_EMPTY,
        KIND_NOT_GZIP_OR_JSON,
        KIND_TRUNCATED_GZIP,
        KIND_CORRUPT_GZIP,
        KIND_TOO_LARGE,
        KIND_TOO_MANY_ITEMS,
        KIND_EVENT_TOO_LARGE,
        KIND_TOO_DEEP,
        KIND_MANY_MALFORMED,
        KIND_INVALID_UTF8,
        KIND_NOT_JSON,
        KIND_NOT_OBJECT_OR_ARRAY,
        KIND_NOT_CLOUDTRAIL_EVENT,
        KIND_BAD_SUBSCRIPTION_RECORD,
        KIND_BAD_LOG_EVENT,
        KIND_UNKNOWN_MESSAGE_TYPE,
        KIND_BAD_LOG_FILE,
        KIND_DECODER_ERROR,
    }
)

MAX_MALFORMED_DATA: Final = 256 * 1024
"""Bytes of a malformed item kept for inspection; the position is always kept in full."""
MAX_REASON_CHARS: Final = 500
MAX_DEPTH: Final = 1024
"""Nesting levels of one JSON value: orjson's own limit, enforced while parsing at no cost."""
_MIB: Final = 1024 * 1024


@dataclass(frozen=True, slots=True)
class DecodeBudget:
    """What one input may cost, so that no record or file, however crafted, can exhaust a worker.

    An input over a whole-input budget is one malformed entry (kind, position, counts, a bounded sample of its
    bytes); an event over the event budget is parked alone and the rest of its input is decoded. The
    defaults sit well above what AWS writes: a Kinesis record is at most 1 MB compressed and a CloudWatch
    Logs batch at most 10,000 log events; a CloudTrail event is at most 256 KB.
    """

    record_bytes: int = 8 * _MIB
    """Decompressed bytes of one Kinesis record (or Lambda record)."""
    file_bytes: int = 4096 * _MIB
    """Decompressed bytes of one file or S3 object (read as a stream: memory does not grow with it)."""
    record_items: int = 10_000
    """Log events (or array items) in one Kinesis record."""
    event_bytes: int = 1 * _MIB
    """Bytes of one event's JSON text."""
    malformed_entries: int = 100
    """Malformed items kept one by one per input; the rest of that input's are folded into one entry."""

    def __post_init__(self) -> None:
        for name in ("record_bytes", "file_bytes", "record_items", "event_bytes", "malformed_entries"):
            if getattr(self, name) < 1:
                raise ValueError(f"decode budget {name} must be at least 1, not {getattr(self, name)}")


DEFAULT_BUDGET: Final = DecodeBudget()

DATA_MESSAGE: Final = "DATA_MESSAGE"
CONTROL_MESSAGE: Final = "CONTROL_MESSAGE"
CONTROL_MESSAGE_TEXT: Final = "CWL CONTROL MESSAGE: Checking health of destination Kinesis stream."

_GZIP_MAGIC: Final = b"\x1f\x8b"
_UTF8_BOM: Final = b"\xef\xbb\xbf"
_DIGEST_KEYS: Final = frozenset(
    {"digestStartTime", "digestEndTime", "digestS3Bucket", "digestS3Object", "logFiles", "previousDigestSignature"}
)
_ABSENT: Final = object()


# ---------------------------------------------------------------------------------------------------------
# Public API


def decode_record(record: RawRecord, budget: DecodeBudget = DEFAULT_BUDGET) -> DecodeResult:
    """Decode one Kinesis record (normally a gzip CloudWatch Logs subscription payload, but any format)."""
    result = DecodeResult()
    _decode_record_guarded(record.data, _Sink(result, record.position, budget, by_path=False))
    return result


def decode_records(records: Iterable[RawRecord], budget: DecodeBudget = DEFAULT_BUDGET) -> DecodeResult:
    """Decode a batch of records; a bad record is reported in ``malformed`` and never stops the others."""
    result = DecodeResult()
    for record in records:
        _decode_record_guarded(record.data, _Sink(result, record.position, budget, by_path=False))
    return result


def decode_file(
    chunks: Iterable[bytes], origin: str, budget: DecodeBudget = DEFAULT_BUDGET, *, events_per_part: int = 500
) -> Iterator[DecodeResult]:
    """Decode a file or object read as a stream of byte chunks, in parts of about ``events_per_part`` events.

    ``origin`` (the file name, ``-`` for stdin) names it in positions. The file is never held whole: memory
    stays that of one part and one event, whatever the file's size. A problem found late (a gzip trailer
    that does not check out, the file budget) is reported after the events read before it.

    Raises:
        Whatever iterating ``chunks`` raises (an unreadable file or object): that is the caller's to report.
    """
    result = DecodeResult()
    sink = _Sink(result, Position(origin), budget, by_path=True)
    try:
        for _ in _decode_file_input(_read(chunks), sink):
            if len(sink.result.events) + len(sink.result.malformed) >= events_per_part:
                yield sink.take()
    except _ReadError as error:  # the source failed (gone, denied, I/O): the caller's to report, not ours
        raise error.original from None
    except Exception as exc:  # a decoder bug must park the rest of the input, not crash: see KIND_DECODER_ERROR
        sink.malformed(sink.position, KIND_DECODER_ERROR, f"{type(exc).__name__}: {exc}", b"")
    sink.finish()
    yield sink.take()


class _ReadError(Exception):
    """An exception of the chunks' source, carried through the decoder untouched."""

    def __init__(self, original: Exception) -> None:
        super().__init__(str(original))
        self.original = original


def _read(chunks: Iterable[bytes]) -> Iterator[bytes]:
    iterator = iter(chunks)
    while True:
        try:
            chunk = next(iterator)
        except StopIteration:
            return
        except Exception as error:
            raise _ReadError(error) from error
        yield chunk


def decode_bytes(data: bytes, origin: str, budget: DecodeBudget = DEFAULT_BUDGET) -> DecodeResult:
    """Decode a whole file held in memory; see `decode_file`."""
    merged = DecodeResult()
    for part in decode_file((data,), origin, budget):
        merged.extend(part)
    return merged


def is_cloudtrail_event(value: Any) -> bool:
    """True if ``value`` (a parsed JSON value) counts as a CloudTrail event (see the module docstring)."""
    if type(value) is not dict:
        return False
    name = value.get("eventName", _ABSENT)
    source = value.get("eventSource", _ABSENT)
    return (
        type(value.get("eventVersion")) is str
        and (name is None or type(name) is str)
        and (source is None or type(source) is str)
    )


def event_identity(event: CloudTrailEvent) -> str:
    """The event's id for dedupe: its ``eventID``, or a digest of its content when it has none.

    The digest is over the canonical (key-sorted) JSON, so the same event read from a Kinesis record and
    from an S3 file gets the same identity, and two different id-less events never share one.
    """
    event_id = event.data.get("eventID")
    if type(event_id) is str and event_id:
        return event_id
    canonical = orjson.dumps(event.data, option=orjson.OPT_SORT_KEYS)
    return "sha256:" + hashlib.sha256(canonical).hexdigest()


def encode_subscription_record(
    events: Sequence[dict[str, Any] | bytes | str],
    *,
    message_type: str = DATA_MESSAGE,
    log_group: str = "aws-cloudtrail-logs",
    log_stream: str = "123456789012_CloudTrail_us-east-1",
    owner: str = "123456789012",
    subscription_filters: Sequence[str] = ("cloudtrail-to-kinesis",),
    timestamp_ms: int | None = None,
    compresslevel: int = 6,
) -> bytes:
    """Build what CloudWatch Logs puts on Kinesis for these events: the inverse of decoding.

    A dict is serialised; bytes must be UTF-8 and, like a str, become the message verbatim (so tests can
    send messages that are not JSON). Each log event's timestamp is the event's ``eventTime`` when it has
    one, else ``timestamp_ms`` or now. A CONTROL_MESSAGE without events gets AWS's health-check text.
    """
    now_ms = int(time.time() * 1000) if timestamp_ms is None else timestamp_ms
    messages: list[tuple[str, int]] = []
    for event in events:
        if isinstance(event, dict):
            messages.append((json_out.dumps_text(event), _event_time_ms(event, now_ms)))
        elif isinstance(event, bytes):
            messages.append((event.decode(), now_ms))
        else:
            messages.append((event, now_ms))
    if message_type == CONTROL_MESSAGE and not messages:
        messages.append((CONTROL_MESSAGE_TEXT, now_ms))
    control = message_type == CONTROL_MESSAGE
    document = {
        "messageType": message_type,
        "owner": "CloudwatchLogs" if control else owner,
        "logGroup": "" if control else log_group,
        "logStream": "" if control else log_stream,
        "subscriptionFilters": [] if control else list(subscription_filters),
        "logEvents": [
            {"id": "" if control else f"{ts:020d}{index:036d}", "timestamp": ts, "message": message}
            for index, (message, ts) in enumerate(messages)
        ],
    }
    compressor = zlib.compressobj(compresslevel, zlib.DEFLATED, 31)
    return compressor.compress(orjson.dumps(document)) + compressor.flush()


# ---------------------------------------------------------------------------------------------------------
# Positions and results


class _Sink:
    """Collects what one input decodes to and names positions: by path for files, by index for records.

    Malformed items are kept one by one up to the budget's ``malformed_entries``; past it they are only counted,
    and `finish` reports them as one entry, so a record of 200,000 bad items costs one entry, not 200,000.
    """

    __slots__ = (
        "budget",
        "by_path",
        "first_folded",
        "folded",
        "kept",
        "last_folded",
        "next_index",
        "origin",
        "position",
        "result",
        "sequence",
    )

    def __init__(self, result: DecodeResult, position: Position, budget: DecodeBudget, *, by_path: bool) -> None:
        self.result = result
        self.position = position
        self.origin = position.origin
        self.sequence = position.sequence
        self.budget = budget
        self.by_path = by_path
        self.next_index = 0
        self.kept = 0
        self.folded: Counter[str] = Counter()
        self.first_folded: Position | None = None
        self.last_folded: Position | None = None

    def at(self, prefix: str, label: str) -> Position:
        """The position of the next item; ``label`` (e.g. ``Records[3]``) is only used for files."""
        if self.by_path:
            return Position(self.origin, prefix + label)
        index = self.next_index
        self.next_index = index + 1
        return Position(self.origin, self.sequence, index)

    def malformed(self, position: Position, kind: str, reason: str, data: bytes) -> None:
        if self.kept >= self.budget.malformed_entries:
            self.folded[kind] += 1
            if self.first_folded is None:
                self.first_folded = position
            self.last_folded = position
            return
        self.kept += 1
        self.result.malformed.append(MalformedInput(position, kind, _bounded_reason(reason), data[:MAX_MALFORMED_DATA]))

    def finish(self, sample: bytes = b"") -> None:
        """Report the malformed items past the budget as one entry with their counts."""
        if not self.folded:
            return
        count = sum(self.folded.values())
        kinds = ", ".join(f"{kind} x{number}" for kind, number in self.folded.most_common())
        reason = (
            f"{count} more malformed item(s) after the first {self.kept} (budget: malformed entries per input), "
            f"from {self.first_folded} to {self.last_folded}: {kinds}"
        )
        self.result.malformed.append(
            MalformedInput(self.position, KIND_MANY_MALFORMED, reason, sample[:MAX_MALFORMED_DATA])
        )
        self.folded.clear()

    def take(self) -> DecodeResult:
        taken, self.result = self.result, DecodeResult()
        return taken


def _bounded_reason(reason: str) -> str:
    if len(reason) > MAX_REASON_CHARS:
        return reason[: MAX_REASON_CHARS - 3] + "..."
    return reason


class _Scope:
    """One document inside an input: the input itself, one gzip member, or one JSON line.

    ``whole`` is computed on first use so a JSON line costs a record index only when something needs it.
    """

    __slots__ = ("_whole", "data", "label", "payload", "prefix", "sink")

    def __init__(self, sink: _Sink, data: bytes, whole: Position | None, prefix: str, label: str) -> None:
        self.sink = sink
        self.data = data  # kept with a whole-document problem: the input as received
        self.payload = data  # the document's JSON text (decompressed), the raw of a single-event document
        self._whole = whole
        self.prefix = prefix
        self.label = label

    def whole(self) -> Position:
        if self._whole is None:
            self._whole = self.sink.at("", self.label)
        return self._whole

    def malformed_whole(self, kind: str, reason: str) -> None:
        self.sink.malformed(self.whole(), kind, reason, self.data)


# ---------------------------------------------------------------------------------------------------------
# Parsing one piece of JSON text


class _Unparsed(Exception):
    """A piece of text that is not one JSON value; ``kind`` says why (not_json, invalid_utf8, too_deep)."""

    def __init__(self, kind: str, reason: str) -> None:
        super().__init__(reason)
        self.kind = kind
        self.reason = reason


_DOUBLE_MAX: Final = 1.7976931348623157e308
_INT64_MIN: Final = -(1 << 63)
_UINT64_MAX: Final = (1 << 64) - 1


def _jq_float(text: str) -> float:
    """A number as jq reads it: out-of-range magnitudes become the largest double, as in jq."""
    value = float(text)
    if value == float("inf"):
        return _DOUBLE_MAX
    if value == float("-inf"):
        return -_DOUBLE_MAX
    return value


def _jq_int(text: str) -> int | float:
    """An integer as orjson reads it: within 64 bits an int, beyond them a double."""
    value = int(text)
    return value if _INT64_MIN <= value <= _UINT64_MAX else _jq_float(text)


_JQ_CONSTANTS: Final = {"NaN": None, "Infinity": _DOUBLE_MAX, "-Infinity": -_DOUBLE_MAX}


def loads_like_jq(raw: bytes) -> Any:
    """Parse one JSON value as libjq would accept it: orjson first, a tolerant parser only when it refuses.

    orjson refuses numbers beyond a double's range (``1e400``) and ``NaN``/``Infinity``, which jq reads; an
    event carrying one must still be matched (refusing it would let an attacker hide it), so such text is
    read again by the standard library with jq's conversions. Anything else orjson refuses is not JSON.

    Raises:
        _Unparsed: the text is not one JSON value (with the kind to report).
    """
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as error:
        first = error
    message = str(first)
    if "depth limit" in message or "recursion" in message:
        raise _Unparsed(KIND_TOO_DEEP, f"nested deeper than {MAX_DEPTH} levels") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as error:
        raise _Unparsed(KIND_INVALID_UTF8, f"not valid UTF-8: byte {error.start} (0x{raw[error.start]:02x})") from None
    if "number" in message or "expected a JSON value" in message:
        try:
            return json.loads(text, parse_float=_jq_float, parse_int=_jq_int, parse_constant=_JQ_CONSTANTS.__getitem__)
        except (ValueError, RecursionError):
            pass
    raise _Unparsed(KIND_NOT_JSON, f"not JSON: {message}")


def _loads_slice(raw: bytes) -> Any:
    """The array slicer's parser: ValueError when the guessed slice is not one value."""
    return orjson.loads(raw)


# ---------------------------------------------------------------------------------------------------------
# Records: small, held whole, the hot path


def _decode_record_guarded(data: bytes, sink: _Sink) -> None:
    """Decode one record into its own result first, so a bug mid-way cannot leave half a record behind."""
    target = sink.result
    sink.result = DecodeResult()
    try:
        _decode_record_input(data, sink)
        sink.finish(data)
    except Exception as exc:  # a decoder bug must park the input, not crash the worker: see KIND_DECODER_ERROR
        sink.result = DecodeResult()
        sink.kept = 0
        sink.malformed(sink.position, KIND_DECODER_ERROR, f"{type(exc).__name__}: {exc}", data)
    target.extend(sink.result)
    sink.result = target


def _decode_record_input(data: bytes, sink: _Sink) -> None:
    top = _Scope(sink, data, sink.position, "", "")
    if data[:2] != _GZIP_MAGIC:
        if len(data) > sink.budget.record_bytes:
            top.malformed_whole(
                KIND_TOO_LARGE, f"{len(data)} bytes, more than {sink.budget.record_bytes} (budget: bytes per record)"
            )
            return
        _decode_document(data, top, gzipped=False)
        return
    members, kind, reason = _gunzip(data, sink.budget.record_bytes, "record")
    if kind:
        top.malformed_whole(kind, reason)
        return
    if len(members) == 1:
        _decode_document(members[0], top, gzipped=True)
        return
    # Several members: each is its own document when each parses (``cat a.json.gz b.json.gz``); otherwise
    # they are pieces of one stream (a JSON-lines file appended to in chunks) and are read joined.
    parsed: list[Any] = []
    for member in members:
        try:
            parsed.append(orjson.loads(_strip_bom(member)))
        except orjson.JSONDecodeError:
            _decode_document(b"".join(members), top, gzipped=True)
            return
    for number, (member, value) in enumerate(zip(members, parsed, strict=True), 1):
        label = f"member {number}"
        scope = _Scope(sink, member, None, label + " ", label)
        scope.payload = _strip_bom(member)
        _dispatch(value, scope)


# zlib-ng's stub declares `error` as an instance; it is the class it raises.
_INFLATE_ERROR: Final[type[Exception]] = zlib_ng.error  # type: ignore[assignment]


def _gunzip(data: bytes, limit: int, what: str) -> tuple[list[bytes], str, str]:
    """All gzip members of ``data``, or ([], kind, reason) for the first integrity failure.

    zlib-ng, not the standard zlib: it inflates CloudWatch Logs records in half the time (1.2 against
    2.2 µs per event in `make bench`'s traffic), and inflating was a third of decoding.
    """
    members: list[bytes] = []
    rest = data
    total = 0
    number = 0
    while True:
        number += 1
        inflater = zlib_ng.decompressobj(31)
        room = limit - total
        try:
            out = inflater.decompress(rest, room + 1)
        except _INFLATE_ERROR as exc:
            return [], KIND_CORRUPT_GZIP, f"gzip member {number}: {exc}"
        if len(out) > room:
            return [], KIND_TOO_LARGE, f"decompresses to more than {limit} bytes (budget: bytes per {what})"
        if not inflater.eof:
            return [], KIND_TRUNCATED_GZIP, f"gzip member {number} ends early, after {len(out)} bytes of output"
        total += len(out)
        members.append(out)
        rest = inflater.unused_data
        if not rest:
            return members, "", ""
        if rest[:2] != _GZIP_MAGIC:
            if rest.count(0) == len(rest):
                return members, "", ""
            return [], KIND_CORRUPT_GZIP, f"{len(rest)} bytes of trailing data after gzip member {number}"


_DENSITY_CHECKED_BYTES: Final = 1024 * 1024
_MIN_BYTES_PER_VALUE: Final = 8


def _too_dense(text: bytes) -> str:
    """Why a large text would cost far more memory parsed than its size, or "".

    Each JSON object, array or string costs Python about 50-60 bytes however short its text: 16 MiB of
    ``{},{},…`` is 5.6 million dicts, half a gigabyte. CloudTrail has one object or array per ~160 bytes and
    one string per ~23; past one of either per 8 bytes the text is refused before parsing. Only texts over a
    MiB are counted, so ordinary records pay nothing.
    """
    if len(text) <= _DENSITY_CHECKED_BYTES:
        return ""
    values = text.count(b"{") + text.count(b"[") + text.count(b'"') // 2
    if values * _MIN_BYTES_PER_VALUE <= len(text):
        return ""
    return (
        f"{values} objects, arrays or strings in {len(text)} bytes: far denser than CloudTrail, too costly to "
        "parse (budget: items per record)"
    )


def _strip_bom(payload: bytes) -> bytes:
    return payload[3:] if payload[:3] == _UTF8_BOM else payload


def _decode_document(payload: bytes, scope: _Scope, *, gzipped: bool) -> None:
    """A record's text: one orjson parse for the usual subscription object, the text reader for the rest."""
    payload = _strip_bom(payload)
    scope.payload = payload
    dense = _too_dense(payload)
    if dense:
        scope.malformed_whole(KIND_TOO_MANY_ITEMS, dense)
        return
    if _RECORDS_HEAD.match(payload) is None and payload.lstrip()[:1] != b"[":
        try:
            value = orjson.loads(payload)
        except orjson.JSONDecodeError:
            pass
        else:
            _dispatch(value, scope)
            return
    # Event arrays and log files are sliced item by item (one bad item is one bad item); text that is not
    # one document is read as documents or lines.
    for _ in _decode_text(_Reader(iter((payload,)), scope.sink.budget.record_bytes, "record"), scope, gzipped):
        pass


# ---------------------------------------------------------------------------------------------------------
# Text read front to back: log files and arrays item by item, other documents line by line


class _Broken(Exception):
    """The text itself failed (gzip integrity, a budget): reported once, reading stops."""

    def __init__(self, kind: str, reason: str) -> None:
        super().__init__(reason)
        self.kind = kind
        self.reason = reason


_PIECE_BYTES: Final = 1024 * 1024


def _inflate(chunks: Iterator[bytes], first: bytes) -> Iterator[bytes]:
    """The decompressed text of a gzip stream (every member, as ``zcat`` reads them), piece by piece.

    Raises:
        _Broken: corrupt or truncated gzip, or trailing bytes that are not zero padding.
    """
    pending = first
    number = 1
    inflater = zlib_ng.decompressobj(31)
    while True:
        if not pending:
            pending = next(chunks, b"")
            if not pending:
                raise _Broken(KIND_TRUNCATED_GZIP, f"gzip member {number} ends early")
        try:
            out = inflater.decompress(pending, _PIECE_BYTES)
        except _INFLATE_ERROR as exc:
            raise _Broken(KIND_CORRUPT_GZIP, f"gzip member {number}: {exc}") from None
        pending = inflater.unconsumed_tail
        if out:
            yield out
        if not inflater.eof:
            continue
        rest = inflater.unused_data + pending
        while len(rest) < 2:
            more = next(chunks, b"")
            if not more:
                break
            rest += more
        while rest and rest.count(0) == len(rest):  # zero padding after the last member is tolerated
            rest = next(chunks, b"")
        if not rest:
            return
        if rest[:2] != _GZIP_MAGIC:
            raise _Broken(KIND_CORRUPT_GZIP, f"trailing data after gzip member {number}")
        number += 1
        inflater = zlib_ng.decompressobj(31)
        pending = rest


class _Reader:
    """Text consumed front to back from pieces, holding only what is not consumed yet.

    Indices returned by a method are into ``buffer`` and valid until the next call (a read may compact the
    buffer, dropping what was consumed).
    """

    __slots__ = ("before", "buffer", "counted", "ended", "limit", "newlines", "pieces", "read", "start", "what")

    def __init__(self, pieces: Iterator[bytes], limit: int, what: str) -> None:
        self.pieces = pieces
        self.buffer = b""
        self.start = 0
        self.read = 0
        self.limit = limit
        self.what = what
        self.ended = False
        self.newlines = 0  # newlines in the text before `counted`
        self.counted = 0
        self.before = 10  # the byte before the buffer (dropped): the text starts at the start of a line

    @property
    def line(self) -> int:
        """The line number where the unconsumed text starts."""
        self._count_newlines()
        return self.newlines + 1

    def _count_newlines(self) -> None:
        """Count the newlines consumed since the last count (lazily: only line numbers need them)."""
        if self.counted < self.start:
            # find first: memchr, several times faster than count on the usual one-line log file
            if self.buffer.find(b"\n", self.counted, self.start) >= 0:
                self.newlines += self.buffer.count(b"\n", self.counted, self.start)
            self.counted = self.start

    def more(self) -> bool:
        """Read the next piece; False when the text has ended.

        Raises:
            _Broken: the stream broke, or the text grew past the budget.
        """
        if self.ended:
            return False
        try:
            piece = next(self.pieces, None)
        except _Broken:
            self.ended = True
            raise
        if piece is None:
            self.ended = True
            return False
        self.read += len(piece)
        if self.read > self.limit:
            self.ended = True
            raise _Broken(
                KIND_TOO_LARGE, f"decompresses to more than {self.limit} bytes (budget: bytes per {self.what})"
            )
        self._count_newlines()  # before what is consumed is dropped
        if self.start:
            self.before = self.buffer[self.start - 1]
        self.buffer = self.buffer[self.start :] + piece
        self.counted -= self.start
        self.start = 0
        return True

    def head(self, size: int) -> bytes:
        """Up to ``size`` unconsumed bytes, without consuming them."""
        while len(self.buffer) - self.start < size and self.more():
            pass
        return self.buffer[self.start : self.start + size]

    def consume_to(self, end: int) -> bytes:
        """Consume up to ``end`` (an index from this reader) and return what was consumed."""
        taken = self.buffer[self.start : end]
        self.start = end
        return taken

    def at_line_start(self) -> bool:
        """Whether the unconsumed text starts a line (only whitespace consumed since the last newline)."""
        return (self.buffer[self.start - 1] if self.start else self.before) == 10

    def skip_blank(self) -> bool:
        """Consume whitespace; False when nothing but whitespace is left."""
        while True:
            position = skip_whitespace(self.buffer, self.start)
            if position > self.start:
                self.consume_to(position)
            if self.start < len(self.buffer):
                return True
            if not self.more():
                return False

    def line_end(self, longest: int) -> int:
        """The index of the next newline, or the end of the text.

        Raises:
            _Broken: no newline within ``longest`` bytes.
        """
        searched = self.start
        while True:
            found = self.buffer.find(b"\n", searched)
            if found >= 0:
                return found
            held = len(self.buffer) - self.start
            if held > longest:
                raise _Broken(KIND_EVENT_TOO_LARGE, f"a line longer than {longest} bytes: the rest cannot be read")
            if not self.more():
                return len(self.buffer)
            searched = self.start + held

    def value_end(self, longest: int) -> int | None:
        """The index just past the JSON value that starts here; None when the text ends first.

        Raises:
            _Broken: the value is longer than ``longest`` bytes (it cannot be held, so the rest cannot be read).
        """
        scan = ValueScan(self.start)
        while True:
            offset = self.start
            found = scan.run(self.buffer, self.ended)
            if found is not None:
                return found
            if len(self.buffer) - self.start > longest:
                raise _Broken(KIND_EVENT_TOO_LARGE, f"a value longer than {longest} bytes: the rest cannot be read")
            if not self.more():
                return None
            scan.shift(offset - self.start)


_RECORDS_HEAD: Final = re.compile(rb'\{[ \t\r\n]*"Records"[ \t\r\n]*:[ \t\r\n]*\[')
_HEAD_BYTES: Final = 64
_END_OF_LOG_FILE: Final = re.compile(rb"[ \t\r\n]*\}")
_SEPARATORS: Final = frozenset(b",]")
_UNCLOSED: Final = "not JSON: the text ends before the array is closed"


def _decode_file_input(chunks: Iterator[bytes], sink: _Sink) -> Iterator[None]:
    first = b""
    for chunk in chunks:
        first += chunk
        if len(first) >= 2:
            break
    gzipped = first[:2] == _GZIP_MAGIC
    pieces: Iterator[bytes] = _inflate(chunks, first) if gzipped else _prepend(first, chunks)
    top = _Scope(sink, b"", sink.position, "", "")
    yield from _decode_text(_Reader(pieces, sink.budget.file_bytes, "file"), top, gzipped)


def _prepend(first: bytes, rest: Iterator[bytes]) -> Iterator[bytes]:
    if first:
        yield first
    yield from rest


def _decode_text(reader: _Reader, top: _Scope, gzipped: bool) -> Iterator[None]:
    """Every document of a text: log files and arrays item by item, other documents one line each.

    Labels: the text's only document is the input itself; several documents (JSON lines) are ``line N``,
    except that the items of a log file or array that opens the text are labelled before more is known
    (``Records[3]``, not ``line 1 Records[3]``).
    """
    sink = top.sink
    try:
        if reader.head(3) == _UTF8_BOM:
            reader.consume_to(reader.start + 3)
        if not reader.skip_blank():
            top.data = top.data or reader.buffer[:MAX_MALFORMED_DATA]
            top.malformed_whole(KIND_EMPTY, "only whitespace" if reader.buffer else "no data")
            return
        documents = 0
        previous_multiline = True
        while True:
            documents += 1
            if documents == 1:
                prefix = ""
            elif reader.at_line_start():
                prefix = f"line {reader.line} "
            else:  # documents run together on one line, e.g. `cat a.json.gz b.json.gz` without a final newline
                prefix = f"document {documents} "
            head = reader.head(_HEAD_BYTES)
            found = _RECORDS_HEAD.match(head)
            if found is not None:
                reader.consume_to(reader.start + found.end())
                complete = yield from _decode_array(reader, top, prefix + "Records[")
                if complete and not _close_log_file(reader, top, prefix):
                    return
                previous_multiline = True
            elif head[:1] == b"[":
                reader.consume_to(reader.start + 1)
                complete = yield from _decode_array(reader, top, prefix + "[")
                previous_multiline = True
            else:
                previous_multiline = _decode_line(reader, top, documents, previous_multiline, gzipped)
                complete = True
                yield None
            # A broken array ends its document. In JSON lines the next line is the next document; a text
            # that opened with a broken one has nothing readable after it.
            if not complete and (documents == 1 or not _skip_line(reader)):
                return
            if not reader.skip_blank():
                return
    except _Broken as broken:
        top.data = top.data or reader.buffer[:MAX_MALFORMED_DATA]
        sink.malformed(sink.position, broken.kind, broken.reason, top.data)


def _skip_line(reader: _Reader) -> bool:
    """Consume the rest of the current line; False when the text ends first."""
    while True:
        found = reader.buffer.find(b"\n", reader.start)
        if found >= 0:
            reader.consume_to(found + 1)
            return True
        reader.consume_to(len(reader.buffer))
        if not reader.more():
            return False


def _close_log_file(reader: _Reader, top: _Scope, prefix: str) -> bool:
    """After a log file's ``Records`` array: its closing brace. False (reported) when something else follows."""
    head = reader.head(_HEAD_BYTES)
    closing = _END_OF_LOG_FILE.match(head)
    if closing is not None:
        reader.consume_to(reader.start + closing.end())
        return True
    sink = top.sink
    position = Position(sink.origin, prefix.strip()) if sink.by_path and prefix else top.whole()
    sink.malformed(position, KIND_BAD_LOG_FILE, "more keys after Records: the rest cannot be read", head)
    return False


def _decode_line(reader: _Reader, top: _Scope, number: int, try_multiline: bool, gzipped: bool) -> bool:
    """One document that is not a log file or array: a JSON line, or a value spread over several lines.

    Returns whether it spread over several lines. A line that does not parse is malformed alone, unless it
    opens a value that parses over several lines (a pretty-printed event); once the text is seen to be JSON
    lines, a bad line is never joined with the next ones.
    """
    sink = top.sink
    budget = sink.budget
    line = reader.line
    end = reader.line_end(budget.record_bytes)
    text = reader.buffer[reader.start : end].rstrip()
    value: Any = _ABSENT
    problem: _Unparsed | None = None
    multiline = False
    try:
        dense = _too_dense(text)
        if dense:
            raise _Unparsed(KIND_TOO_MANY_ITEMS, dense)
        value = loads_like_jq(text)
    except _Unparsed as error:
        problem = error
    if problem is not None and try_multiline and text[:1] == b"{":
        value_end = reader.value_end(budget.record_bytes)
        if value_end is not None and reader.buffer.count(b"\n", reader.start, value_end):
            candidate = reader.buffer[reader.start : value_end]
            try:
                value, problem, text, multiline = loads_like_jq(candidate), None, candidate, True
                end = value_end
            except _Unparsed:
                end = reader.line_end(budget.record_bytes)
        else:
            end = reader.line_end(budget.record_bytes)
    reader.consume_to(min(end + (0 if multiline else 1), len(reader.buffer)))
    only = number == 1 and not reader.skip_blank()
    if only:
        scope = _Scope(sink, top.data or text, top.whole(), "", "")
    else:
        label = f"line {line}"
        scope = _Scope(sink, text, Position(sink.origin, label) if sink.by_path else None, label + " ", label)
    scope.payload = text
    if problem is not None:
        kind = problem.kind
        if only and not gzipped and kind in (KIND_NOT_JSON, KIND_INVALID_UTF8) and text[:1] not in (b"{", b"["):
            kind = KIND_NOT_GZIP_OR_JSON  # the whole input: neither compressed nor JSON-shaped
        scope.malformed_whole(kind, problem.reason)
    elif len(text) > budget.event_bytes and is_cloudtrail_event(value):
        scope.malformed_whole(
            KIND_EVENT_TOO_LARGE, f"{len(text)} bytes, more than {budget.event_bytes} (budget: bytes per event)"
        )
    else:
        _dispatch(value, scope)
    return multiline


_COMPACT_FIRST_KEY: Final = re.compile(rb'\{"([^"\\]{1,64})"')
_ITEMS_PER_YIELD: Final = 256


def _decode_array(reader: _Reader, top: _Scope, label_open: str) -> Generator[None, None, bool]:
    """The items of an array (an event list, or a log file's ``Records``), sliced and parsed one by one.

    The reader stands just after the ``[``. Returns (as the generator's value) True once past the ``]``,
    False when the text ended or broke inside the array (reported).
    """
    sink = top.sink
    budget = sink.budget
    event_limit = budget.event_bytes
    value_limit = max(event_limit, budget.record_bytes)
    loads = orjson.loads
    decode_error = orjson.JSONDecodeError
    if not reader.skip_blank():
        sink.malformed(sink.at("", f"{label_open}0]"), KIND_NOT_JSON, _UNCLOSED, b"")
        return False
    if reader.buffer[reader.start] == ord("]"):
        reader.consume_to(reader.start + 1)
        return True
    index = 0
    while True:
        # The fast way through a log file: items separated by `},{"<the same first key>"`, each sliced and
        # parsed once; anything else (the last item, spaces, a slice that does not parse) takes the general way.
        buffer = reader.buffer
        first_key = _COMPACT_FIRST_KEY.match(buffer, reader.start)
        if first_key is not None:
            between = b'},{"' + first_key.group(1) + b'"'
            find = buffer.find
            events = sink.result.events
            by_path = sink.by_path
            start = reader.start
            done_here = 0
            while True:
                if not by_path and index >= budget.record_items:
                    break
                next_item = find(between, start + 1, start + event_limit)
                if next_item < 0:
                    break
                raw = buffer[start : next_item + 1]
                try:
                    value = loads(raw)
                except decode_error:
                    break
                position = Position(sink.origin, f"{label_open}{index}]") if by_path else sink.at("", "")
                if is_cloudtrail_event(value):
                    events.append(CloudTrailEvent(raw, value, position))
                else:
                    sink.malformed(position, KIND_NOT_CLOUDTRAIL_EVENT, _not_event_reason(value), raw)
                index += 1
                start = next_item + 2
                done_here += 1
                if done_here >= _ITEMS_PER_YIELD:
                    break
            reader.start = start
            if done_here:
                yield None
                continue
        if not sink.by_path and index >= budget.record_items:
            top.malformed_whole(
                KIND_TOO_MANY_ITEMS, f"more than {budget.record_items} items (budget: items per record)"
            )
            return False
        position = sink.at("", f"{label_open}{index}]")
        index += 1
        end, value = -1, NOT_PARSED
        if reader.buffer[reader.start] == ord("{"):
            end, value = guess_object(reader.buffer, reader.start, event_limit, _loads_slice)
        if end < 0:
            scanned = reader.value_end(value_limit)
            if scanned is None:
                raw = reader.consume_to(len(reader.buffer))
                sink.malformed(position, KIND_NOT_JSON, "the text ends inside this item", raw)
                return False
            end = scanned
        raw = reader.consume_to(end)
        if len(raw) > event_limit:
            sink.malformed(
                position,
                KIND_EVENT_TOO_LARGE,
                f"{len(raw)} bytes, more than {event_limit} (budget: bytes per event)",
                raw,
            )
        else:
            if value is NOT_PARSED:
                try:
                    value = loads_like_jq(raw)
                except _Unparsed as problem:
                    sink.malformed(position, problem.kind, problem.reason, raw)
                    value = _ABSENT
            if value is _ABSENT:
                pass
            elif is_cloudtrail_event(value):
                sink.result.events.append(CloudTrailEvent(raw, value, position))
            else:
                sink.malformed(position, KIND_NOT_CLOUDTRAIL_EVENT, _not_event_reason(value), raw)
        yield None
        # A problem after this item is reported at the next index: the rest of the array, from there on.
        if not reader.skip_blank():
            sink.malformed(sink.at("", f"{label_open}{index}]"), KIND_NOT_JSON, _UNCLOSED, b"")
            return False
        separator = reader.buffer[reader.start]
        if separator not in _SEPARATORS:
            rest = reader.head(MAX_MALFORMED_DATA)
            reason = f"not JSON: {rest[:20]!r} where a comma or the end of the array should be"
            sink.malformed(sink.at("", f"{label_open}{index}]"), KIND_NOT_JSON, reason, rest)
            return False
        reader.consume_to(reader.start + 1)
        if separator == ord("]"):
            return True
        if not reader.skip_blank():
            sink.malformed(sink.at("", f"{label_open}{index}]"), KIND_NOT_JSON, _UNCLOSED, b"")
            return False


_KIND_TEXT: Final = {
    KIND_INVALID_UTF8: "not valid UTF-8",
    KIND_NOT_JSON: "not JSON",
    KIND_NOT_GZIP_OR_JSON: "neither gzip nor JSON",
}


def _dispatch(value: Any, scope: _Scope) -> None:
    """Route a parsed document by its shape."""
    if type(value) is dict:
        if "messageType" in value:
            _decode_subscription(value, scope)
        elif "Records" in value:
            _decode_log_file(value, scope)
        elif is_cloudtrail_event(value):
            scope.sink.result.events.append(CloudTrailEvent(scope.payload.strip(), value, scope.whole()))
        elif _DIGEST_KEYS.intersection(value):
            scope.sink.result.digest_files += 1
        else:
            scope.malformed_whole(KIND_NOT_CLOUDTRAIL_EVENT, _not_event_reason(value))
    elif type(value) is list:
        _decode_event_list(value, scope, "[", "]")
    else:
        scope.malformed_whole(KIND_NOT_OBJECT_OR_ARRAY, f"a JSON {_json_type(value)}, not an object or array")


def _decode_log_file(value: dict[str, Any], scope: _Scope) -> None:
    records = value["Records"]
    if type(records) is not list:
        scope.malformed_whole(KIND_BAD_LOG_FILE, f"Records is a JSON {_json_type(records)}, not an array")
        return
    _decode_event_list(records, scope, "Records[", "]")


def _decode_event_list(items: list[Any], scope: _Scope, label_open: str, label_close: str) -> None:
    """A list already parsed as part of its document: each item is serialised again for its raw text.

    Only documents that are not sliced come here (a log file whose ``Records`` is not its first key); one
    item that cannot be serialised again (nested deeper than orjson writes) is malformed alone.
    """
    sink = scope.sink
    budget = sink.budget
    if not sink.by_path and len(items) > budget.record_items:
        scope.malformed_whole(
            KIND_TOO_MANY_ITEMS, f"{len(items)} items, more than {budget.record_items} (budget: items per record)"
        )
        return
    events = sink.result.events
    prefix = scope.prefix
    for index, item in enumerate(items):
        position = sink.at(prefix, f"{label_open}{index}{label_close}")
        try:
            raw = orjson.dumps(item)
        except orjson.JSONEncodeError as error:
            sink.malformed(position, KIND_TOO_DEEP, f"cannot be written as JSON again: {error}", b"")
            continue
        if len(raw) > budget.event_bytes:
            sink.malformed(position, KIND_EVENT_TOO_LARGE, _too_large(len(raw), budget.event_bytes), raw)
        elif is_cloudtrail_event(item):
            events.append(CloudTrailEvent(raw, item, position))
        else:
            sink.malformed(position, KIND_NOT_CLOUDTRAIL_EVENT, _not_event_reason(item), raw)


def _too_large(size: int, limit: int) -> str:
    return f"{size} bytes, more than {limit} (budget: bytes per event)"


def _decode_subscription(value: dict[str, Any], scope: _Scope) -> None:
    """A CloudWatch Logs subscription object: the hot path (one per Kinesis record)."""
    message_type = value["messageType"]
    if message_type == CONTROL_MESSAGE:
        scope.sink.result.control_messages += 1
        return
    if message_type != DATA_MESSAGE:
        shown = _sample(message_type).decode("utf-8", "replace")[:100]
        scope.malformed_whole(
            KIND_UNKNOWN_MESSAGE_TYPE, f"messageType {shown} is neither {DATA_MESSAGE} nor {CONTROL_MESSAGE}"
        )
        return
    log_events = value.get("logEvents", _ABSENT)
    if type(log_events) is not list:
        what = "missing" if log_events is _ABSENT else f"a JSON {_json_type(log_events)}, not an array"
        scope.malformed_whole(KIND_BAD_SUBSCRIPTION_RECORD, f"logEvents is {what}")
        return
    sink = scope.sink
    budget = sink.budget
    if not sink.by_path and len(log_events) > budget.record_items:
        scope.malformed_whole(
            KIND_TOO_MANY_ITEMS,
            f"{len(log_events)} log events, more than {budget.record_items} (budget: items per record)",
        )
        return
    events = sink.result.events
    event_limit = budget.event_bytes
    loads = orjson.loads
    decode_error = orjson.JSONDecodeError
    # Per-record positions are built inline (no method call per event): this loop is the hot path.
    by_path = sink.by_path
    origin = sink.origin
    sequence = sink.sequence
    prefix = scope.prefix
    first_index = sink.next_index
    sink.next_index = first_index + len(log_events)  # nothing below takes an index: log event i gets first + i
    for index, log_event in enumerate(log_events):
        if by_path:
            position = Position(origin, f"{prefix}logEvents[{index}]")
        else:
            position = Position(origin, sequence, first_index + index)
        message = log_event.get("message") if type(log_event) is dict else None
        if type(message) is not str:
            reason = "has no string message" if type(log_event) is dict else "is not an object"
            sink.malformed(position, KIND_BAD_LOG_EVENT, f"log event {reason}", _sample(log_event))
            continue
        raw = message.encode("utf-8", "surrogatepass")
        if len(raw) > event_limit:
            sink.malformed(position, KIND_EVENT_TOO_LARGE, _too_large(len(raw), event_limit), raw)
            continue
        try:
            data = loads(raw)
        except decode_error:
            try:
                data = loads_like_jq(raw)
            except _Unparsed as problem:
                sink.malformed(position, problem.kind, f"message {problem.reason}", raw)
                continue
        # is_cloudtrail_event(), inlined
        if (
            type(data) is dict
            and type(data.get("eventVersion")) is str
            and ((name := data.get("eventName", _ABSENT)) is None or type(name) is str)
            and ((source := data.get("eventSource", _ABSENT)) is None or type(source) is str)
        ):
            events.append(CloudTrailEvent(raw, data, position))
        else:
            sink.malformed(position, KIND_NOT_CLOUDTRAIL_EVENT, _not_event_reason(data), raw)


def _sample(value: Any) -> bytes:
    """A log event that is not one, as text for inspection: bounded however large or deep it is."""
    try:
        return orjson.dumps(value)[:MAX_MALFORMED_DATA]
    except orjson.JSONEncodeError:
        return repr(value)[:MAX_MALFORMED_DATA].encode("utf-8", "replace")


def _not_event_reason(value: Any) -> str:
    if type(value) is not dict:
        return f"a JSON {_json_type(value)}, not a CloudTrail event object"
    if type(value.get("eventVersion")) is not str:
        if "eventVersion" not in value:
            return "not a CloudTrail event: no eventVersion"
        return f"not a CloudTrail event: eventVersion is a JSON {_json_type(value['eventVersion'])}, not a string"
    for key in ("eventName", "eventSource"):
        if key not in value:
            return f"not a CloudTrail event: no {key}"
        if value[key] is not None and type(value[key]) is not str:
            return f"not a CloudTrail event: {key} is a JSON {_json_type(value[key])}, not a string"
    return "not a CloudTrail event"


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def _event_time_ms(event: dict[str, Any], default: int) -> int:
    event_time = event.get("eventTime")
    if isinstance(event_time, str):
        try:
            return int(datetime.fromisoformat(event_time.replace("Z", "+00:00")).timestamp() * 1000)
        except ValueError:
            pass
    return default
