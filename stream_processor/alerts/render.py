"""Alert → text, for every destination: pure functions, no I/O.

Every event field is attacker-controlled (a user name, a role session name, an error message, a request
parameter can hold anything), so Slack text escapes it for mrkdwn (an event cannot ping `<!channel>` or
inject `<http://evil|click>`), caps its length, and the event JSON is collapsed and capped to Slack's
block limits. The rule name and description come from the operator's rule file and are not escaped:
an operator may mean a `<!here>` in a description.
"""

from __future__ import annotations

import html
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from stream_processor.json_out import dumps_text
from stream_processor.matcher.libjq import event_output
from stream_processor.model import Alert, CloudTrailEvent, Match, Rule
from stream_processor.safe_text import show_invisible

log = logging.getLogger(__name__)

FIELD_CHARS = 500
"""Cap on each who/what/where/when field, before escaping."""
HEADER_CHARS = 150
"""Slack: a header block's plain_text is at most 150 characters."""
SECTION_CHARS = 3000
"""Slack: a section block's text is at most 3000 characters."""
SECTION_FIELD_CHARS = 2000
"""Slack: each text object of a section's `fields` is at most 2000 characters."""
FALLBACK_CHARS = 3000
"""The top-level `text` fallback (Slack allows 40,000; notifications show far less)."""
SUBJECT_CHARS = 100
"""SNS: a Subject is at most 100 ASCII printable characters, no line breaks."""
TITLE_CHARS = 200
"""Cap on a rendered `title` (one line); Slack's header cuts it further to `HEADER_CHARS`."""
ELLIPSIS = "…"
UNKNOWN = "unknown"

_MRKDWN = str.maketrans({"&": "&amp;", "<": "&lt;", ">": "&gt;"})
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


@dataclass(frozen=True, slots=True)
class AlertSummary:
    """The four facts every alert shows, as plain (unescaped) text, each capped to `FIELD_CHARS`."""

    who: str
    what: str
    where: str
    when: str


# --- text helpers ---------------------------------------------------------------------------------


def escape_mrkdwn(text: str) -> str:
    """Slack's three control characters as entities (no mention, no link, no channel ping survives), and
    direction-changing or invisible characters shown as code points."""
    return show_invisible(text.translate(_MRKDWN))


def cap(text: str, limit: int) -> str:
    """`text` cut to at most `limit` characters, ending with an ellipsis when cut."""
    if len(text) <= limit:
        return text
    if limit <= 0:
        return ""
    return text[: limit - 1] + ELLIPSIS


def cap_escaped(text: str, limit: int) -> str:
    """`text` escaped for mrkdwn and cut to `limit` characters without splitting an entity."""
    escaped = escape_mrkdwn(text)
    if len(escaped) <= limit:
        return escaped
    if limit <= 0:
        return ""
    budget = limit - len(ELLIPSIS)
    pieces: list[str] = []
    used = 0
    for char in text:
        piece = escape_mrkdwn(char)
        if used + len(piece) > budget:
            break
        pieces.append(piece)
        used += len(piece)
    return "".join(pieces) + ELLIPSIS


def _one_line(text: str) -> str:
    """Control characters (newlines included) as spaces: a field never spans lines."""
    return _CONTROL.sub(" ", text.replace("\r\n", " ").replace("\n", " "))


def _text(value: Any) -> str:
    """A scalar event field as text; objects and arrays as compact JSON; missing as ''."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    return compact_json(value)


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def compact_json(value: Any) -> str:
    """JSON without spaces, non-ASCII kept readable; anything unserialisable as its str()."""
    return dumps_text(value)


# --- the four facts -------------------------------------------------------------------------------


def session_name(arn: str) -> str:
    """The session part of an assumed-role ARN (`arn:aws:sts::1:assumed-role/Role/session`), else ''."""
    resource = arn.split(":", 5)[5] if arn.count(":") >= 5 else ""
    if not resource.startswith("assumed-role/"):
        return ""
    parts = resource.split("/", 2)
    return parts[2] if len(parts) == 3 else ""


def who(event: Mapping[str, Any]) -> str:
    """The caller: the identity's ARN (else principalId and type), the issuing role and the session name."""
    identity = _mapping(event.get("userIdentity"))
    arn = _text(identity.get("arn"))
    identity_type = _text(identity.get("type"))
    if arn:
        text = arn
    else:
        principal = _text(identity.get("principalId")) or _text(identity.get("invokedBy"))
        text = " ".join(part for part in (principal, f"({identity_type})" if identity_type else "") if part)
    issuer = _text(_mapping(_mapping(identity.get("sessionContext")).get("sessionIssuer")).get("userName"))
    session = session_name(arn)
    extras = [f"role {issuer}"] if issuer else []
    if session:
        extras.append(f"session {session}")
    if extras:
        text = f"{text} ({', '.join(extras)})" if text else ", ".join(extras)
    return cap(_one_line(text), FIELD_CHARS) if text else UNKNOWN


