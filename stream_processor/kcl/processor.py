"""The record processor process: the MultiLangDaemon starts one per shard lease, through the wrapper script
`consume` writes.

It reads its command line (what `command_line` wrote, the shared settings of `wiring`), builds the pipeline,
and runs `sources.kcl.KclRecordProcessor` on the daemon's protocol (stdin/stdout, through amazon_kclpy).
stdout is the protocol's alone (`claim_stdout`): every log line goes to stderr, tagged with the shard.

Run by the daemon as `python -m stream_processor.kcl.processor --config CONFIG [...]` (see `consume`).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import threading
import time
from collections.abc import Sequence
from typing import IO, TYPE_CHECKING

from amazon_kclpy import kcl

from stream_processor.alerts.render import output_text
from stream_processor.gc_tuning import tune_for_throughput
from stream_processor.model import Alert
from stream_processor.safe_text import install_log_filter
from stream_processor.sources.kcl import EXIT_UNEXPECTED_ERROR, LOG_FORMAT, SHARD_TAG, KclRecordProcessor

if TYPE_CHECKING:
    from stream_processor.wiring import Settings

log = logging.getLogger("stream_processor.kcl.processor")  # not __name__: run as __main__ by the daemon
MODULE = "stream_processor.kcl.processor"
"""What the daemon's wrapper runs with `python -m`."""


def build_parser() -> argparse.ArgumentParser:
    """The processor's flags: its own, plus the shared settings (`wiring`) that `command_line` writes."""
    from stream_processor.wiring import (
        add_aws_arguments,
        add_limit_arguments,
        add_metrics_arguments,
        add_state_arguments,
    )

    parser = argparse.ArgumentParser(
        prog=f"python -m {MODULE}",
        description="KCL record processor for one shard (run by the MultiLangDaemon; see `stream-processor consume`).",
    )
    parser.add_argument("--config", required=True, help="rule file: a local path or s3://bucket/key")
    parser.add_argument("--dry-run", action="store_true", help="log alerts instead of delivering them")
    parser.add_argument("--reload-interval", type=float, default=10.0, metavar="SECONDS",
                        help="check the rule file for changes at most this often, between batches (0: never)")
    parser.add_argument("--matcher", default=None, help=argparse.SUPPRESS)
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    add_aws_arguments(parser)
    add_state_arguments(parser, storm=True)
    add_metrics_arguments(parser)
    add_limit_arguments(parser)
    return parser


def command_line(
    config: str, settings: Settings, *, dry_run: bool, reload_interval: float, verbose: bool
) -> list[str]:
    """The processor's command line for `settings` (what `consume` writes into the daemon's wrapper script);
    `build_parser` and `Settings.from_args` read it back to the same settings."""
    command = [sys.executable, "-m", MODULE, "--config", config, *settings.to_argv()]
    command += ["--reload-interval", repr(reload_interval)]
    if dry_run:
        command.append("--dry-run")
    if verbose:
        command.append("--verbose")
    return command


def settings_from_args(args: argparse.Namespace) -> Settings:
    """The settings the command line names (nothing is left to the environment: `consume` wrote them all).

    Raises:
        ConfigError: a store flag cannot be used.
    """
    from stream_processor.wiring import HOST, Settings

    return Settings.from_args(args, {}, HOST)


def configure_logging(verbose: bool, stream: IO[str] | None = None) -> None:
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(logging.Formatter(LOG_FORMAT))
    handler.addFilter(SHARD_TAG)
    install_log_filter(handler)  # event text in a log line stays on one bounded line
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.DEBUG if verbose else logging.INFO)


def _log_alert(alert: Alert) -> None:
    shown = output_text(alert)
    log.warning(
        "ALERT %s: %s %s%s",
        alert.rule_name,
        alert.event.event_name,
        alert.event.event_id,
        f" ({shown[:200]})" if shown else "",
    )


def die_with_parent(poll_seconds: float = 1.0) -> None:
    """End this process soon after the daemon that started it dies.

    A processor asleep in a retry or rate-limit wait does not read the daemon's shutdown message; without
    this it would outlive a stopped daemon and keep posting. Ending without a checkpoint is safe: the KCL
    replays from the last one. (Not prctl's PDEATHSIG: it fires when the parent *thread* exits, and the JVM
    starts processors from pool threads that come and go.)
    """
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(poll_seconds)
        log.error("the KCL daemon (pid %d) is gone: stopping without checkpoint", parent)
        logging.shutdown()
        os._exit(EXIT_UNEXPECTED_ERROR)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def main(argv: Sequence[str] | None = None) -> int:
    die_with_parent()
    args = build_parser().parse_args(argv)
    configure_logging(args.verbose)
    try:
        # Imported here: the pipeline pulls in the matcher and destinations, which the parser does not need.
        from stream_processor.config import load_config
        from stream_processor.metrics import ShardMetrics
        from stream_processor.reload import ConfigWatcher
        from stream_processor.secrets import SecretResolver
        from stream_processor.wiring import build_pipeline

        settings = settings_from_args(args)
        resolver = SecretResolver(settings.aws, os.environ)  # kept across reloads, refreshed before each
        config = load_config(args.config, settings.aws, resolver=resolver)
        watcher = ConfigWatcher(args.config, settings.aws, resolver, args.reload_interval)
        metrics = ShardMetrics(settings.metrics.worker_id, log_interval_seconds=settings.metrics.log_seconds)
        pipeline = build_pipeline(
            config, settings, send=not args.dry_run, alert_sink=_log_alert if args.dry_run else None
        )
        log.debug("record processor state: %s", settings.describe())
    except Exception:
        log.exception("record processor could not start")
        return EXIT_UNEXPECTED_ERROR
    tune_for_throughput()
    protocol_out = claim_stdout()
    try:
        processor = KclRecordProcessor(pipeline, watcher=watcher, metrics=metrics)
        kcl.KCLProcess(processor, sys.stdin, protocol_out, sys.stderr).run()
    finally:
        pipeline.close()
    return 0


def claim_stdout() -> IO[str]:
    """Keep the real stdout for the protocol alone; everything else written to stdout goes to stderr.

    A `stdout` destination, a stray print() or a C library writing to fd 1 would otherwise put lines on the
    daemon's protocol channel. The daemon logs our stderr, so such output still shows up.
    """
    sys.stdout.flush()
    protocol = os.fdopen(os.dup(1), "w", encoding="utf-8", closefd=True)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    return protocol


if __name__ == "__main__":
    sys.exit(main())
