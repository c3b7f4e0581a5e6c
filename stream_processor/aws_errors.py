"""botocore errors, judged in one place: the delivery error the retry policy understands, the client config it
assumes, and the one line (with an exit code) a command prints for a failure the user can fix. Their code and
message read by `error_code` / `error_message`. Below `aws.py` (sessions and clients), which uses it to say
what went wrong while making one.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

# botocore is imported where an error is judged or a client configured: a command that reads files and
# never calls AWS (`match`, `validate`) should not pay 60 ms for it.
if TYPE_CHECKING:
    from botocore.config import Config

from stream_processor.errors import (
    EXIT_AWS_ACCESS,
    EXIT_AWS_UNAVAILABLE,
    EXIT_FINDINGS,
    EXIT_USAGE,
    DeliveryError,
    PermanentDeliveryError,
    RetryableDeliveryError,
)

MESSAGE_CHARS: Final = 300


def _response_part(error: BaseException, part: str) -> Mapping[str, Any]:
    response: Any = getattr(error, "response", None)
    value = response.get(part) if isinstance(response, Mapping) else None
    return value if isinstance(value, Mapping) else {}


def error_code(error: BaseException) -> str:
    """The AWS error code of a botocore `ClientError` (or anything with its `response`), else ''."""
    return str(_response_part(error, "Error").get("Code") or "")


def error_message(error: BaseException) -> str:
    """AWS's own message of a `ClientError` on one line, capped; '' when there is none."""
    message = str(_response_part(error, "Error").get("Message") or "")
    return " ".join(message.split())[:MESSAGE_CHARS]


def http_status(error: BaseException) -> int | None:
    """The HTTP status AWS answered a `ClientError` with, else None."""
    status = _response_part(error, "ResponseMetadata").get("HTTPStatusCode")
    return status if isinstance(status, int) else None


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


EXPIRED_CODES = frozenset({"ExpiredToken", "ExpiredTokenException", "RequestExpired", "TokenRefreshRequired"})
"""The credentials were good once and are not any more."""
INVALID_CREDENTIAL_CODES = frozenset(
    {
        "InvalidClientTokenId",
        "UnrecognizedClientException",
        "InvalidAccessKeyId",
        "SignatureDoesNotMatch",
        "InvalidSignatureException",
        "IncompleteSignature",
        "AuthFailure",
        "InvalidToken",
        "MissingAuthenticationToken",
        "MissingAuthenticationTokenException",
    }
)
"""AWS does not know these credentials (wrong key, wrong partition, a typo in a secret key)."""
ACCESS_DENIED_CODES = frozenset(
    {
        "AccessDenied",
        "AccessDeniedException",
        "AuthorizationError",
        "AuthorizationErrorException",
        "UnauthorizedOperation",
        "Forbidden",
        "403",
        "KMS.AccessDeniedException",
        "KMSAccessDeniedException",
        "InvalidGrantTokenException",
    }
)
"""The identity is known and may not do this."""


def is_throttling(error: BaseException) -> bool:
    return error_code(error) in RETRYABLE_CODES or http_status(error) in (429, 503)


@dataclass(frozen=True, slots=True)
class AwsFailure:
    """What a command prints for a botocore failure (one line) and the exit code it ends with."""

    message: str
    exit_code: int
    kind: str
    """region, profile, config, credentials, expired, access, unreachable, throttled, or service."""


def describe_failure(error: BaseException) -> AwsFailure | None:
    """One line saying what went wrong with AWS and what to do, or None when `error` is not an AWS failure.

    Walks `__cause__`, so a wrapped botocore error (a store's, a lease reader's) is found too.
    """
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        found = _describe_one(current)
        if found is not None:
            return found
        current = current.__cause__
    return None


