"""`slack_webhook`: Block Kit with a plain-text fallback, posted to an incoming-webhook URL.

The webhook URL is a secret (whoever has it can post to the channel): it never appears in an error
message or a log line. requests' exceptions carry the URL, so they are replaced, not chained.
"""

from __future__ import annotations

import email.utils
import json
import time

import requests

from stream_processor.alerts.destinations.base import Destination, register
from stream_processor.alerts.redact import REDACTED, protect_url, url_secrets
from stream_processor.alerts.render import slack_payload
from stream_processor.aws import AwsSettings
from stream_processor.config import DestinationConfig
from stream_processor.errors import DeliveryError, PermanentDeliveryError, RetryableDeliveryError
from stream_processor.model import Alert


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a `Retry-After` header (delta-seconds or an HTTP date); None if absent or invalid."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        seconds = when.timestamp() - (time.time() if now is None else now)
    if seconds != seconds:  # NaN
        return None
    return max(seconds, 0.0)


@register
class SlackDestination(Destination):
    """Posts to `webhook_url` over one `requests.Session`, with a timeout on every call.

    2xx is delivered; 429 is retryable after `Retry-After`; 5xx, timeouts and connection errors are
    retryable; any other answer is permanent (Slack's 400 invalid_payload, 403, 404 no_service, 410).
    """

    TYPE = "slack_webhook"
    REQUIRED_KEYS = ("webhook_url",)
    RATE_LIMIT = (1.0, 5)  # Slack incoming webhooks: about one message a second, short bursts allowed
    BODY_CHARS = 200
    """How much of Slack's answer goes into an error message."""

    def __init__(self, config: DestinationConfig, aws: AwsSettings | None = None) -> None:
        super().__init__(config, aws)
        self._url = str(config.options.get("webhook_url", ""))
        protect_url(self._url)
        self._session: requests.Session | None = None

    def __repr__(self) -> str:  # never the URL
        return f"SlackDestination(id={self.id!r}, webhook_url={REDACTED!r})"

    @property
    def session(self) -> requests.Session:
        """The destination's one HTTP session (kept-alive connections to Slack)."""
        if self._session is None:
            self._session = requests.Session()
        return self._session

    def _send(self, alert: Alert) -> None:
        body = json.dumps(slack_payload(alert), ensure_ascii=False).encode()
        failure: DeliveryError | None = None
        response: requests.Response | None = None
        try:
            response = self.session.post(
                self._url,
                data=body,
                headers={"Content-Type": "application/json; charset=utf-8"},
                timeout=self.timeout,
                allow_redirects=False,
            )
        except requests.Timeout as error:
            failure = RetryableDeliveryError(
                f"{self._where}: no answer within {self.timeout:g} s ({type(error).__name__})"
            )
        except requests.ConnectionError as error:
            failure = RetryableDeliveryError(f"{self._where}: connection failed ({type(error).__name__})")
        except (requests.exceptions.InvalidURL, requests.exceptions.MissingSchema, requests.exceptions.InvalidSchema):
            failure = PermanentDeliveryError(f"{self._where}: webhook_url is not a usable http(s) URL")
        except requests.RequestException as error:  # no retry will help
            failure = PermanentDeliveryError(f"{self._where}: request failed ({type(error).__name__})")
        # raised here, outside the except blocks: requests' error (which holds the URL) is neither
        # the cause nor the context of ours
        if failure is not None:
            raise failure
        assert response is not None
        with response:
            self._check(response)

    @property
    def _where(self) -> str:
        return f"slack_webhook destination {self.id!r}"

    def _check(self, response: requests.Response) -> None:
        status = response.status_code
        if 200 <= status < 300:
            return
        answer = self._answer(response)
        if status == 429:
            retry_after = parse_retry_after(response.headers.get("Retry-After"))
            wait = f", Retry-After {retry_after:g} s" if retry_after is not None else ""
            raise RetryableDeliveryError(f"{self._where}: Slack answered 429 (rate limited{wait}){answer}", retry_after)
        if status >= 500:
            raise RetryableDeliveryError(f"{self._where}: Slack answered {status}{answer}")
        raise PermanentDeliveryError(f"{self._where}: Slack answered {status}{answer}")

    def _answer(self, response: requests.Response) -> str:
        """Slack's short error body (`invalid_payload`, `no_service`), capped and scrubbed of the URL."""
        try:
            text = response.text[: self.BODY_CHARS]
        except Exception:
            return ""
        text = " ".join(text.split())
        for secret in url_secrets(self._url):
            text = text.replace(secret, REDACTED)
        return f": {text}" if text else ""

    def close(self) -> None:
        if self._session is not None:
            self._session.close()
            self._session = None


__all__ = ["SlackDestination", "parse_retry_after"]
