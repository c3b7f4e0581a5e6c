"""`webhook`: the alert as JSON, POSTed to any URL, optionally signed with HMAC-SHA256.

Keys: `url` (required), `headers` (a table of extra request headers), `hmac_secret`. Each may be a
secret reference (`env:`, `ssm:`, `secretsmanager:`), resolved when the config loads.

Signature scheme (when `hmac_secret` is set), verifiable by any receiver:

    X-Signature-Timestamp: <unix seconds when the request was made>
    X-Signature-256: sha256=<hex HMAC-SHA256(key=hmac_secret, msg=timestamp + "." + raw body)>

A receiver recomputes the HMAC over the timestamp header, a dot and the raw request body bytes, compares
it in constant time, and rejects timestamps older than a few minutes (replays). A retry of the same alert
is signed again with its own timestamp; `X-Alert-Key` (a hash of rule + eventID) is the same on every
retry, for receivers that drop repeats.

The URL, header values and secret are never logged or put in an error message.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from stream_processor.alerts.destinations.base import register
from stream_processor.alerts.http import JsonPostDestination, http_url_problem
from stream_processor.alerts.redact import REDACTED
from stream_processor.alerts.render import webhook_record
from stream_processor.aws import AwsSettings
from stream_processor.json_out import dumps_text
from stream_processor.model import Alert, DestinationConfig

SIGNATURE_HEADER = "X-Signature-256"
TIMESTAMP_HEADER = "X-Signature-Timestamp"
ALERT_KEY_HEADER = "X-Alert-Key"
RESERVED_HEADERS = frozenset(h.lower() for h in (SIGNATURE_HEADER, TIMESTAMP_HEADER, "Content-Length", "Host"))
_HEADER_NAME = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """The `X-Signature-256` value: `sha256=` and the hex HMAC-SHA256 of `timestamp + "." + body`."""
    digest = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


def verify(secret: str, timestamp: str, body: bytes, signature: str) -> bool:
    """Whether `signature` is the one `sign` gives (constant-time): what a receiver does, used by tests."""
    return hmac.compare_digest(sign(secret, timestamp, body), signature)


@register
class WebhookDestination(JsonPostDestination):
    """POSTs `render.webhook_record(alert)` as JSON to `url`, with `headers` and an optional signature."""

    TYPE = "webhook"
    REQUIRED_KEYS = ("url",)
    OPTIONAL_KEYS = ("headers", "hmac_secret")
    SERVICE = "the webhook"

    def __init__(
        self,
        config: DestinationConfig,
        aws: AwsSettings | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__(config, aws)
        self._url = str(config.options.get("url", ""))
        headers = config.options.get("headers") or {}
        self._headers = {str(name): str(value) for name, value in dict(headers).items()}
        self._hmac_secret = str(config.options.get("hmac_secret") or "")
        self._clock = clock
        self._protect(self._url, self._hmac_secret, *self._headers.values())

    def __repr__(self) -> str:  # never the URL, headers or secret
        signed = ", signed" if self._hmac_secret else ""
        return f"WebhookDestination(id={self.id!r}, url={REDACTED!r}{signed})"

    @classmethod
    def check_options(cls, options: Mapping[str, Any]) -> Iterable[str]:
        """Load-time checks of resolved values; messages name keys, never values."""
        problem = http_url_problem("url", options.get("url"))
        if problem:
            yield problem
        headers = options.get("headers") or {}
        for name, value in dict(headers).items():
            if not _HEADER_NAME.match(str(name)):
                yield f"headers: {json.dumps(str(name))} is not a valid HTTP header name"
            elif str(name).lower() in RESERVED_HEADERS:
                yield f"headers: {json.dumps(str(name))} is set by stream-processor itself: remove it"
            if isinstance(value, str) and ("\r" in value or "\n" in value):
                yield f"headers.{name}: the value holds a line break, which HTTP headers cannot carry"

    def request(self, alert: Alert) -> tuple[bytes, dict[str, str]]:
        """The body and headers `_send` posts (signed now): separate so tests and receivers can check them."""
        body = dumps_text(webhook_record(alert), spaced=True).encode()
        headers = {"Content-Type": "application/json; charset=utf-8", "User-Agent": "stream-processor"}
        headers.update(self._headers)
        headers[ALERT_KEY_HEADER] = hashlib.sha256(alert.key.encode()).hexdigest()
        if self._hmac_secret:
            timestamp = str(int(self._clock()))
            headers[TIMESTAMP_HEADER] = timestamp
            headers[SIGNATURE_HEADER] = sign(self._hmac_secret, timestamp, body)
        return body, headers

    def _send(self, alert: Alert) -> None:
        body, headers = self.request(alert)
        self._post(self._url, body, headers)


__all__ = [
    "ALERT_KEY_HEADER",
    "SIGNATURE_HEADER",
    "TIMESTAMP_HEADER",
    "JsonPostDestination",
    "WebhookDestination",
    "http_url_problem",
    "sign",
    "verify",
]
