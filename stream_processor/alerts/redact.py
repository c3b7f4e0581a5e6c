"""Keep secrets (webhook URLs) out of log records, including those of the HTTP libraries underneath.

urllib3 logs every request line at DEBUG (`"POST /services/T0/B0/secret HTTP/1.1" 200`): the path of a
Slack webhook URL is its secret. Destinations register their secrets here; the filter on those loggers
rewrites any record that contains one.
"""

from __future__ import annotations

import logging
import threading
from urllib.parse import urlsplit

REDACTED = "<redacted>"
LIBRARY_LOGGERS = ("urllib3.connectionpool", "urllib3.util.retry", "requests")
# botocore logs every response body at DEBUG ("Response body: b'{...}'"), secret values from SSM and Secrets
# Manager included, before our resolver has seen (and registered) them.
AWS_LOGGERS = ("botocore.parsers", "botocore.endpoint")
AWS_SECRET_MARKERS = ('"SecretString"', '"SecretBinary"', '"Parameter"', '"Parameters"')


class SecretRedactor(logging.Filter):
    """A logging filter that replaces every registered secret in a record's message by `<redacted>`."""

    def __init__(self) -> None:
        super().__init__()
        self._secrets: set[str] = set()
        self._lock = threading.Lock()

    def add(self, secret: str) -> None:
        if secret:
            with self._lock:
                self._secrets.add(secret)

    def redact(self, text: str) -> str:
        with self._lock:
            secrets = sorted(self._secrets, key=len, reverse=True)
        for secret in secrets:
            text = text.replace(secret, REDACTED)
        return text

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a malformed record: let logging report it as usual
            return True
        redacted = self.redact(message)
        if redacted != message:
            record.msg = redacted
            record.args = None
        return True


REDACTOR = SecretRedactor()
_installed = False
_install_lock = threading.Lock()


class AwsSecretBodyFilter(logging.Filter):
    """Drops the body from botocore records that carry an SSM parameter or a Secrets Manager value.

    The values cannot be redacted one by one: this record is written while the value is being fetched, before
    anything knows it. Registered secrets are redacted from the other botocore records as usual.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:
            return True
        if any(marker in message for marker in AWS_SECRET_MARKERS):
            first = message.split(":", 1)[0] if ":" in message[:80] else "botocore record"
            record.msg = f"{first}: {REDACTED} (may hold an SSM parameter or a Secrets Manager value)"
            record.args = None
            return True
        return REDACTOR.filter(record)


_aws_installed = False


def protect_aws_secrets() -> None:
    """Make sure botocore's debug records never show a fetched secret (called before the first fetch)."""
    global _aws_installed
    with _install_lock:
        if not _aws_installed:
            body_filter = AwsSecretBodyFilter()
            for name in AWS_LOGGERS:
                logging.getLogger(name).addFilter(body_filter)
            _aws_installed = True


def url_secrets(url: str) -> list[str]:
    """The parts of a URL that must never be logged: the whole URL and its path and query."""
    parts = urlsplit(url)
    secrets = [url]
    if parts.path and parts.path != "/":
        secrets.append(parts.path)
    if parts.query:
        secrets.append(parts.query)
    return secrets


def protect_url(url: str) -> None:
    """Register a secret URL and make sure the HTTP libraries' loggers redact it."""
    global _installed
    for secret in url_secrets(url):
        REDACTOR.add(secret)
    with _install_lock:
        if not _installed:
            for name in LIBRARY_LOGGERS:
                logging.getLogger(name).addFilter(REDACTOR)
            _installed = True
