"""Secrets by reference: a destination field may name where its value lives instead of holding it.

    env:NAME                        the environment variable NAME
    ssm:/path/to/parameter          an SSM parameter (GetParameter WithDecryption: SecureString works)
    secretsmanager:name             a Secrets Manager secret's SecretString
    secretsmanager:name#key         one string field of a secret whose SecretString is a JSON object

A `SecretResolver` resolves references when the config is loaded and caches what it fetched; `refresh()`
drops the cache so the next load (a hot reload) fetches every value again. Errors name the reference,
never the value; every resolved value is registered with the log redactor.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from stream_processor.errors import EXIT_AWS_ACCESS, EXIT_USAGE, ConfigError

if TYPE_CHECKING:
    from stream_processor.aws import AwsSettings

ENV_PREFIX = "env:"
SSM_PREFIX = "ssm:"
SECRETS_MANAGER_PREFIX = "secretsmanager:"
PREFIXES: tuple[str, ...] = (ENV_PREFIX, SSM_PREFIX, SECRETS_MANAGER_PREFIX)
REDACT_MIN_CHARS = 6
"""Shorter resolved values are not registered with the log redactor (it would blank out common words)."""


class SecretReferenceError(ConfigError):
    """A reference is malformed or cannot be resolved; the message names the reference, never a value."""


@dataclass(frozen=True, slots=True)
class SecretReference:
    """A parsed reference: `kind` is env, ssm or secretsmanager; `key` is the JSON key after `#`, if any."""

    kind: str
    name: str
    key: str | None = None
    text: str = ""

    def __str__(self) -> str:
        return self.text


def is_reference(value: str) -> bool:
    """Whether a destination value is a reference rather than a plain value."""
    return value.startswith(PREFIXES)


def parse_reference(value: str) -> SecretReference:
    """The reference `value` spells.

    Raises:
        SecretReferenceError: a known prefix with nothing usable after it.
    """
    if value.startswith(ENV_PREFIX):
        name = value[len(ENV_PREFIX) :]
        if not name or "=" in name or "\x00" in name or name.strip() != name:
            raise SecretReferenceError(f"{value}: not an environment variable name: write env:NAME")
        return SecretReference("env", name, text=value)
    if value.startswith(SSM_PREFIX):
        name = value[len(SSM_PREFIX) :]
        if not name.strip():
            raise SecretReferenceError(f"{value}: no parameter name: write ssm:/path/to/parameter")
        return SecretReference("ssm", name, text=value)
    if value.startswith(SECRETS_MANAGER_PREFIX):
        name, hash_sign, key = value[len(SECRETS_MANAGER_PREFIX) :].partition("#")
        if not name.strip():
            raise SecretReferenceError(f"{value}: no secret name: write secretsmanager:NAME or secretsmanager:NAME#KEY")
        if hash_sign and not key:
            raise SecretReferenceError(f"{value}: empty JSON key after '#': write secretsmanager:NAME#KEY or drop '#'")
        return SecretReference("secretsmanager", name, key or None, text=value)
    raise SecretReferenceError(f"{value[:20]}...: not a secret reference (env:, ssm:, secretsmanager:)")


class SecretResolver:
    """Resolves references with a cache; one per process, kept across reloads, `refresh()`ed before each.

    `aws` reaches SSM and Secrets Manager (clients made on first use); `environ` is the environment to read
    `env:` references from (the CLI passes `os.environ`). `max_age` (seconds) re-fetches older cached
    values on their next use even without a `refresh()`; None keeps them until `refresh()`.
    """

    def __init__(
        self,
        aws: AwsSettings | None = None,
        environ: Mapping[str, str] | None = None,
        *,
        max_age: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._aws = aws
        self._environ: Mapping[str, str] = environ if environ is not None else {}
        self._max_age = max_age
        self._clock = clock
        self._cache: dict[tuple[str, str], tuple[str, float]] = {}
        self._clients: dict[str, Any] = {}
        self._lock = threading.Lock()
        self.fetches = 0
        """How many values were fetched from their source (cache misses): for tests and metrics."""

    RESOLVES = True
    """False for resolvers that hand out placeholders (`UnresolvedSecrets`)."""

    def __repr__(self) -> str:  # never the cache
        return f"{type(self).__name__}(cached={len(self._cache)})"

    def resolve(self, value: str) -> str:
        """The value a reference points to (cached), or `value` itself when it is not a reference.

        Raises:
            SecretReferenceError: malformed, missing, unreadable, or not a string.
        """
        if not is_reference(value):
            return value
        reference = parse_reference(value)
        if reference.kind == "env":  # never cached: the environment is already in memory
            return self._remember(self._from_env(reference))
        cache_key = (reference.kind, reference.name)
        now = self._clock()
        with self._lock:
            cached = self._cache.get(cache_key)
        if cached is None or (self._max_age is not None and now - cached[1] > self._max_age):
            raw = self._fetch_ssm(reference) if reference.kind == "ssm" else self._fetch_secret(reference)
            self.fetches += 1
            with self._lock:
                self._cache[cache_key] = (raw, now)
        else:
            raw = cached[0]
        if reference.key is not None:
            return self._remember(_json_field(reference, raw))
        if not raw.strip():
            raise SecretReferenceError(f"{reference}: the value is empty: store a value there")
        return self._remember(raw)

    def refresh(self) -> None:
        """Forget every cached value: the next `resolve` of each reference fetches it again."""
        with self._lock:
            self._cache.clear()

    # ------------------------------------------------------------------ sources

    def _from_env(self, reference: SecretReference) -> str:
        value = self._environ.get(reference.name)
        if value is None:
            raise SecretReferenceError(f"{reference}: environment variable {reference.name} is not set: export it")
        if not value.strip():
            raise SecretReferenceError(f"{reference}: environment variable {reference.name} is empty: set a value")
        return value

    def _client(self, service: str) -> Any:
        with self._lock:
            client = self._clients.get(service)
        if client is None:
            from botocore.config import Config as BotoConfig

            from stream_processor.alerts.redact import protect_aws_secrets
            from stream_processor.aws import AwsSettings

            protect_aws_secrets()  # botocore logs response bodies at DEBUG: the secret, before we see it

            settings = self._aws or AwsSettings()
            client = settings.client(
                service,
                config=BotoConfig(connect_timeout=5, read_timeout=10, retries={"max_attempts": 3, "mode": "standard"}),
            )
            with self._lock:
                self._clients[service] = client
        return client

    def _fetch_ssm(self, reference: SecretReference) -> str:
        from botocore.exceptions import BotoCoreError, ClientError

        from stream_processor.aws_errors import error_code

        try:
            answer = self._client("ssm").get_parameter(Name=reference.name, WithDecryption=True)
        except ClientError as error:
            code = error_code(error)
            if code in ("ParameterNotFound", "ParameterVersionNotFound"):
                raise SecretReferenceError(
                    f"{reference}: no such SSM parameter: create it (aws ssm put-parameter --type SecureString "
                    f"--name {reference.name} ...) or fix the name"
                ) from None
            if code in ("AccessDeniedException", "AccessDenied"):
                raise SecretReferenceError(
                    f"{reference}: access denied: grant ssm:GetParameter on the parameter (and kms:Decrypt on "
                    "its key) to this identity",
                    EXIT_AWS_ACCESS,
                ) from None
            raise _aws_failure(reference, error, f"SSM refused GetParameter ({code or 'error'})") from None
        except BotoCoreError as error:
            raise _aws_failure(reference, error, f"cannot reach SSM ({type(error).__name__})") from None
        value = answer.get("Parameter", {}).get("Value")
        if not isinstance(value, str):
            raise SecretReferenceError(f"{reference}: the SSM parameter has no value")
        return value

    def _fetch_secret(self, reference: SecretReference) -> str:
        from botocore.exceptions import BotoCoreError, ClientError

        from stream_processor.aws_errors import error_code

        try:
            answer = self._client("secretsmanager").get_secret_value(SecretId=reference.name)
        except ClientError as error:
            code = error_code(error)
            if code == "ResourceNotFoundException":
                raise SecretReferenceError(
                    f"{reference}: no such secret in Secrets Manager (or it has no current value): create it "
                    f"(aws secretsmanager create-secret --name {reference.name} ...) or fix the name"
                ) from None
            if code in ("AccessDeniedException", "AccessDenied"):
                raise SecretReferenceError(
                    f"{reference}: access denied: grant secretsmanager:GetSecretValue on the secret (and "
                    "kms:Decrypt on its key) to this identity",
                    EXIT_AWS_ACCESS,
                ) from None
            if code == "DecryptionFailure":
                raise SecretReferenceError(
                    f"{reference}: Secrets Manager could not decrypt it: check its KMS key"
                ) from None
            refused = f"Secrets Manager refused GetSecretValue ({code or 'error'})"
            raise _aws_failure(reference, error, refused) from None
        except BotoCoreError as error:
            raise _aws_failure(reference, error, f"cannot reach Secrets Manager ({type(error).__name__})") from None
        value = answer.get("SecretString")
        if not isinstance(value, str):
            raise SecretReferenceError(
                f"{reference}: the secret has no SecretString (a binary secret): store the value as text"
            )
        return value

    @staticmethod
    def _remember(value: str) -> str:
        """Register a resolved value with the log redactor, so HTTP library logs never show it."""
        if len(value) >= REDACT_MIN_CHARS:
            from stream_processor.alerts.redact import REDACTOR

            REDACTOR.add(value)
        return value


class UnresolvedSecrets(SecretResolver):
    """Checks that references are well formed but fetches nothing: every one resolves to a placeholder.

    For commands that need the rules but not the destinations (`test-rules`), so they run in CI without
    access to the secrets. Load-time checks of resolved values (a URL's shape) are skipped for references.
    """

    RESOLVES = False
    PLACEHOLDER = "<unresolved secret reference>"

    def resolve(self, value: str) -> str:
        if not is_reference(value):
            return value
        parse_reference(value)
        return self.PLACEHOLDER


def _aws_failure(reference: SecretReference, error: Exception, fallback: str) -> SecretReferenceError:
    """What a failed fetch says: the AWS failure's own line (credentials, region, network) when it is one."""
    from stream_processor.aws_errors import describe_failure

    failure = describe_failure(error)
    if failure is None or failure.kind == "service":
        return SecretReferenceError(f"{reference}: {fallback}", EXIT_USAGE)
    return SecretReferenceError(f"{reference}: {failure.message}", failure.exit_code)


def _json_field(reference: SecretReference, raw: str) -> str:
    try:
        document = json.loads(raw)
    except ValueError:
        raise SecretReferenceError(
            f"{reference}: the secret is not a JSON object, so #{reference.key} cannot be read: drop '#...' to use "
            "the whole secret"
        ) from None
    if not isinstance(document, dict):
        raise SecretReferenceError(f"{reference}: the secret is JSON but not an object: drop '#...'")
    if reference.key not in document:
        keys = ", ".join(sorted(str(key) for key in document)) or "none"
        raise SecretReferenceError(f"{reference}: the secret has no key {reference.key!r} (its keys: {keys})")
    value = document[reference.key]
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise SecretReferenceError(f"{reference}: the value at key {reference.key!r} is not a string")
    text = str(value)
    if not text.strip():
        raise SecretReferenceError(f"{reference}: the value at key {reference.key!r} is empty")
    return text


__all__ = [
    "PREFIXES",
    "SecretReference",
    "SecretReferenceError",
    "SecretResolver",
    "UnresolvedSecrets",
    "is_reference",
    "parse_reference",
]
