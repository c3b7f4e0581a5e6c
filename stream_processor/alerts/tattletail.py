"""cloudtrail-tattletail's payloads, byte for byte: for destinations with `format = "tattletail"`.

A team that moves from tattletail keeps what reads its alerts (an SNS subscriber parsing `record`, a mail
filter on the subject, people used to the Slack attachment) working unchanged. Read from tattletail's Go source
(internal/destsns, destses, destslack; slack-go v0.9.1), which marshals with Go's encoding/json:

- SNS: `json.Marshal` of `{"name", "description", "record", "match"}` (in that order), no Subject.
- SES: subject "Cloudtrail Tattletail event"; a text body `Alert: NAME\\n\\nDESCRIPTION\\n\\n\\nevent:\\n<indented
  event>\\n`, plus `match: <indented match>\\n` when the match is not the event itself.
- Slack: slack-go's `WebhookMessage` with one "danger" attachment: the indented event as its text, fields
  "Alert Name" and "Description" (short) and "Match" when the match is not the event itself.

Go's encoding/json is reproduced here: map keys sorted, `<`, `>`, `&`, U+2028 and U+2029 escaped as `\\u003c` etc.,
control characters as `\\n`, `\\t`, `\\b`, `\\f`, `\\r` or `\\u00XX` (Go 1.22 and later), numbers as float64 (the
event is decoded into `interface{}`: integers beyond 2^53 lose precision, 1e21 and up are written `1e+21`),
and MarshalIndent's two-space layout with `{}` and `[]` for empty containers.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from decimal import Decimal
from typing import Any

from stream_processor.model import Alert

FORMAT = "tattletail"
SES_SUBJECT = "Cloudtrail Tattletail event"
SLACK_USERNAME = "Cloudtrail Tattletail"
SLACK_ICON_EMOJI = "red_circle"
SLACK_COLOR = "danger"
SLACK_TITLE = "Cloudtrail Tattletail Event"
SNS_MAX_BYTES = 256 * 1024

_HEX = "0123456789abcdef"
_SHORT_ESCAPES = {'"': '\\"', "\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t", "\b": "\\b", "\f": "\\f"}
_HTML = {"<", ">", "&"}


# --------------------------------------------------------------------------- Go's encoding/json


def go_string(text: str) -> str:
    """A JSON string as Go's encoder writes it (HTML escaping on, as json.Marshal has it)."""
    out = ['"']
    for char in text:
        code = ord(char)
        if char in _SHORT_ESCAPES:
            out.append(_SHORT_ESCAPES[char])
        elif code < 0x20 or char in _HTML or code in (0x2028, 0x2029):
            out.append("\\u" + "".join(_HEX[(code >> shift) & 0xF] for shift in (12, 8, 4, 0)))
        elif 0xD800 <= code <= 0xDFFF:
            out.append("\\ufffd")  # a lone surrogate: Go decoded it to U+FFFD
        else:
            out.append(char)
    out.append('"')
    return "".join(out)


def go_number(value: int | float) -> str:
    """A number as Go writes the float64 it decoded it into: shortest digits, `e` notation below 1e-6 and from
    1e21 on (`1e+21`, `1.5e-7`), `-0` kept."""
    if isinstance(value, int):
        try:
            value = float(value)
        except OverflowError:  # Go's decoder refuses it; nothing better to write than the digits
            return str(value)
    if math.isnan(value) or math.isinf(value):
        return "null"  # Go refuses to marshal these; jq cannot produce them from JSON input
    if value == 0:
        return "-0" if math.copysign(1.0, value) < 0 else "0"
    shortest = Decimal(repr(value)).normalize()
    if 1e-6 <= abs(value) < 1e21:
        return format(shortest, "f")
    sign, digits, exponent = shortest.as_tuple()
    assert isinstance(exponent, int)
    text = "".join(str(digit) for digit in digits)
    power = exponent + len(text) - 1
    mantissa = text[0] + (f".{text[1:]}" if len(text) > 1 else "")
    written = f"{abs(power):02d}" if power >= 0 or abs(power) >= 10 else str(abs(power))  # Go trims e-07 to e-7
    return f"{'-' if sign else ''}{mantissa}e{'-' if power < 0 else '+'}{written}"


MAX_CHARS = 16 * 1024 * 1024
"""No payload of any destination can be bigger: an event built to explode when indented is refused, not built."""


class PayloadTooLargeError(ValueError):
    """The rendering would pass `MAX_CHARS` (a hostile event nested deep enough that indenting explodes)."""


def go_marshal(value: Any, indent: str | None = None, max_chars: int = MAX_CHARS) -> str:
    """`json.Marshal(value)` (indent None) or `json.MarshalIndent(value, "", indent)` of a decoded JSON value.

    Iterative: an event nested thousands deep is written like any other, never a RecursionError.

    Raises:
        PayloadTooLargeError: the text would be longer than `max_chars`.
    """
    out: list[str] = []
    size = 0
    colon = ": " if indent else ":"
    # open containers: (their remaining (key, item) pairs, closing bracket, depth, whether none was written yet)
    stack: list[tuple[Iterator[tuple[str | None, Any]], str, int, bool]] = []
    pending: tuple[str | None, Any, int] | None = (None, value, 0)
    while pending is not None or stack:
        if pending is not None:
            key, item, depth = pending
            pending = None
            if key is not None:
                out.append(go_string(key) + colon)
            if isinstance(item, Mapping) and item:
                out.append("{")
                stack.append((iter(sorted((str(k), v) for k, v in item.items())), "}", depth, True))
            elif isinstance(item, list | tuple) and item:
                out.append("[")
                stack.append((((None, v) for v in item), "]", depth, True))
            else:
                out.append(_scalar(item))
            continue
        entries, closing, depth, first = stack.pop()
        entry = next(entries, None)
        if entry is None:
            out.append(("\n" + indent * depth if indent else "") + closing)
            continue
        stack.append((entries, closing, depth, False))
        out.append(("" if first else ",") + ("\n" + indent * (depth + 1) if indent else ""))
        pending = (entry[0], entry[1], depth + 1)
        size += len(out[-1]) + len(out[-2])
        if size > max_chars:
            raise PayloadTooLargeError(f"the payload passes {max_chars:,} characters")
    return "".join(out)