def what(event: Mapping[str, Any]) -> str:
    """The call: eventSource and eventName, and the error code and message when the call failed."""
    text = " ".join(part for part in (_text(event.get("eventSource")), _text(event.get("eventName"))) if part)
    error_code = _text(event.get("errorCode"))
    error_message = _text(event.get("errorMessage"))
    if error_code or error_message:
        error = ": ".join(part for part in (error_code, error_message) if part)
        text = f"{text} failed with {error}" if text else f"failed with {error}"
    return cap(_one_line(text), FIELD_CHARS) if text else UNKNOWN


def where(event: Mapping[str, Any]) -> str:
    """The place: account (recipient, else the caller's), region and source IP address."""
    account = _text(event.get("recipientAccountId")) or _text(_mapping(event.get("userIdentity")).get("accountId"))
    parts = []
    if account:
        parts.append(f"account {account}")
    region = _text(event.get("awsRegion"))
    if region:
        parts.append(region)
    source_ip = _text(event.get("sourceIPAddress"))
    if source_ip:
        parts.append(f"from {source_ip}")
    return cap(_one_line(", ".join(parts)), FIELD_CHARS) if parts else UNKNOWN


def when(event: Mapping[str, Any]) -> str:
    """The time: eventTime as CloudTrail wrote it."""
    text = _text(event.get("eventTime"))
    return cap(_one_line(text), FIELD_CHARS) if text else UNKNOWN


def summarize(alert: Alert) -> AlertSummary:
    """Who, what, where and when of the alert's event, plain text."""
    event = alert.event.data
    return AlertSummary(who=who(event), what=what(event), where=where(event), when=when(event))


def output_text(alert: Alert) -> str | None:
    """The jq output as shown to people, or None when it says nothing (it is `true` or the event itself).

    A string is shown as is (tattletail showed it JSON-quoted); anything else as compact JSON.
    """
    output = alert.output
    if output is None or output is True:
        return None
    if isinstance(output, str):
        return output
    if isinstance(output, dict) and output == alert.event.data:
        return None
    return compact_json(output)


# --- rule extensions: title, severity, runbook, tags ------------------------------------------------


def render_title(rule: Rule, event: CloudTrailEvent) -> str | None:
    """The rule's `title` program run on the event: its first output as one capped line, or None.

    None (show the rule name) when the rule has no title, or the program gives no output, null, false or
    an error; an error is logged with the rule name and event id only (event fields may be hostile).
    A string is used as is; anything else as compact JSON.
    """
    if rule.title is None:
        return None
    try:
        value = event_output(rule.title, event)
    except ValueError as error:
        log.warning(
            "title of rule %r failed on event %s (the rule name is shown instead): %s",
            rule.name,
            event.event_id or "?",
            _one_line(str(error))[:200],
        )
        return None
    if value is None or value is False:
        return None
    text = " ".join(_one_line(value if isinstance(value, str) else compact_json(value)).split())
    return cap(text, TITLE_CHARS) if text else None


def build_alert(rule: Rule, match: Match) -> Alert:
    """The alert for a match, with the rule's extensions (title rendered now, severity, runbook, tags)."""
    return Alert(
        rule.name,
        rule.description,
        match.output,
        match.event,
        title=render_title(rule, match.event),
        severity=rule.severity,
        runbook=rule.runbook,
        tags=rule.tags,
    )


def display_title(alert: Alert) -> str:
    """What heads the alert: the rendered title, else the rule name."""
    return alert.title or alert.rule_name


def _labels(alert: Alert) -> list[tuple[str, str]]:
    """(label, plain text) of the extensions the alert carries, in display order; empty for a plain alert."""
    labels: list[tuple[str, str]] = []
    if alert.severity:
        labels.append(("Severity", alert.severity))
    if alert.title:
        labels.append(("Rule", alert.rule_name))
    if alert.tags:
        labels.append(("Tags", ", ".join(alert.tags)))
    if alert.runbook:
        labels.append(("Runbook", alert.runbook))
    return labels


