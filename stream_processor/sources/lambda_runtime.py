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
from stream_processor.dead_letters import SQSDeadLetterStore
from stream_processor.dedupe import DynamoDBDedupeStore
from stream_processor.errors import ConfigError
from stream_processor.matcher.budget import RuleBudget
from stream_processor.pipeline import Pipeline

log = logging.getLogger(__name__)

ENV_CONFIG_PATH_LOCAL = "CONFIG_PATH"
ENV_DEDUPE_TABLE = "STREAM_PROCESSOR_DEDUPE_TABLE"
ENV_DEAD_LETTER_QUEUE_URL = "STREAM_PROCESSOR_DEAD_LETTER_QUEUE_URL"
ENV_MATCHER = "STREAM_PROCESSOR_MATCHER"
ENV_RULE_BUDGET_MS = "STREAM_PROCESSOR_RULE_BUDGET_MS"
ENV_LOG_LEVEL = "STREAM_PROCESSOR_LOG_LEVEL"


class LambdaContext(Protocol):
    """The part of Lambda's context object the handlers use."""

    def get_remaining_time_in_millis(self) -> int: ...


@dataclass(frozen=True, slots=True)
class LambdaSettings:
    """Everything a handler needs from its environment.

    The rule file comes from tattletail's `S3_CONFIG_BUCKET` + `S3_CONFIG_PATH`, else `CONFIG_PATH` (a path
    inside the deployment package, or `s3://bucket/key`). Dedupe and dead letters are on when their
    variables are set (the CloudFormation templates set both).
    """

    config_location: str
    aws: AwsSettings
    dedupe_table: str | None = None
    dead_letter_queue_url: str | None = None
    matcher_kind: str | None = None
    rule_budget_ms: float | None = None

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> LambdaSettings:
        """Raises:
        ConfigError: no rule file is named, or only one of the two S3 variables is set.
        """
        location = config_location_from_env(environ) or environ.get(ENV_CONFIG_PATH_LOCAL, "").strip()
        if not location:
            raise ConfigError(
                "no rule file for the Lambda function: set S3_CONFIG_BUCKET and S3_CONFIG_PATH "
                f"(tattletail's variables) or {ENV_CONFIG_PATH_LOCAL} (a path in the package or s3://bucket/key)"
            )
        return cls(
            config_location=location,
            aws=AwsSettings(
                region=environ.get("AWS_REGION") or environ.get("AWS_DEFAULT_REGION") or None,
                endpoint_url=environ.get("AWS_ENDPOINT_URL") or None,
            ),
            dedupe_table=environ.get(ENV_DEDUPE_TABLE) or None,
            dead_letter_queue_url=environ.get(ENV_DEAD_LETTER_QUEUE_URL) or None,
            matcher_kind=environ.get(ENV_MATCHER) or None,
            rule_budget_ms=_milliseconds(environ.get(ENV_RULE_BUDGET_MS, "").strip()),
        )


def build_pipeline(settings: LambdaSettings) -> Pipeline:
    """The pipeline a Lambda container runs: it sends (there is no dry run in Lambda).

    Raises:
        ConfigError: the rule file cannot be read or is invalid.
    """
    config = load_config(settings.config_location, settings.aws)
    ledger = (
        DynamoDBDedupeStore(settings.aws.client("dynamodb"), settings.dedupe_table) if settings.dedupe_table else None
    )
    dead_letters = (
        SQSDeadLetterStore(settings.aws.client("sqs"), settings.dead_letter_queue_url)
        if settings.dead_letter_queue_url
        else None
    )
    log.info(
        "loaded %d rules and %d destinations from %s (dedupe: %s, dead letters: %s)",
        len(config.rules),
        len(config.destinations),
        settings.config_location,
        "dynamodb" if ledger else "off",
        "sqs" if dead_letters else "off",
    )
    budget = RuleBudget() if settings.rule_budget_ms is None else RuleBudget(budget_ms=settings.rule_budget_ms)
    if settings.matcher_kind:
        return Pipeline.build(
            config,
            aws=settings.aws,
            send=True,
            matcher_kind=settings.matcher_kind,
            ledger=ledger,
            dead_letters=dead_letters,
            rule_budget=budget,
        )
    return Pipeline.build(
        config, aws=settings.aws, send=True, ledger=ledger, dead_letters=dead_letters, rule_budget=budget
    )


def _milliseconds(text: str) -> float | None:
    """The rule budget from its variable: None when unset.

    Raises:
        ConfigError: not a number of milliseconds >= 0.
    """
    if not text:
        return None
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value >= 0 or value == float("inf"):
        raise ConfigError(
            f"{ENV_RULE_BUDGET_MS}={text!r} is not a number of milliseconds: write e.g. 50 (0: no budget)"
        )
    return value


class ContainerRuntime:
    """Builds the settings and the pipeline on first use and keeps them for the container's life.

    A failed build is not cached: the next invocation tries again (the rule file may have been fixed).
    """

    def __init__(self, build: Callable[[LambdaSettings], Pipeline] = build_pipeline) -> None:
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
    logging.getLogger("stream_processor").setLevel(level if level in logging.getLevelNamesMapping() else "INFO")
