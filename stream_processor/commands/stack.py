"""`stream-processor stack start|stop|status|env`: the local AWS stack (kinesis-local + moto) on 127.0.0.1."""

from __future__ import annotations

import argparse
from pathlib import Path

from stream_processor.local import stack


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "stack",
        help="start, stop or show the local AWS stack (kinesis-local + moto on 127.0.0.1)",
        description=(
            "start: kinesis-local (Kinesis) and moto_server (DynamoDB, CloudWatch, Logs, SNS, SES, S3, SQS) on "
            "free 127.0.0.1 ports, kept running; their PIDs and ports go to a state file. stop: stop exactly "
            "those PIDs. status: what runs where. env: shell exports that point boto3 and the AWS CLI at them."
        ),
    )
    parser.add_argument("action", choices=("start", "stop", "status", "env"))
    parser.add_argument("--state-dir", type=Path, default=stack.DEFAULT_STATE_DIR, help="where the state file is")
    parser.add_argument("--region", default=stack.DEFAULT_REGION)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    return stack.main([args.action, "--state-dir", str(args.state_dir), "--region", args.region])