def _scalar(value: Any) -> str:
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, str):
        return go_string(value)
    if isinstance(value, int | float):
        return go_number(value)
    if isinstance(value, Mapping):
        return "{}"
    if isinstance(value, list | tuple):
        return "[]"
    return go_string(str(value))


# --------------------------------------------------------------------------- the match


def _same(left: Any, right: Any) -> bool:
    """Go's reflect.DeepEqual on decoded JSON: true is not 1, containers compared member by member."""
    if isinstance(left, bool) or isinstance(right, bool):
        return isinstance(left, bool) and isinstance(right, bool) and left == right
    if isinstance(left, int | float) and isinstance(right, int | float):
        return float(left) == float(right)
    if isinstance(left, Mapping) and isinstance(right, Mapping):
        return left.keys() == right.keys() and all(_same(left[key], right[key]) for key in left)
    if isinstance(left, list) and isinstance(right, list):
        return len(left) == len(right) and all(_same(a, b) for a, b in zip(left, right, strict=True))
    return type(left) is type(right) and bool(left == right)


def _is_event(alert: Alert) -> bool:
    return isinstance(alert.output, Mapping) and _same(alert.output, alert.event.data)


def match_value(alert: Alert) -> Any:
    """The match as gojq handed it to tattletail: the event itself (its decoded values, -0 included) when the
    rule outputs the event, else the jq output."""
    return alert.event.data if _is_event(alert) else alert.output


def match_text(alert: Alert) -> str | None:
    """tattletail's match text: the indented jq output, or None when the output is the event itself."""
    if _is_event(alert):
        return None
    return go_marshal(alert.output, "  ")


def event_text(alert: Alert) -> str:
    return go_marshal(alert.event.data, "  ")


# --------------------------------------------------------------------------- the three payloads


def sns_message(alert: Alert) -> str:
    """The SNS Message: `{"name","description","record","match"}`, compact.

    Over SNS's 256 KiB, where tattletail's publish failed, `record` (and `match`, when it is that big too)
    becomes its Go JSON text cut to fit, and `"record_truncated": true` is added, so the alert still goes out.
    """
    head = f'{{"name":{go_string(alert.rule_name)},"description":{go_string(alert.description)}'
    record, match = go_marshal(alert.event.data), go_marshal(match_value(alert))
    message = f'{head},"record":{record},"match":{match}}}'
    if len(message.encode()) <= SNS_MAX_BYTES:
        return message
    share = SNS_MAX_BYTES // 4
    if len(match.encode()) > share:
        match = go_string(_cut(match, share // 2))
    budget = share
    while True:
        message = f'{head},"record":{go_string(_cut(record, budget))},"match":{match},"record_truncated":true}}'
        if len(message.encode()) <= SNS_MAX_BYTES:
            return message
        budget //= 2


def _cut(text: str, limit: int) -> str:
    """At most `limit` bytes of `text`, never half a character."""
    return text.encode()[:limit].decode("utf-8", errors="ignore")


def ses_subject(alert: Alert) -> str:
    return SES_SUBJECT


def ses_body(alert: Alert) -> str:
    body = f"Alert: {alert.rule_name}\n\n{alert.description}\n\n\nevent:\n{event_text(alert)}\n"
    match = match_text(alert)
    if match is not None:
        body += f"match: {match}\n"
    return body


def slack_body(alert: Alert) -> bytes:
    """The webhook body slack-go v0.9.1 posts for tattletail (its `blocks: null` included: an attachment's
    Blocks is a struct, which Go's `omitempty` never omits)."""
    fields = [
        f'{{"title":"Alert Name","value":{go_string(alert.rule_name)},"short":true}}',
        f'{{"title":"Description","value":{go_string(alert.description)},"short":true}}',
    ]
    match = match_text(alert)
    if match is not None:
        fields.append(f'{{"title":"Match","value":{go_string(match)},"short":false}}')
    attachment = (
        f'{{"color":"{SLACK_COLOR}","title":"{SLACK_TITLE}","text":{go_string(event_text(alert))},'
        f'"fields":[{",".join(fields)}],"blocks":null}}'
    )
    return (
        f'{{"username":"{SLACK_USERNAME}","icon_emoji":"{SLACK_ICON_EMOJI}","attachments":[{attachment}]}}'
    ).encode()


__all__ = [
    "FORMAT",
    "SES_SUBJECT",
    "go_marshal",
    "go_number",
    "go_string",
    "match_text",
    "ses_body",
    "ses_subject",
    "slack_body",
    "sns_message",
]
