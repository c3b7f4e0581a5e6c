"""`slack_webhook`: Block Kit with a plain-text fallback, posted to an incoming-webhook URL.

`format = "tattletail"` posts cloudtrail-tattletail's message instead (`alerts/tattletail.py`): one "danger"
attachment with the indented event and the Alert Name, Description and Match fields.

The webhook URL is a secret (whoever has it can post to the channel): it never appears in an error
message or a log line. requests' exceptions carry the URL, so they are replaced, not chained.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from stream_processor.alerts import tattletail
from stream_processor.alerts.destinations.base import TATTLETAIL_FORMAT, format_problem, register
from stream_processor.alerts.http import JsonPostDestination, http_url_problem, parse_retry_after
from stream_processor.alerts.redact import REDACTED
from stream_processor.alerts.render import slack_payload
from stream_processor.aws import AwsSettings
from stream_processor.json_out import dumps_text
from stream_processor.model import Alert, DestinationConfig


@register
class SlackDestination(JsonPostDestination):
    """Posts Block Kit to `webhook_url`; Slack's short error bodies (`invalid_payload`, `no_service`) are quoted."""

    TYPE = "slack_webhook"
    REQUIRED_KEYS = ("webhook_url",)
    OPTIONAL_KEYS = ("format",)
    RATE_LIMIT = (1.0, 5)  # Slack incoming webhooks: about one message a second, short bursts allowed
    SERVICE = "Slack"
    URL_KEY = "webhook_url"

    def __init__(self, config: DestinationConfig, aws: AwsSettings | None = None) -> None:
        super().__init__(config, aws)
        self._url = str(config.options.get("webhook_url", ""))
        self._protect(self._url)

    def __repr__(self) -> str:  # never the URL
        return f"SlackDestination(id={self.id!r}, webhook_url={REDACTED!r})"

    @classmethod
    def check_options(cls, options: Mapping[str, Any]) -> Iterable[str]:
        """Load-time checks; messages name keys, never values."""
        problem = format_problem(options)
        if problem:
            yield problem

    @classmethod
    def sending_problems(cls, options: Mapping[str, Any]) -> Iterable[str]:
        """Why this destination cannot take alerts although the file loads (tattletail loaded any webhook_url,
        its placeholder included, so a dry run still reads such a file): the URL must be https."""
        problem = http_url_problem("webhook_url", options.get("webhook_url"))
        if problem:
            yield problem

    def _send(self, alert: Alert) -> None:
        if self.format == TATTLETAIL_FORMAT:  # slack-go's body for tattletail, with its content type
            self._post(self._url, tattletail.slack_body(alert), {"Content-Type": "application/json"})
            return
        body = dumps_text(slack_payload(alert), spaced=True).encode()
        self._post(self._url, body, {"Content-Type": "application/json; charset=utf-8"})


__all__ = ["SlackDestination", "parse_retry_after"]
