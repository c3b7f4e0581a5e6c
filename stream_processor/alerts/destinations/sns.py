"""`sns`: publish the alert as JSON (name, description, match, event) with a one-line Subject."""

from __future__ import annotations

from typing import Any

from stream_processor.alerts.aws_errors import client_config, delivery_error
from stream_processor.alerts.destinations.base import Destination, register
from stream_processor.alerts.render import event_json, sns_message, subject
from stream_processor.aws import AwsSettings
from stream_processor.config import DestinationConfig
from stream_processor.errors import DeliveryError
from stream_processor.json_out import dumps_text
from stream_processor.model import Alert


@register
class SnsDestination(Destination):
    """Publishes to the topic `sns_arn`; throttling and 5xx are retryable, other client errors permanent."""

    TYPE = "sns"
    REQUIRED_KEYS = ("sns_arn",)
    MAX_MESSAGE_BYTES = 256 * 1024
    """SNS rejects a message over 256 KiB; bigger events are sent capped, as a string, flagged."""

    def __init__(self, config: DestinationConfig, aws: AwsSettings | None = None) -> None:
        super().__init__(config, aws)
        self._client: Any = None

    @property
    def topic_arn(self) -> str:
        return str(self.config.options["sns_arn"])

    def _send(self, alert: Alert) -> None:
        message = self.message(alert)
        try:
            self.client().publish(TopicArn=self.topic_arn, Message=message, Subject=subject(alert))
        except DeliveryError:
            raise
        except Exception as error:  # botocore: classify once, without chaining its text
            failure = delivery_error(error, self.TYPE, self.id)
        else:
            return
        raise failure

    def message(self, alert: Alert) -> str:
        """The JSON message, with the event cut down when the whole would not fit in one SNS message."""
        body = sns_message(alert)
        text = dumps_text(body, spaced=True)
        if len(text.encode()) <= self.MAX_MESSAGE_BYTES:
            return text
        body["event"] = event_json(alert, self.MAX_MESSAGE_BYTES // 8)
        body["event_truncated"] = True
        body["match"] = dumps_text(body["match"], spaced=True)[: self.MAX_MESSAGE_BYTES // 8]
        return dumps_text(body, spaced=True)

    def client(self) -> Any:
        """The boto3 SNS client, created on first use with this destination's timeout."""
        if self._client is None:
            self._client = self.aws.client("sns", config=client_config(self.timeout))
        return self._client

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None