def event_json(alert: Alert, limit: int | None = None) -> str:
    """The event as compact JSON, cut to `limit` characters with a note of how much was left out."""
    text = compact_json(alert.event.data)
    if limit is None or len(text) <= limit:
        return text
    note = f"{ELLIPSIS} ({len(text)} chars, truncated)"
    return text[: max(limit - len(note), 0)] + note


# --- Slack ----------------------------------------------------------------------------------------


def _code_block(json_text: str, limit: int) -> str:
    """The event JSON in a mrkdwn code block of at most `limit` characters.

    Backticks are written as the JSON escape `\\u0060` (valid JSON, they only occur inside strings),
    so an event cannot close the code block; `&`, `<`, `>` are escaped like every other field.
    """
    fence = "```"
    body_limit = limit - 2 * len(fence)
    body = escape_mrkdwn(json_text.replace("`", "\\u0060"))
    if len(body) > body_limit:
        note = f"{ELLIPSIS} ({len(json_text)} chars, truncated)"
        body = body[: max(body_limit - len(note), 0)]
        cut = body.rfind("&", max(len(body) - 5, 0))
        if cut != -1 and ";" not in body[cut:]:
            body = body[:cut]  # never leave half an entity such as "&am"
        body += note
    return f"{fence}{body}{fence}"


def _section(mrkdwn: str) -> dict[str, Any]:
    return {"type": "section", "text": {"type": "mrkdwn", "text": mrkdwn}}


def slack_fallback_text(alert: Alert) -> str:
    """The top-level `text` of a Slack message: what notifications and old clients show."""
    summary = summarize(alert)
    head = alert.rule_name
    if alert.title:
        head = f"{cap_escaped(alert.title, TITLE_CHARS)} ({alert.rule_name})"
    if alert.severity:
        head = f"[{alert.severity.upper()}] {head}"
    lines = [
        f"{head}: {alert.description}" if alert.description else head,
        f"who: {escape_mrkdwn(summary.who)}",
        f"what: {escape_mrkdwn(summary.what)}",
        f"where: {escape_mrkdwn(summary.where)}",
        f"when: {escape_mrkdwn(summary.when)}",
    ]
    output = output_text(alert)
    if output is not None:
        lines.append(f"match: {cap_escaped(output, FIELD_CHARS)}")
    if alert.tags:
        lines.append(f"tags: {cap_escaped(', '.join(alert.tags), FIELD_CHARS)}")
    if alert.runbook:
        lines.append(f"runbook: {alert.runbook}")
    return cap("\n".join(lines), FALLBACK_CHARS)


def _slack_context(alert: Alert) -> dict[str, Any] | None:
    """A context block with severity, rule (when a title heads the alert), tags and the runbook link."""
    elements: list[dict[str, Any]] = []
    for label, value in _labels(alert):
        if label == "Runbook":
            url = value.replace("|", "%7C").replace(">", "%3E").replace("<", "%3C")
            text = f"*Runbook:* <{url}|open>"
        elif label == "Severity":
            text = f"*Severity:* {value.upper()}"
        else:
            text = f"*{label}:* {cap_escaped(value, SECTION_FIELD_CHARS // 4)}"
        elements.append({"type": "mrkdwn", "text": text})
    return {"type": "context", "elements": elements} if elements else None


def slack_payload(alert: Alert) -> dict[str, Any]:
    """A Slack incoming-webhook body: Block Kit plus the plain `text` fallback, within Slack's limits."""
    summary = summarize(alert)
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": cap(display_title(alert) or "alert", HEADER_CHARS)}},
    ]
    context = _slack_context(alert)
    if context is not None:
        blocks.append(context)
    if alert.description:
        blocks.append(_section(cap(alert.description, SECTION_CHARS)))
    fields = [
        ("Who", summary.who),
        ("What", summary.what),
        ("Where", summary.where),
        ("When", summary.when),
        ("Event ID", alert.event.event_id or "-"),  # always shown: the event's JSON below may be cut
    ]
    blocks.append(
        {
            "type": "section",
            "fields": [
                {"type": "mrkdwn", "text": f"*{label}*\n{cap_escaped(value, SECTION_FIELD_CHARS - len(label) - 3)}"}
                for label, value in fields
            ],
        }
    )
    output = output_text(alert)
    if output is not None:
        label = "*Match*\n"
        blocks.append(_section(label + cap_escaped(output, SECTION_CHARS - len(label))))
    blocks.append(_section(_code_block(compact_json(alert.event.data), SECTION_CHARS)))
    return {"text": slack_fallback_text(alert), "blocks": blocks}


