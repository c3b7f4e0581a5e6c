"""How to reach AWS (or the local emulators): read once by the CLI or the Lambda runtime, handed to each component.

Everything goes through boto3's own mechanisms, so the tool behaves like the AWS CLI:

- region: `--region`, else `AWS_REGION` (what ECS and Lambda set; botocore itself reads only the next two),
  else `AWS_DEFAULT_REGION`, else the profile's `region`;
- credentials: the SDK's default chain, from `--profile` / `AWS_PROFILE` when given;
- endpoint: `--endpoint-url` for every service, else botocore's configured endpoints (`AWS_ENDPOINT_URL_<SERVICE>`,
  `AWS_ENDPOINT_URL`, a profile's `endpoint_url` or `services` section, unless
  `AWS_IGNORE_CONFIGURED_ENDPOINT_URLS` is set), else AWS. Per-service overrides (kinesis-local beside moto)
  sit between the two.

Also `split_s3_url` for `s3://bucket/key`, which every module shares (a botocore error's code, message and
status are read in `aws_errors.py`). Importing this module does not import boto3.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Final

from stream_processor.errors import AwsError

if TYPE_CHECKING:  # boto3 is imported when a session is made: reading a local rule file never pays for it
    import boto3

S3_SCHEME: Final = "s3://"
REGION_HINT = "pass --region, set AWS_REGION (or AWS_DEFAULT_REGION), or give the profile a region"

_SESSIONS: dict[tuple[Any, ...], boto3.session.Session] = {}
_SESSIONS_LOCK = threading.Lock()


@dataclass(frozen=True, slots=True)
class AwsSettings:
    """Region, profile and endpoint overrides; None everywhere means the SDK's defaults (real AWS)."""

    region: str | None = None
    profile: str | None = None
    endpoint_url: str | None = None
    service_endpoints: tuple[tuple[str, str], ...] = field(default=())
    """(service, URL) pairs that win over `endpoint_url` for that service, e.g. ("kinesis", kinesis-local)."""

    @classmethod
    def from_environ(
        cls,
        environ: Mapping[str, str],
        *,
        region: str | None = None,
        profile: str | None = None,
        endpoint_url: str | None = None,
        service_endpoints: Mapping[str, str | None] | None = None,
    ) -> AwsSettings:
        """Flags first, then `AWS_REGION` (botocore reads `AWS_DEFAULT_REGION`, `AWS_PROFILE` and the endpoint
        variables itself, when the session is made)."""
        services = tuple(sorted((name, url) for name, url in (service_endpoints or {}).items() if url))
        return cls(
            region=region or environ.get("AWS_REGION") or None,
            profile=profile or None,
            endpoint_url=endpoint_url or None,
            service_endpoints=services,
        )

    def with_region(self, region: str | None) -> AwsSettings:
        return replace(self, region=region)

    def session(self) -> boto3.session.Session:
        """One boto3 session per (region, profile), shared by every client of the process.

        Raises:
            AwsError: the profile does not exist, or the shared config is broken.
        """
        # botocore reads AWS_* variables when a session is made: a changed environment gets a new session
        environment = tuple(sorted(item for item in os.environ.items() if item[0].startswith("AWS_")))
        key = (self.region, self.profile, environment)
        with _SESSIONS_LOCK:
            session = _SESSIONS.get(key)
            if session is None:
                import boto3

                try:
                    session = boto3.session.Session(region_name=self.region, profile_name=self.profile)
                except Exception as error:
                    raise _setup_error(error) from error
                _SESSIONS[key] = session
        return session

    @property
    def resolved_region(self) -> str | None:
        """The region clients will use: ours, else the SDK's (`AWS_DEFAULT_REGION`, the profile).

        Raises:
            AwsError: see `session`.
        """
        if self.region:
            return self.region
        try:
            region = self.session().region_name
        except AwsError:
            raise
        except Exception as error:  # AWS_PROFILE names no profile: botocore says so on first use
            raise _setup_error(error) from error
        return str(region) if region else None

    def require_region(self) -> str:
        """The resolved region.

        Raises:
            AwsError: none is configured anywhere (exit 2: configuration).
        """
        region = self.resolved_region
        if not region:
            raise AwsError(f"no AWS region: {REGION_HINT}")
        return region

    def endpoint_for(self, service: str) -> str | None:
        """The endpoint a client for `service` would use when it is not AWS's own, else None.

        Used where the URL must be written down for something that is not boto3 (the KCL daemon's properties).
        """
        explicit = dict(self.service_endpoints).get(service) or self.endpoint_url
        if explicit:
            return explicit
        from botocore.configprovider import ConfiguredEndpointProvider

        session = self.session()._session
        try:
            if session.get_config_variable("ignore_configured_endpoint_urls"):
                return None
            provider = ConfiguredEndpointProvider(
                full_config=session.full_config, scoped_config=session.get_scoped_config(), client_name=service
            )
            found = provider.provide()
        except Exception as error:
            raise _setup_error(error) from error
        return str(found) if found else None

    def client(self, service: str, config: Any = None, credentials: Mapping[str, Any] | None = None) -> Any:
        """A boto3 client for `service` from this process's session, at the endpoint override if there is one.

        `config` is an optional `botocore.config.Config` (timeouts, retries); `credentials` explicit keys
        (`aws_access_key_id`, ...) instead of the session's chain (fake ones for emulators).

        Raises:
            AwsError: see `session`.
        """
        kwargs: dict[str, Any] = {}
        if config is not None:
            kwargs["config"] = config
        kwargs.update({key: value for key, value in (credentials or {}).items() if value})
        endpoint = dict(self.service_endpoints).get(service) or self.endpoint_url
        if endpoint:
            kwargs["endpoint_url"] = endpoint
        session = self.session()
        with _SESSIONS_LOCK:  # a boto3 session is not thread-safe while it makes clients; clients are
            try:
                return session.client(service, **kwargs)  # type: ignore[call-overload]
            except Exception as error:  # unknown profile (AWS_PROFILE), bad endpoint URL, broken config file
                raise _setup_error(error) from error

    def as_argv(self) -> list[str]:
        """These settings as command-line flags (`add_aws_arguments` reads them back)."""
        argv: list[str] = []
        if self.region:
            argv += ["--region", self.region]
        if self.profile:
            argv += ["--profile", self.profile]
        if self.endpoint_url:
            argv += ["--endpoint-url", self.endpoint_url]
        for service, url in self.service_endpoints:
            argv += ["--service-endpoint", f"{service}={url}"]
        return argv


def forget_sessions() -> None:
    """Drop cached sessions (tests that change the environment between cases)."""
    with _SESSIONS_LOCK:
        _SESSIONS.clear()


def split_s3_url(url: str, *, key_required: bool = False) -> tuple[str, str]:
    """(bucket, key) of `s3://bucket/key`, the key (or prefix, possibly empty) kept verbatim: keys may start with `/`.

    Raises:
        ValueError: not an `s3://` URL, no bucket, or no key when `key_required`.
    """
    if not url.startswith(S3_SCHEME):
        raise ValueError(f"{url!r} is not an s3:// URL")
    bucket, _, key = url.removeprefix(S3_SCHEME).partition("/")
    if not bucket:
        raise ValueError(f"{url!r} names no bucket")
    if key_required and not key:
        raise ValueError(f"{url!r} names no object key: give s3://bucket/key")
    return bucket, key


def _setup_error(error: Exception) -> AwsError:
    """The one-line AwsError for a failure while making a session or client; anything unexpected re-raised."""
    from stream_processor.aws_errors import describe_failure  # imports botocore: only once something failed

    failure = describe_failure(error)
    if failure is None:
        raise error
    return AwsError(failure.message, failure.exit_code)
