"""botocore errors → the delivery error the retry policy understands, and the client config it assumes."""

from __future__ import annotations

from typing import Any

from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectionClosedError,
    ConnectTimeoutError,
    EndpointConnectionError,
    HTTPClientError,
    ReadTimeoutError,
)

from stream_processor.errors import DeliveryError, PermanentDeliveryError, RetryableDeliveryError

RETRYABLE_CODES = frozenset(
    {
        "Throttling",
        "ThrottlingException",
        "ThrottledException",
        "RequestThrottled",
        "RequestThrottledException",
        "TooManyRequestsException",
        "ProvisionedThroughputExceededException",
        "RequestLimitExceeded",
        "SlowDown",
        "ServiceUnavailable",
        "ServiceUnavailableException",
        "InternalError",
        "InternalFailure",
        "InternalErrorException",
        "KMSThrottlingException",
        "RequestTimeout",
        "RequestTimeoutException",
    }
)
"""Error codes worth another attempt even when the status code is a 4xx (AWS throttles with 400)."""


def client_config(timeout: float) -> Config:
    """Timeouts on every call and no botocore retries: `alerts.delivery` owns the one retry policy."""
    return Config(connect_timeout=timeout, read_timeout=timeout, retries={"max_attempts": 1, "mode": "standard"})


def delivery_error(error: Exception, service: str, destination_id: str) -> DeliveryError:
    """The retryable or permanent error for a botocore failure, with the AWS error code, never chained text."""
    where = f"{service} destination {destination_id!r}"
    if isinstance(error, ClientError):
        response: Any = error.response
        details = response.get("Error", {}) if isinstance(response, dict) else {}
        code = str(details.get("Code", "") or "Unknown")
        message = str(details.get("Message", "") or "")[:300]
        status = (response.get("ResponseMetadata", {}) if isinstance(response, dict) else {}).get("HTTPStatusCode")
        text = f"{where}: AWS answered {status or '?'} {code}" + (f": {message}" if message else "")
        if code in RETRYABLE_CODES or (isinstance(status, int) and (status == 429 or status >= 500)):
            return RetryableDeliveryError(text)
        return PermanentDeliveryError(text)
    if isinstance(error, ConnectTimeoutError | ReadTimeoutError):
        return RetryableDeliveryError(f"{where}: call timed out ({type(error).__name__})")
    if isinstance(error, EndpointConnectionError | ConnectionClosedError | HTTPClientError):
        return RetryableDeliveryError(f"{where}: connection failed ({type(error).__name__})")
    if isinstance(error, BotoCoreError):  # no credentials, invalid parameters: no retry will help
        return PermanentDeliveryError(f"{where}: {type(error).__name__}: {error}")
    return RetryableDeliveryError(f"{where}: {type(error).__name__}")
