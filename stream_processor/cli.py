"""`stream-processor`: one sub-command per module under `stream_processor/commands/`.

Exit codes are the same for every command (README, "Exit codes"): 0 ok, 1 findings or bad input, 2 usage or
configuration, 3 AWS credentials or permissions, 4 AWS unreachable or throttling. A failure the user can fix
is one line on stderr; `-v` adds the traceback.
"""

from __future__ import annotations

import argparse
import difflib
import importlib
import logging
import os
import re
import sys
import traceback
from collections.abc import Sequence
from typing import Any, NoReturn

from stream_processor import __version__
from stream_processor.errors import EXIT_USAGE, ConfigError
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
EXIT_INTERRUPTED = 130
EXIT_BUG = 70
"""An unexpected exception: a bug in stream-processor (sysexits' EX_SOFTWARE, as the KCL record processor)."""

_UNRECOGNIZED = "unrecognized arguments: "
_INVALID_CHOICE = re.compile(r"invalid choice: '(?P<value>[^']*)' \(choose from (?P<choices>.*)\)")


class SuggestingArgumentParser(argparse.ArgumentParser):
    """argparse with "did you mean" for a mistyped flag or sub-command.

    A sub-command's parser reports its own unknown flags (with its own usage line and options to suggest
    from) instead of leaving them to the top-level parser, which does not know them.
    """

    def parse_known_args(  # type: ignore[override]
        self, args: Sequence[str] | None = None, namespace: argparse.Namespace | None = None
    ) -> tuple[argparse.Namespace, list[str]]:
        parsed, extras = super().parse_known_args(args, namespace)
        if extras and self._is_subcommand():
            self.error(_UNRECOGNIZED + " ".join(extras))
        return parsed, extras

    def _is_subcommand(self) -> bool:
        return " " in self.prog  # "stream-processor match", "stream-processor dead-letters list"

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}{self._suggestion(message)}\n")

    def _suggestion(self, message: str) -> str:
        if message.startswith(_UNRECOGNIZED):
            hints: list[tuple[str, str]] = []
            for token in message.removeprefix(_UNRECOGNIZED).split():
                flag = token.partition("=")[0]
                close = _closest(flag, self._visible_options()) if flag.startswith("-") else None
                if close:
                    hints.append((flag, close))
            if len(hints) == 1:
                return f" (did you mean {hints[0][1]}?)"
            return f" (did you mean {', '.join(f'{close} for {flag}' for flag, close in hints)}?)" if hints else ""
        found = _INVALID_CHOICE.search(message)
        if found:
            choices = re.findall(r"'([^']*)'", found.group("choices"))
            close = _closest(found.group("value"), choices)
            return f" (did you mean {close!r}?)" if close else ""
        return ""

    def _visible_options(self) -> list[str]:
        """Every option string of this parser but hidden aliases (help=SUPPRESS)."""
        return [
            option
            for action in self._actions
            if action.help != argparse.SUPPRESS
            for option in action.option_strings
            if option.startswith("--")
        ]


def _closest(word: str, candidates: Sequence[str]) -> str | None:
    found = difflib.get_close_matches(word, list(candidates), n=1, cutoff=0.6)
    return found[0] if found else None


def build_parser(argv: Sequence[str] | None = None) -> argparse.ArgumentParser:
    """The parser for `argv` (every command without it): only the sub-command's module argv names is imported.

    A command's module imports what it runs on (boto3 and the KCL tooling for some), and `match` over one
    file should not pay for `consume`'s imports. Without a known command (`--help`, a typo) every module is
    imported, for the full list and the "did you mean".
    """
    parser = SuggestingArgumentParser(
        prog="stream-processor",
        description=(
            "Near-real-time alerting on AWS CloudTrail: jq rules (tattletail.toml compatible) over "
            "CloudWatch Logs subscription records, CloudTrail files, JSON lines or arrays."
        ),
        epilog=(
            "Run 'stream-processor COMMAND --help' for a command's options. Exit status: 0 ok, 1 findings or "
            "bad input, 2 usage or configuration, 3 AWS credentials or permissions, 4 AWS unreachable or "
            "throttling."
        ),
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug detail to stderr (and tracebacks)")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    named = _command_named(argv) if argv is not None else None
    for name in (named,) if named else COMMANDS:
        importlib.import_module(f"stream_processor.commands.{name.replace('-', '_')}").add_parser(subparsers)
    return parser


def _command_named(argv: Sequence[str]) -> str | None:
    """The sub-command argv names: its first word that is not an option (no top-level option takes a value).

    None when the top-level help comes first, which lists every command.
    """
    for word in argv:
        if word in ("-h", "--help"):
            return None
        if not word.startswith("-"):
            return word if word in COMMANDS else None
    return None


def main(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser(argv)
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
    except KeyboardInterrupt:
        print(f"stream-processor {args.command}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as error:
        return report_failure(error, args)
    return code


def report_failure(error: Exception, args: Any) -> int:
    """A failure that reached the top: one line (its kind's exit code); the traceback only with -v.

    AWS failures (no region, no credentials, access denied, unreachable, ...) say what to do; a ConfigError
    lists its problems; anything else is a bug, reported as such.
    """
    from stream_processor.aws_errors import describe_failure

    command = f"stream-processor {getattr(args, 'command', '')}".rstrip()
    verbose = bool(getattr(args, "verbose", False))
    if verbose:
        traceback.print_exception(error, file=sys.stderr)
    if isinstance(error, ConfigError):
        for problem in error.problems:
            print(f"{command}: {problem}", file=sys.stderr)
        return error.exit_code
    failure = describe_failure(error)
    if failure is not None:
        print(f"{command}: {failure.message}", file=sys.stderr)
        return failure.exit_code
    if not verbose:
        print(
            f"{command}: unexpected {type(error).__name__}: {' '.join(str(error).split())[:300]} "
            "(a bug: run again with -v for the traceback and report it)",
            file=sys.stderr,
        )
    return EXIT_BUG


if __name__ == "__main__":
    sys.exit(main())
