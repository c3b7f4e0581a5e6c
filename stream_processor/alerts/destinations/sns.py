"""`sns`: publish the alert as JSON (name, description, match, event) with a one-line Subject.

`format = "tattletail"` publishes cloudtrail-tattletail's message instead (`alerts/tattletail.py`): keys name,
description, record, match, and no Subject.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

from stream_processor.alerts import tattletail
from stream_processor.alerts.destinations.base import TATTLETAIL_FORMAT, Destination, format_problem, register
from stream_processor.alerts.render import event_json, sns_message, subject
from stream_processor.aws import AwsSettings
from stream_processor.aws_errors import client_config, delivery_error
from stream_processor.errors import DeliveryError
from stream_processor.json_out import dumps_text
from stream_processor.model import Alert, DestinationConfig


@register
class SnsDestination(Destination):
    """Publishes to the topic `sns_arn`; throttling and 5xx are retryable, other client errors permanent."""

    TYPE = "sns"
    REQUIRED_KEYS = ("sns_arn",)
    OPTIONAL_KEYS = ("format",)
    NOT_AN_ARN = (
        "sns_arn is not an SNS topic ARN: write the whole ARN, arn:aws:sns:REGION:ACCOUNT:TOPIC (12-digit account; "
        "aws sns list-topics shows it)"
    )
    TOPIC_ARN = re.compile(r"^arn:aws(-[a-z]+)*:sns:[a-z]{2}(-[a-z]+)+-\d+:\d{12}:[A-Za-z0-9_-]{1,256}(\.fifo)?$")
    MAX_MESSAGE_BYTES = 256 * 1024
    """SNS rejects a message over 256 KiB; bigger events are sent capped, as a string, flagged."""

    def __init__(self, config: DestinationConfig, aws: AwsSettings | None = None) -> None:
        super().__init__(config, aws)
        self._client: Any = None

    @property
    def topic_arn(self) -> str:
        return str(self.config.options["sns_arn"])

    @classmethod
    def check_options(cls, options: Mapping[str, Any]) -> Iterable[str]:
        """At load, as tattletail: an ARN, not a topic name (`sns_arn = "cloudtail_alert"`); a format we write."""
        arn = options.get("sns_arn")
        if isinstance(arn, str) and not arn.strip().startswith("arn:"):
            yield cls.NOT_AN_ARN
        problem = format_problem(options)
        if problem:
            yield problem

    @classmethod
    def sending_problems(cls, options: Mapping[str, Any]) -> Iterable[str]:
        """Before going live (`validate`, sending): the ARN of an SNS topic, partition, region and account included."""
        arn = options.get("sns_arn")
        if isinstance(arn, str) and arn.strip().startswith("arn:") and not cls.TOPIC_ARN.match(arn.strip()):
            yield cls.NOT_AN_ARN

    def _send(self, alert: Alert) -> None:
        try:
            if self.format == TATTLETAIL_FORMAT:  # tattletail's call: the message, no Subject
                self.client().publish(TopicArn=self.topic_arn, Message=tattletail.sns_message(alert))
                return
            message = self.message(alert)
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
