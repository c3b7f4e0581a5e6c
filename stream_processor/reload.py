"""Hot reload: a running worker notices a changed rule file and swaps it in between batches.

The watcher is polled by the record processor between batches (no thread): at most once per interval it
looks at the file (mtime and size, then a hash of the bytes) or the S3 object (HEAD, ETag). On a change it
refreshes the secret cache, loads and validates the file, and hands the new config to the pipeline. A file
that fails validation is refused with one log line per problem (problem texts never hold secret values) and
the last good config keeps running; the same bad version is reported once, not on every poll.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from stream_processor.aws import S3_SCHEME, split_s3_url
from stream_processor.config import load_config, sending_problems
from stream_processor.errors import ConfigError
from stream_processor.model import Config

if TYPE_CHECKING:
    from stream_processor.aws import AwsSettings
    from stream_processor.secrets import SecretResolver

log = logging.getLogger(__name__)

DEFAULT_INTERVAL_SECONDS = 10.0


@dataclass(frozen=True, slots=True)
class Fingerprint:
    """What identifies one version of the rule file: (mtime, size, sha256) locally, the ETag on S3."""

    stat: tuple[int, int] | None = None
    digest: str = ""


class Reconfigurable(Protocol):
    def reconfigure(self, config: Config) -> None: ...


class ConfigWatcher:
    """Polls a rule file (local path or `s3://bucket/key`) and loads it again when it changed.

    `poll()` returns the new, validated config, or None (not due, unchanged, unreadable or invalid).
    `interval_seconds` <= 0 disables polling.
    """

    def __init__(
        self,
        location: str,
        aws: AwsSettings | None = None,
        resolver: SecretResolver | None = None,
        interval_seconds: float = DEFAULT_INTERVAL_SECONDS,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.location = location
        self.aws = aws
        self.resolver = resolver
        self.interval_seconds = interval_seconds
        self._clock = clock
        self._next_check = clock() + interval_seconds
        self._s3: Any = None
        self.reloads = 0
        """Configs applied so far (for logs and metrics)."""
        self.rejections = 0
        """Changed versions refused so far."""
        self._seen = self._fingerprint(Fingerprint())  # the version running now (loaded at start-up)

    @property
    def enabled(self) -> bool:
        return self.interval_seconds > 0

    def poll(self) -> Config | None:
        """The new config when the file changed and is valid; None otherwise (a refusal is logged)."""
        if not self.enabled:
            return None
        now = self._clock()
        if now < self._next_check:
            return None
        self._next_check = now + self.interval_seconds
        try:
            current = self._fingerprint(self._seen)
        except ConfigError as error:
            log.warning("config reload: cannot check %s: %s", self.location, _first_line(error))
            return None
        if current == self._seen:
            return None
        if current.digest == self._seen.digest:  # touched, not changed
            self._seen = current
            return None
        self._seen = current  # a bad version is reported once; the next change is looked at again
        if self.resolver is not None:
            self.resolver.refresh()
        try:
            config = load_config(self.location, self.aws, resolver=self.resolver)
        except ConfigError as error:
            self.rejections += 1
            log.error(
                "config reload rejected: %s has %d problem(s); the last good config keeps running",
                self.location,
                len(error.problems),
            )
            for problem in error.problems:
                log.error("config reload rejected: %s", _first_line(problem))
            return None
        except Exception as error:  # whatever went wrong, the running config stays: the type only (secrets)
            self.rejections += 1
            log.error(
                "config reload rejected: %s could not be loaded (%s); the last good config keeps running",
                self.location,
                type(error).__name__,
            )
            return None
        return config

    def apply(self, target: Reconfigurable) -> bool:
        """`poll()`, and hand a new config to `target` (the pipeline); True when one was swapped in."""
        config = self.poll()
        if config is None:
            return False
        refused = sending_problems(config) if getattr(target, "deliverer", None) is not None else []
        if refused:
            self.rejections += 1
            for problem in refused:
                log.error("config reload rejected: %s", _first_line(problem))
            return False
        try:
            target.reconfigure(config)
        except ConfigError as error:
            self.rejections += 1
            for problem in error.problems:
                log.error("config reload rejected: %s", _first_line(problem))
            return False
        except Exception as error:  # a destination that cannot be built: the type only (messages may hold secrets)
            self.rejections += 1
            log.error(
                "config reload rejected: %s could not be applied (%s); the last good config keeps running",
                self.location,
                type(error).__name__,
            )
            return False
        self.reloads += 1
        enabled = len(config.enabled_rules)
        log.info(
            "config reloaded from %s: %d rule(s) (%d enabled), %d destination(s)",
            self.location,
            len(config.rules),
            enabled,
            len(config.destinations),
        )
        return True

    # ------------------------------------------------------------------ fingerprints

    def _fingerprint(self, previous: Fingerprint) -> Fingerprint:
        """Raises: ConfigError when the file or object cannot be looked at."""
        if self.location.startswith(S3_SCHEME):
            return Fingerprint(digest=self._etag())
        path = Path(self.location).expanduser()
        try:
            stat = path.stat()
            key = (stat.st_mtime_ns, stat.st_size)
            if key == previous.stat:
                return previous
            return Fingerprint(key, hashlib.sha256(path.read_bytes()).hexdigest())
        except OSError as error:
            raise ConfigError(f"{self.location}: cannot be read ({error.strerror or type(error).__name__})") from None

    def _etag(self) -> str:
        from botocore.exceptions import BotoCoreError, ClientError

        from stream_processor.aws import AwsSettings
        from stream_processor.aws_errors import describe_failure, error_code
        from stream_processor.errors import EXIT_AWS_UNAVAILABLE, AwsError

        try:
            bucket, key = split_s3_url(self.location, key_required=True)
        except ValueError as error:
            raise ConfigError(f"{self.location}: {error}") from None
        if self._s3 is None:
            self._s3 = (self.aws or AwsSettings()).client("s3")
        try:
            head = self._s3.head_object(Bucket=bucket, Key=key)
        except ClientError as error:
            failure = describe_failure(error)
            code = error_code(error) or "error"
            if failure is not None and failure.kind != "service":
                raise AwsError(f"{self.location}: {failure.message}", failure.exit_code) from None
            raise ConfigError(f"{self.location}: S3 refused the HEAD ({code})") from None
        except BotoCoreError as error:
            failure = describe_failure(error)
            reason = failure.message if failure is not None else f"cannot reach S3 ({type(error).__name__})"
            exit_code = failure.exit_code if failure is not None else EXIT_AWS_UNAVAILABLE
            raise AwsError(f"{self.location}: {reason}", exit_code) from None
        return str(head.get("ETag", ""))


def _first_line(problem: object) -> str:
    """A problem as one log line (a multi-line text would look like several problems)."""
    return " | ".join(line.strip() for line in str(problem).splitlines() if line.strip())
