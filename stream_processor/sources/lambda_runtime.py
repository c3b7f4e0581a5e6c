"""What both Lambda front ends share: settings read once from the environment, one pipeline per container.

The environment is read here and only when the handler first runs (never at import, never below the
pipeline). A warm container reuses the pipeline, its HTTP sessions and its AWS clients.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from stream_processor.aws import AwsSettings
from stream_processor.config import config_location_from_env, load_config
from stream_processor.errors import ConfigError
from stream_processor.pipeline import Pipeline
from stream_processor.safe_text import install_log_filter
from stream_processor.wiring import (
    ENV_DEAD_LETTER_QUEUE_URL,
    ENV_DEDUPE_TABLE,
    ENV_STORM_TABLE,
    LAMBDA,
    Settings,
    build_pipeline,
)

log = logging.getLogger(__name__)

ENV_CONFIG_PATH_LOCAL = "CONFIG_PATH"
ENV_LOG_LEVEL = "STREAM_PROCESSOR_LOG_LEVEL"


class LambdaContext(Protocol):
    """The part of Lambda's context object the handlers use."""

    def get_remaining_time_in_millis(self) -> int: ...


@dataclass(frozen=True, slots=True)
class LambdaSettings:
    """Everything a handler needs from its environment: the rule file, and `wiring.Settings` read the way
    every other entry point reads them (here without flags).

    The rule file comes from tattletail's `S3_CONFIG_BUCKET` + `S3_CONFIG_PATH`, else `CONFIG_PATH` (a path
    inside the deployment package, or `s3://bucket/key`). The ledger, dead letters and storm folding are on when
    `STREAM_PROCESSOR_DEDUPE_TABLE`, `STREAM_PROCESSOR_DEAD_LETTER_QUEUE_URL` and `STREAM_PROCESSOR_STORM_TABLE`
    are set (the templates set them); Lambda has no disk that outlives a container, so nothing defaults to SQLite.
    """

    config_location: str
    settings: Settings

    @property
    def aws(self) -> AwsSettings:
        return self.settings.aws

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> LambdaSettings:
        """Raises:
        ConfigError: no rule file is named, only one of the two S3 variables is set, or a store variable is
            unusable.
        """
        location = config_location_from_env(environ) or environ.get(ENV_CONFIG_PATH_LOCAL, "").strip()
        if not location:
            raise ConfigError(
                "no rule file for the Lambda function: set S3_CONFIG_BUCKET and S3_CONFIG_PATH "
                f"(tattletail's variables) or {ENV_CONFIG_PATH_LOCAL} (a path in the package or s3://bucket/key)"
            )
        return cls(config_location=location, settings=Settings.from_env(environ, LAMBDA))


def lambda_pipeline(settings: LambdaSettings) -> Pipeline:
    """The pipeline a Lambda container runs: it sends (there is no dry run in Lambda).

    Raises:
        ConfigError: the rule file cannot be read or is invalid, or a store cannot be opened.
    """
    config = load_config(settings.config_location, settings.aws)
    pipeline = build_pipeline(config, settings.settings, send=True)
    log.info(
        "loaded %d rules and %d destinations from %s (%s)",
        len(config.rules),
        len(config.destinations),
        settings.config_location,
        settings.settings.describe(),
    )
    return pipeline


class ContainerRuntime:
    """Builds the settings and the pipeline on first use and keeps them for the container's life.

    A failed build is not cached: the next invocation tries again (the rule file may have been fixed).
    """

    def __init__(self, build: Callable[[LambdaSettings], Pipeline] = lambda_pipeline) -> None:
        self._build = build
        self._settings: LambdaSettings | None = None
        self._pipeline: Pipeline | None = None
        self._clients: dict[str, Any] = {}

    def settings(self, environ: Mapping[str, str]) -> LambdaSettings:
        if self._settings is None:
            self._settings = LambdaSettings.from_env(environ)
            _configure_logging(environ)
        return self._settings

    def pipeline(self, environ: Mapping[str, str]) -> Pipeline:
        if self._pipeline is None:
            self._pipeline = self._build(self.settings(environ))
        return self._pipeline

    def client(self, environ: Mapping[str, str], service: str) -> Any:
        """A boto3 client for `service`, made once per container."""
        if service not in self._clients:
            self._clients[service] = self.settings(environ).aws.client(service)
        return self._clients[service]

    def reset(self) -> None:
        """Forget the pipeline (tests; a container never needs this)."""
        if self._pipeline is not None:
            self._pipeline.close()
        self._pipeline = None
        self._settings = None
        self._clients.clear()


def _configure_logging(environ: Mapping[str, str]) -> None:
    """Lambda's runtime installs a root handler; make the package's INFO lines reach it."""
    level = environ.get(ENV_LOG_LEVEL, "INFO").upper()
    for handler in logging.getLogger().handlers:
        install_log_filter(handler)  # event text in a log line stays on one bounded line
    logging.getLogger("stream_processor").setLevel(level if level in logging.getLevelNamesMapping() else "INFO")


__all__ = [
    "ENV_DEAD_LETTER_QUEUE_URL",
    "ENV_DEDUPE_TABLE",
    "ENV_STORM_TABLE",
    "ContainerRuntime",
    "LambdaSettings",
    "lambda_pipeline",
]
