"""What several sub-commands share: where the rule file is, how messages are printed, and their settings.

The environment is read here (and in `wiring`), once, and handed down; components never read it themselves.
Settings (AWS, state) and their flags are `wiring`'s, so every command and `consume`'s processors read them
the same way.
"""

from __future__ import annotations

import argparse
import os

from rich.console import Console

from stream_processor.config import config_location_from_env, load_config
from stream_processor.errors import ConfigError
from stream_processor.model import Config
from stream_processor.secrets import SecretResolver, UnresolvedSecrets
from stream_processor.wiring import HOST, Settings, Shape


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


def settings_from_args(args: argparse.Namespace, shape: Shape = HOST) -> Settings:
    """The command's settings: its flags, then the environment, then `shape`'s defaults.

    Raises:
        ConfigError: a store flag or variable cannot be used.
    """
    return Settings.from_args(args, os.environ, shape)


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


def load_config_from_args(args: argparse.Namespace, settings: Settings, *, dry_run: bool = False) -> Config:
    """The rule file `--config` names. A dry run checks secret references for their form and never fetches them:
    it sends nothing, so it needs no access to SSM, Secrets Manager or the environment's secrets.

    Raises:
        ConfigError: no rule file, or it cannot be read or is invalid (AwsError when AWS is the cause).
    """
    resolver: SecretResolver = UnresolvedSecrets() if dry_run else SecretResolver(settings.aws, os.environ)
    return load_config(config_location(args), settings.aws, resolver=resolver)
