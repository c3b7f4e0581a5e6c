"""`ses`: an email with a text and an HTML body (every value HTML-escaped) to `to_emails`.

`format = "tattletail"` sends cloudtrail-tattletail's email instead (`alerts/tattletail.py`): its subject and its
text body, no HTML part.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from email.utils import parseaddr
from typing import Any

from stream_processor.alerts import tattletail
from stream_processor.alerts.destinations.base import TATTLETAIL_FORMAT, Destination, format_problem, register
from stream_processor.alerts.render import html_body, plain_text, subject
from stream_processor.aws import AwsSettings
from stream_processor.aws_errors import client_config, delivery_error
from stream_processor.errors import DeliveryError, PermanentDeliveryError
from stream_processor.model import Alert, DestinationConfig


@register
class SesDestination(Destination):
    """Sends through SES `send_email` from `from_email`; throttling and 5xx retryable, rejections permanent."""

    TYPE = "ses"
    REQUIRED_KEYS = ("to_emails", "from_email")
    OPTIONAL_KEYS = ("format",)
    SUBJECT_CHARS = 200
    _LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?"
    ADDRESS = re.compile(rf"^[^@\s<>(),;:\"\[\]]+@{_LABEL}(?:\.{_LABEL})+$")
    """local@domain.tld: what SES can send to or from (a display name around it is fine)."""

    def __init__(self, config: DestinationConfig, aws: AwsSettings | None = None) -> None:
        super().__init__(config, aws)
        self._client: Any = None

    @property
    def to_emails(self) -> list[str]:
        """The recipients: a list in tattletail's schema; a comma-separated string is accepted too."""
        value = self.config.options.get("to_emails", ())
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        if isinstance(value, Sequence):
            return [str(part) for part in value if str(part).strip()]
        return []

    @property
    def from_email(self) -> str:
        return str(self.config.options.get("from_email", ""))

    @classmethod
    def check_options(cls, options: Mapping[str, Any]) -> Iterable[str]:
        """Load-time checks: the format."""
        problem = format_problem(options)
        if problem:
            yield problem

    @classmethod
    def sending_problems(cls, options: Mapping[str, Any]) -> Iterable[str]:
        """Addresses by form (`name@example.com` or `Name <name@example.com>`, as SES takes them): refused by
        `validate` and before sending; tattletail loaded any non-empty text, so a dry run still reads it."""
        sender = options.get("from_email")
        if isinstance(sender, str) and not cls.is_address(sender):
            yield 'from_email is not an email address: write from_email = "alerts@example.com" (an SES identity)'
        recipients = options.get("to_emails")
        if isinstance(recipients, tuple | list):
            for position, recipient in enumerate(recipients, start=1):
                if isinstance(recipient, str) and not cls.is_address(recipient):
                    yield f'to_emails[{position}] is not an email address: write "security@example.com"'

    @classmethod
    def is_address(cls, text: str) -> bool:
        _, address = parseaddr(text)
        return bool(address) and cls.ADDRESS.match(address) is not None and ("<" in text or text.strip() == address)

    def _send(self, alert: Alert) -> None:
        recipients = self.to_emails
        if not recipients or not self.from_email:
            raise PermanentDeliveryError(f"ses destination {self.id!r}: to_emails and from_email must be set")
        if self.format == TATTLETAIL_FORMAT:  # tattletail's email; the charset declared so non-ASCII survives
            message: dict[str, Any] = {
                "Subject": {"Data": tattletail.ses_subject(alert), "Charset": "UTF-8"},
                "Body": {"Text": {"Data": tattletail.ses_body(alert), "Charset": "UTF-8"}},
            }
            self._send_email(recipients, message)
            return
        message = {
            "Subject": {"Data": subject(alert, self.SUBJECT_CHARS), "Charset": "UTF-8"},
            "Body": {
                "Text": {"Data": plain_text(alert), "Charset": "UTF-8"},
                "Html": {"Data": html_body(alert), "Charset": "UTF-8"},
            },
        }
        self._send_email(recipients, message)

    def _send_email(self, recipients: list[str], message: dict[str, Any]) -> None:
        try:
            self.client().send_email(Source=self.from_email, Destination={"ToAddresses": recipients}, Message=message)
        except DeliveryError:
            raise
        except Exception as error:  # botocore: classify once, without chaining its text
            failure = delivery_error(error, self.TYPE, self.id)
        else:
            return
        raise failure

    def client(self) -> Any:
        """The boto3 SES client, created on first use with this destination's timeout."""
        if self._client is None:
            self._client = self.aws.client("ses", config=client_config(self.timeout))
        return self._client

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None