def _describe_one(error: BaseException) -> AwsFailure | None:
    from botocore import exceptions as boto

    if isinstance(error, boto.ClientError):
        return _describe_client_error(error)
    if isinstance(error, boto.NoRegionError):
        return AwsFailure(
            "no AWS region: pass --region, set AWS_REGION (or AWS_DEFAULT_REGION), or give the profile a region",
            EXIT_USAGE,
            "region",
        )
    if isinstance(error, boto.InvalidRegionError):
        return AwsFailure(f"{error}: pass a region name such as us-east-1", EXIT_USAGE, "region")
    if isinstance(error, boto.ProfileNotFound):
        profile = getattr(error, "kwargs", {}).get("profile", "?")
        return AwsFailure(
            f"AWS profile {profile!r} is not in ~/.aws/config or ~/.aws/credentials: fix --profile (or "
            f"AWS_PROFILE), or create it with `aws configure --profile {profile}`",
            EXIT_USAGE,
            "profile",
        )
    if isinstance(error, boto.ConfigParseError | boto.ConfigNotFound | boto.InvalidConfigError):
        return AwsFailure(f"the AWS config is unusable: {_one_line(error)}: fix the file", EXIT_USAGE, "config")
    if isinstance(error, boto.UnauthorizedSSOTokenError | boto.SSOTokenLoadError | boto.TokenRetrievalError):
        return AwsFailure(
            "the AWS SSO session has expired or was never started: run `aws sso login` (with --profile "
            "for a named profile)",
            EXIT_AWS_ACCESS,
            "expired",
        )
    if isinstance(error, boto.NoCredentialsError):
        return AwsFailure(
            "no AWS credentials found: run `aws configure` or `aws sso login`, pass --profile (or set "
            "AWS_PROFILE), or export AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY",
            EXIT_AWS_ACCESS,
            "credentials",
        )
    if isinstance(
        error, boto.PartialCredentialsError | boto.CredentialRetrievalError | boto.RefreshWithMFAUnsupportedError
    ):
        return AwsFailure(
            f"AWS credentials are incomplete or could not be fetched ({_one_line(error)}): fix the profile "
            "or the AWS_* variables",
            EXIT_AWS_ACCESS,
            "credentials",
        )
    if isinstance(
        error,
        boto.ConnectTimeoutError | boto.ReadTimeoutError | boto.EndpointConnectionError | boto.ConnectionClosedError,
    ):
        url = getattr(error, "kwargs", {}).get("endpoint_url", "")
        where = f" at {url}" if url else ""
        return AwsFailure(
            f"cannot reach AWS{where} ({type(error).__name__}): check the network (proxy, VPC endpoints), the "
            "region, and --endpoint-url / AWS_ENDPOINT_URL",
            EXIT_AWS_UNAVAILABLE,
            "unreachable",
        )
    if isinstance(error, boto.SSLError | boto.ProxyConnectionError | boto.HTTPClientError):
        return AwsFailure(
            f"cannot reach AWS ({type(error).__name__}: {_one_line(error)}): check the network, proxy and "
            "certificates (AWS_CA_BUNDLE)",
            EXIT_AWS_UNAVAILABLE,
            "unreachable",
        )
    if isinstance(error, ValueError) and str(error).startswith("Invalid endpoint"):
        return AwsFailure(
            f"{_one_line(error)}: give --endpoint-url (or AWS_ENDPOINT_URL) as http(s)://host[:port]",
            EXIT_USAGE,
            "config",
        )
    if isinstance(error, boto.BotoCoreError):
        return AwsFailure(f"AWS SDK: {_one_line(error)}", EXIT_USAGE, "config")
    return None


def _describe_client_error(error: BaseException) -> AwsFailure:
    code = error_code(error) or "Unknown"
    operation = getattr(error, "operation_name", "") or "the call"
    said = error_message(error)
    detail = f" ({code}: {said})" if said else f" ({code})"
    if code in EXPIRED_CODES:
        return AwsFailure(
            f"the AWS credentials have expired{detail}: refresh them (`aws sso login`, a new session token) "
            "and run again",
            EXIT_AWS_ACCESS,
            "expired",
        )
    if code in INVALID_CREDENTIAL_CODES:
        return AwsFailure(
            f"AWS does not accept these credentials{detail}: check the access key, the profile, and that "
            "the region belongs to the account's partition",
            EXIT_AWS_ACCESS,
            "credentials",
        )
    if code in ACCESS_DENIED_CODES or (http_status(error) == 403 and code not in RETRYABLE_CODES):
        return AwsFailure(
            f"access denied on {operation}{detail}: grant this identity the permission (its policy, and the "
            "resource's policy or KMS key policy), or use another --profile",
            EXIT_AWS_ACCESS,
            "access",
        )
    if is_throttling(error) or (http_status(error) or 0) >= 500:
        return AwsFailure(
            f"AWS is throttling or unavailable on {operation}{detail}: wait and run again (or lower --workers)",
            EXIT_AWS_UNAVAILABLE,
            "throttled",
        )
    return AwsFailure(f"AWS refused {operation}{detail}", EXIT_FINDINGS, "service")


def _one_line(error: BaseException) -> str:
    return " ".join(str(error).split())[:MESSAGE_CHARS]


def client_config(timeout: float) -> Config:
    """Timeouts on every call and no botocore retries: `alerts.delivery` owns the one retry policy."""
    from botocore.config import Config

    return Config(connect_timeout=timeout, read_timeout=timeout, retries={"max_attempts": 1, "mode": "standard"})


def delivery_error(error: Exception, service: str, destination_id: str) -> DeliveryError:
    """The retryable or permanent error for a botocore failure, with the AWS error code, never chained text."""
    from botocore import exceptions as boto

    where = f"{service} destination {destination_id!r}"
    if isinstance(error, boto.ClientError):
        code = error_code(error) or "Unknown"
        message = error_message(error)
        status = http_status(error)
        text = f"{where}: AWS answered {status or '?'} {code}" + (f": {message}" if message else "")
        if code in RETRYABLE_CODES or (isinstance(status, int) and (status == 429 or status >= 500)):
            return RetryableDeliveryError(text)
        return PermanentDeliveryError(text)
    if isinstance(error, boto.ConnectTimeoutError | boto.ReadTimeoutError):
        return RetryableDeliveryError(f"{where}: call timed out ({type(error).__name__})")
    if isinstance(error, boto.EndpointConnectionError | boto.ConnectionClosedError | boto.HTTPClientError):
        return RetryableDeliveryError(f"{where}: connection failed ({type(error).__name__})")
    if isinstance(error, boto.BotoCoreError):  # no credentials, invalid parameters: no retry will help
        return PermanentDeliveryError(f"{where}: {type(error).__name__}: {error}")
    return RetryableDeliveryError(f"{where}: {type(error).__name__}")