# --- SNS and email --------------------------------------------------------------------------------


def subject(alert: Alert, limit: int = SUBJECT_CHARS) -> str:
    """A one-line ASCII subject (`rule: eventName`), fit for an SNS Subject or an email."""
    event_name = alert.event.event_name
    text = f"{alert.rule_name}: {event_name}" if event_name else alert.rule_name
    if alert.title:
        text = alert.title
    if alert.severity:
        text = f"[{alert.severity.upper()}] {text}"
    ascii_text = "".join(char if " " <= char <= "~" else "?" for char in _one_line(text))
    ascii_text = " ".join(ascii_text.split())
    if len(ascii_text) > limit:
        ascii_text = ascii_text[: max(limit - 3, 0)].rstrip() + "..."
    return ascii_text or "CloudTrail alert"


def sns_message(alert: Alert) -> dict[str, Any]:
    """The SNS message body: rule name, description, the jq output as JSON and the event."""
    message: dict[str, Any] = {
        "name": alert.rule_name,
        "description": alert.description,
        "match": alert.output,
        "event": alert.event.data,
    }
    message.update(_extension_fields(alert))
    return message


def _extension_fields(alert: Alert) -> dict[str, Any]:
    """title/severity/runbook/tags for JSON renderings, only those the alert carries (plain alerts unchanged)."""
    fields: dict[str, Any] = {}
    if alert.title:
        fields["title"] = alert.title
    if alert.severity:
        fields["severity"] = alert.severity
    if alert.runbook:
        fields["runbook"] = alert.runbook
    if alert.tags:
        fields["tags"] = list(alert.tags)
    return fields


def plain_text(alert: Alert, event_limit: int = 20_000) -> str:
    """The alert as plain text (email body): nothing escaped, the event as indented-free compact JSON."""
    summary = summarize(alert)
    lines = [display_title(alert)]
    if alert.description:
        lines.append(alert.description)
    lines += [f"{label}: {value}" for label, value in _labels(alert)]
    lines += [
        "",
        f"Who:   {summary.who}",
        f"What:  {summary.what}",
        f"Where: {summary.where}",
        f"When:  {summary.when}",
    ]
    output = output_text(alert)
    if output is not None:
        lines.append(f"Match: {cap(output, SECTION_CHARS)}")
    lines += ["", "Event:", event_json(alert, event_limit)]
    return "\n".join(lines) + "\n"


def html_body(alert: Alert, event_limit: int = 20_000) -> str:
    """The alert as HTML (email body), every value HTML-escaped."""
    summary = summarize(alert)

    def esc(text: str) -> str:
        return html.escape(text, quote=True)

    rows = [("Who", summary.who), ("What", summary.what), ("Where", summary.where), ("When", summary.when)]
    output = output_text(alert)
    if output is not None:
        rows.append(("Match", cap(output, SECTION_CHARS)))
    rows += [(label, value) for label, value in _labels(alert) if label != "Runbook"]
    if alert.runbook:
        rows.append(("Runbook", alert.runbook))
    table = "".join(f'<tr><th align="left">{esc(label)}</th><td>{esc(value)}</td></tr>' for label, value in rows)
    description = f"<p>{esc(alert.description)}</p>" if alert.description else ""
    return (
        "<html><body>"
        f"<h2>{esc(display_title(alert))}</h2>{description}"
        f"<table>{table}</table>"
        f"<pre>{esc(event_json(alert, event_limit))}</pre>"
        "</body></html>"
    )


def stdout_record(alert: Alert) -> dict[str, Any]:
    """One JSON line for the `stdout` destination and scripts: rule, ids, the jq output and the event."""
    record: dict[str, Any] = {
        "rule": alert.rule_name,
        "description": alert.description,
        "eventID": alert.event.event_id,
        "eventName": alert.event.event_name,
        "output": alert.output,
        "event": alert.event.data,
    }
    record.update(_extension_fields(alert))
    return record


def webhook_record(alert: Alert) -> dict[str, Any]:
    """The `webhook` body: `stdout_record` plus title (the rule name when none), severity, runbook and tags,
    always present (null or [] when the rule does not set them), so receivers can rely on the keys."""
    record = stdout_record(alert)
    record.update(
        {
            "title": display_title(alert),
            "severity": alert.severity,
            "runbook": alert.runbook,
            "tags": list(alert.tags),
        }
    )
    return record
