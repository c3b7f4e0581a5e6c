"""`ses`: an email with a text and an HTML body (every value HTML-escaped) to `to_emails`."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from stream_processor.alerts.aws_errors import client_config, delivery_error
from stream_processor.alerts.destinations.base import Destination, register
from stream_processor.alerts.render import html_body, plain_text, subject
from stream_processor.aws import AwsSettings
from stream_processor.config import DestinationConfig
from stream_processor.errors import DeliveryError, PermanentDeliveryError
from stream_processor.model import Alert


@register
class SesDestination(Destination):
    """Sends through SES `send_email` from `from_email`; throttling and 5xx retryable, rejections permanent."""

    TYPE = "ses"
    REQUIRED_KEYS = ("to_emails", "from_email")
    SUBJECT_CHARS = 200

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

    def _send(self, alert: Alert) -> None:
        recipients = self.to_emails
        if not recipients or not self.from_email:
            raise PermanentDeliveryError(f"ses destination {self.id!r}: to_emails and from_email must be set")
        message = {
            "Subject": {"Data": subject(alert, self.SUBJECT_CHARS), "Charset": "UTF-8"},
            "Body": {
                "Text": {"Data": plain_text(alert), "Charset": "UTF-8"},
                "Html": {"Data": html_body(alert), "Charset": "UTF-8"},
            },
        }
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
