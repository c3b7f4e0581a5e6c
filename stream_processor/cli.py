"""`stream-processor`: one sub-command per module under `stream_processor/commands/`."""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
from collections.abc import Sequence

from stream_processor import __version__
from stream_processor.safe_text import install_log_filter

# Each module defines `add_parser(subparsers)`, which registers its sub-command and sets `run`.
COMMANDS = (
    "validate",
    "match",
    "demo",
    "produce",
    "stack",
    "dead-letters",
    "backtest",
    "status",
    "replay",
    "consume",
    "test-rules",
    "import-sigma",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="stream-processor",
        description=(
            "Near-real-time alerting on AWS CloudTrail: jq rules (tattletail.toml compatible) over "
            "CloudWatch Logs subscription records, CloudTrail files, JSON lines or arrays."
        ),
        epilog="Run 'stream-processor COMMAND --help' for a command's options.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug detail to stderr")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMANDS:
        importlib.import_module(f"stream_processor.commands.{name.replace('-', '_')}").add_parser(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    for handler in logging.getLogger().handlers:
        install_log_filter(handler)  # event text in a log line stays on one bounded line
    try:
        code: int = args.run(args)
    except BrokenPipeError:  # `stream-processor ... | head`: the reader left, nothing is wrong
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    return code


if __name__ == "__main__":
    sys.exit(main())
