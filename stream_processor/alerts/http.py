"""What the HTTP JSON destinations share: one session, a timeout per call, typed errors without secrets.

requests' exceptions carry the URL (a Slack webhook URL is a secret: whoever has it can post), so they are
replaced, never chained, and every answer quoted in an error is scrubbed of the destination's secrets.
"""

from __future__ import annotations

import email.utils
import ipaddress
import time
from collections.abc import Mapping
from typing import Any, ClassVar
from urllib.parse import urlsplit

import requests

from stream_processor.alerts.destinations.base import Destination
from stream_processor.alerts.redact import REDACTED, REDACTOR, protect_url, url_secrets
from stream_processor.aws import AwsSettings
from stream_processor.errors import DeliveryError, PermanentDeliveryError, RetryableDeliveryError
from stream_processor.model import DestinationConfig


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


def http_url_problem(key: str, value: Any) -> str | None:
    """Why `value` is not a usable webhook URL, without echoing it (URLs hold secrets), or None.

    https is required: the URL and the alerts are secrets on the wire. Plain http is accepted only for a
    loopback host (127.0.0.0/8, ::1, localhost), where local receivers and emulators listen.
    """
    if not isinstance(value, str):
        return None
    parts = urlsplit(value.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return f"{key} is not an https:// URL with a host (the value is not shown: it may be a secret)"
    if parts.scheme == "http" and not _is_loopback(parts.hostname):
        return (
            f"{key} is an http:// URL: use https:// (alerts and the URL itself travel in the clear over http; "
            "only a loopback host may take http). The value is not shown: it may be a secret"
        )
    return None


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class JsonPostDestination(Destination):
    """Shared by the HTTP JSON destinations: one session, a timeout per call, errors that never hold a secret.

    2xx is delivered; 429 is retryable after `Retry-After`; 408, 5xx, timeouts and connection errors are
    retryable; any other answer (3xx included: redirects are not followed) is permanent.
    """

    SERVICE: ClassVar[str] = "the receiver"
    URL_KEY: ClassVar[str] = "url"
    """The option that holds the URL, named (never shown) when it is unusable."""
    BODY_CHARS: ClassVar[int] = 200
    """How much of the answer goes into an error message."""

    def __init__(self, config: DestinationConfig, aws: AwsSettings | None = None) -> None:
        super().__init__(config, aws)
        self._session: requests.Session | None = None
        self._secrets: list[str] = []

    def _protect(self, url: str | None, *values: str) -> None:
        """Register what must never be logged or echoed: the URL (and its path and query) and `values`."""
        if url:
            protect_url(url)
            self._secrets.extend(url_secrets(url))
        for value in values:
            if value:
                REDACTOR.add(value)
                self._secrets.append(value)
        self._secrets.sort(key=len, reverse=True)

    @property
    def session(self) -> requests.Session:
        if self._session is None:
            self._session = requests.Session()
        return self._session

    @property
    def _where(self) -> str:
        return f"{self.TYPE} destination {self.id!r}"

    def _post(self, url: str, body: bytes, headers: Mapping[str, str]) -> None:
        """POST `body`; raise the typed error its outcome calls for."""
        failure: DeliveryError | None = None
        response: requests.Response | None = None
        try:
            response = self.session.post(
                url, data=body, headers=dict(headers), timeout=self.timeout, allow_redirects=False
            )
        except requests.Timeout as error:
            failure = RetryableDeliveryError(
                f"{self._where}: no answer within {self.timeout:g} s ({type(error).__name__})"
            )
        except requests.ConnectionError as error:
            failure = RetryableDeliveryError(f"{self._where}: connection failed ({type(error).__name__})")
        except (requests.exceptions.InvalidURL, requests.exceptions.MissingSchema, requests.exceptions.InvalidSchema):
            failure = PermanentDeliveryError(f"{self._where}: {self.URL_KEY} is not a usable http(s) URL")
        except (requests.RequestException, ValueError) as error:  # e.g. an invalid header value: no retry helps
            failure = PermanentDeliveryError(f"{self._where}: request failed ({type(error).__name__})")
        # raised outside the except blocks: requests' error (which holds the URL) is neither cause nor context
        if failure is not None:
            raise failure
        assert response is not None
        with response:
            self._check(response)

    def _check(self, response: requests.Response) -> None:
        status = response.status_code
        if 200 <= status < 300:
            return
        answer = self._answer(response)
        if status == 429:
            retry_after = parse_retry_after(response.headers.get("Retry-After"))
            wait = f", Retry-After {retry_after:g} s" if retry_after is not None else ""
            raise RetryableDeliveryError(
                f"{self._where}: {self.SERVICE} answered 429 (rate limited{wait}){answer}", retry_after
            )
        if status >= 500 or status == 408:
            raise RetryableDeliveryError(f"{self._where}: {self.SERVICE} answered {status}{answer}")
        raise PermanentDeliveryError(f"{self._where}: {self.SERVICE} answered {status}{answer}")

    def _answer(self, response: requests.Response) -> str:
        """The start of the answer's body, on one line, scrubbed of every secret of this destination."""
        try:
            text = response.text[: self.BODY_CHARS * 4]
        except Exception:
            return ""
        text = self.scrub(" ".join(text.split()))[: self.BODY_CHARS]
        return f": {text}" if text else ""

    def scrub(self, text: str) -> str:
        """`text` without this destination's secrets, nor any other registered one (resolved references)."""
        for secret in self._secrets:
            text = text.replace(secret, REDACTED)
        return REDACTOR.redact(text)

    def close(self) -> None:
        if self._session is not None:
            self._session.close()
            self._session = None


__all__ = ["JsonPostDestination", "http_url_problem", "parse_retry_after"]
