"""`pagerduty`: a trigger event on PagerDuty's Events API v2.

Keys: `routing_key` (required: the integration key of an Events API v2 service integration, ideally a
secret reference such as `ssm:/alerts/pagerduty`) and `events_url` (default PagerDuty's enqueue endpoint;
a test or a proxy may point it elsewhere).

One incident per rule and event: `dedup_key` is the rule name and the eventID, so a retry or a replay
adds nothing new to an open incident. PagerDuty answers 202 when it took the event, 400 when the event
is invalid (permanent), 429 when rate limited and 5xx on its own trouble (both retried by the policy).
The routing key is never logged or put in an error message.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from typing import Any, Final

from stream_processor.alerts.destinations.base import register
from stream_processor.alerts.http import JsonPostDestination, http_url_problem
from stream_processor.alerts.redact import REDACTED
from stream_processor.alerts.render import (
    UNKNOWN,
    cap,
    display_title,
    event_json,
    output_text,
    summarize,
)
from stream_processor.aws import AwsSettings
from stream_processor.json_out import dumps_text
from stream_processor.model import Alert, DestinationConfig

DEFAULT_EVENTS_URL: Final = "https://events.pagerduty.com/v2/enqueue"
SEVERITY_MAP: Final[Mapping[str | None, str]] = {
    "info": "info",
    "low": "warning",
    "medium": "warning",
    "high": "error",
    "critical": "critical",
    None: "warning",  # a rule without severity counts as medium
}
SUMMARY_CHARS: Final = 1024
"""PagerDuty: payload.summary is at most 1024 characters."""
DEDUP_KEY_CHARS: Final = 255
"""PagerDuty: dedup_key is at most 255 characters."""
EVENT_CHARS: Final = 200_000
"""Above this, custom_details carries the event as truncated JSON text (an Events API body is at most 512 KB)."""


def dedup_key(alert: Alert) -> str:
    """`<rule>:<eventID>`, with the rule name shortened (plus a hash of it) if the whole would exceed 255."""
    event_id = alert.event.event_id or hashlib.sha256(alert.event.raw).hexdigest()
    key = f"{alert.rule_name}:{event_id}"
    if len(key) <= DEDUP_KEY_CHARS:
        return key
    digest = hashlib.sha256(alert.rule_name.encode()).hexdigest()[:12]
    room = DEDUP_KEY_CHARS - len(event_id) - len(digest) - 2
    return f"{alert.rule_name[: max(room, 0)]}~{digest}:{event_id}"[-DEDUP_KEY_CHARS:]


def pagerduty_event(alert: Alert, routing_key: str) -> dict[str, Any]:
    """The Events API v2 trigger for an alert."""
    facts = summarize(alert)
    summary = f"{display_title(alert)}: {facts.what} by {facts.who}"
    if facts.where != UNKNOWN:
        summary += f" ({facts.where})"
    details: dict[str, Any] = {
        "rule": alert.rule_name,
        "description": alert.description,
        "who": facts.who,
        "what": facts.what,
        "where": facts.where,
        "when": facts.when,
        "eventID": alert.event.event_id,
    }
    shown = output_text(alert)
    if shown is not None:
        details["match"] = shown
    if alert.tags:
        details["tags"] = list(alert.tags)
    event_text = event_json(alert)
    details["event"] = alert.event.data if len(event_text) <= EVENT_CHARS else event_json(alert, EVENT_CHARS)
    payload: dict[str, Any] = {
        "summary": cap(" ".join(summary.split()), SUMMARY_CHARS),
        "source": cap(facts.where if facts.where != UNKNOWN else "aws cloudtrail", SUMMARY_CHARS),
        "severity": SEVERITY_MAP.get(alert.severity, "warning"),
        "custom_details": details,
    }
    event_time = alert.event.data.get("eventTime")
    if isinstance(event_time, str) and event_time:
        payload["timestamp"] = event_time
    for key, field in (("component", "eventSource"), ("class", "eventName")):
        value = alert.event.data.get(field)
        if isinstance(value, str) and value:
            payload[key] = cap(value, 255)
    account = alert.event.data.get("recipientAccountId")
    if isinstance(account, str) and account:
        payload["group"] = account
    body: dict[str, Any] = {
        "routing_key": routing_key,
        "event_action": "trigger",
        "dedup_key": dedup_key(alert),
        "payload": payload,
        "client": "stream-processor",
    }
    if alert.runbook:
        body["links"] = [{"href": alert.runbook, "text": "Runbook"}]
    return body


@register
class PagerDutyDestination(JsonPostDestination):
    """Triggers an incident per alert through the Events API v2."""

    TYPE = "pagerduty"
    REQUIRED_KEYS = ("routing_key",)
    OPTIONAL_KEYS = ("events_url",)
    SERVICE = "PagerDuty"
    URL_KEY = "events_url"

    def __init__(self, config: DestinationConfig, aws: AwsSettings | None = None) -> None:
        super().__init__(config, aws)
        self._routing_key = str(config.options.get("routing_key", ""))
        custom_url = config.options.get("events_url")
        self._events_url = str(custom_url or DEFAULT_EVENTS_URL)
        self._protect(str(custom_url) if custom_url else None, self._routing_key)

    def __repr__(self) -> str:  # never the routing key
        return f"PagerDutyDestination(id={self.id!r}, routing_key={REDACTED!r})"

    @classmethod
    def check_options(cls, options: Mapping[str, Any]) -> Iterable[str]:
        """Load-time checks of resolved values; messages name keys, never values."""
        problem = http_url_problem("events_url", options.get("events_url"))
        if problem:
            yield problem
        routing_key = options.get("routing_key")
        if isinstance(routing_key, str) and (routing_key != routing_key.strip() or " " in routing_key):
            yield "routing_key holds spaces: an Events API v2 integration key has none (the value is not shown)"

    def _send(self, alert: Alert) -> None:
        body = dumps_text(pagerduty_event(alert, self._routing_key), spaced=True).encode()
        self._post(self._events_url, body, {"Content-Type": "application/json", "User-Agent": "stream-processor"})


__all__ = ["DEFAULT_EVENTS_URL", "SEVERITY_MAP", "PagerDutyDestination", "dedup_key", "pagerduty_event"]
