"""Options several sub-commands share: where the config is and how to reach AWS or the emulators.

The environment is read here, once, and handed down; components never read it themselves.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from rich.console import Console

from stream_processor.aws import AwsSettings
from stream_processor.config import Config, config_location_from_env, load_config
from stream_processor.dead_letters import DeadLetterStore, SQLiteDeadLetterStore, SQSDeadLetterStore
from stream_processor.dedupe import DedupeStore, DynamoDBDedupeStore, MemoryDedupeStore, SQLiteDedupeStore
from stream_processor.errors import ConfigError


def message_console() -> Console:
    """Where commands write progress and errors (stderr): one message a line, never cut at the terminal's
    width, and text such as `:warning:` in a rule name is printed as it is."""
    return Console(stderr=True, highlight=False, soft_wrap=True, emoji=False)


def add_config_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config",
        "-c",
        metavar="CONFIG",
        help=(
            "rule file (tattletail.toml schema): a local path or s3://bucket/key; "
            "default: s3://$S3_CONFIG_BUCKET/$S3_CONFIG_PATH when both are set"
        ),
    )


def add_aws_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("AWS")
    group.add_argument("--region", help="AWS region (default: the SDK's, e.g. $AWS_REGION)")
    group.add_argument(
        "--aws-endpoint",
        metavar="URL",
        help="send S3/SNS/SES/SQS/DynamoDB calls here instead of AWS (e.g. moto at http://127.0.0.1:5000)",
    )


def aws_settings(args: argparse.Namespace) -> AwsSettings:
    return AwsSettings(region=getattr(args, "region", None), endpoint_url=getattr(args, "aws_endpoint", None))


def config_location(args: argparse.Namespace) -> str:
    """The `--config` value, else tattletail's S3 variables.

    Raises:
        ConfigError: neither is given.
    """
    if args.config:
        return str(args.config)
    location = config_location_from_env(os.environ)
    if location is None:
        raise ConfigError(
            "no rule file: pass --config PATH (or s3://bucket/key), or set S3_CONFIG_BUCKET and S3_CONFIG_PATH"
        )
    return location


def load_config_from_args(args: argparse.Namespace) -> Config:
    return load_config(config_location(args), aws_settings(args))


DEFAULT_STATE_DIR = ".local/state"
# File names in a state dir; `consume` keeps them in its work dir, so `--state-dir WORK_DIR` finds them.
LEDGER_FILE = "ledger.sqlite3"
DEAD_LETTERS_FILE = "dead-letters.sqlite3"
STORM_FILE = "storm.sqlite3"


def add_state_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("state (dedupe ledger and dead letters)")
    group.add_argument(
        "--state-dir",
        default=os.environ.get("STREAM_PROCESSOR_STATE_DIR", DEFAULT_STATE_DIR),
        help="folder of the SQLite ledger and dead-letter files (default: %(default)s, or $STREAM_PROCESSOR_STATE_DIR)",
    )
    group.add_argument(
        "--dedupe",
        default="sqlite",
        metavar="STORE",
        help="dedupe ledger: sqlite (one host, default), memory (one process), dynamodb:TABLE (many hosts), none",
    )
    group.add_argument(
        "--dead-letters",
        default="sqlite",
        metavar="STORE",
        help="where alerts that failed for good and malformed input are parked: sqlite (default), sqs:QUEUE_URL",
    )


def open_ledger(args: argparse.Namespace) -> DedupeStore | None:
    """The dedupe store `--dedupe` names.

    Raises:
        ConfigError: an unknown store.
    """
    spec: str = args.dedupe
    if spec == "none":
        return None
    if spec == "memory":
        return MemoryDedupeStore()
    if spec == "sqlite":
        return SQLiteDedupeStore(Path(args.state_dir) / LEDGER_FILE)
    if spec.startswith("dynamodb:") and spec.removeprefix("dynamodb:"):
        return DynamoDBDedupeStore(aws_settings(args).client("dynamodb"), spec.removeprefix("dynamodb:"))
    raise ConfigError(f"--dedupe {spec!r}: choose sqlite, memory, dynamodb:TABLE or none")


def open_dead_letters(args: argparse.Namespace) -> DeadLetterStore:
    """The dead-letter store `--dead-letters` names.

    Raises:
        ConfigError: an unknown store.
    """
    spec: str = args.dead_letters
    if spec == "sqlite":
        return SQLiteDeadLetterStore(Path(args.state_dir) / DEAD_LETTERS_FILE)
    if spec.startswith("sqs:") and spec.removeprefix("sqs:"):
        return SQSDeadLetterStore(aws_settings(args).client("sqs"), spec.removeprefix("sqs:"))
    raise ConfigError(f"--dead-letters {spec!r}: choose sqlite or sqs:QUEUE_URL")
