"""`stream-processor stack start|stop|status|env`: the local AWS stack (kinesis-local + moto) on 127.0.0.1."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from stream_processor.local import stack
from stream_processor.local.kinesis import PREFIX_ENV


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
    parser.add_argument(
        "--state-dir", type=Path, default=stack.DEFAULT_STATE_DIR, help="where the state file is (./.local)"
    )
    parser.add_argument("--region", default=stack.DEFAULT_REGION)
    parser.add_argument(
        "--kinesis-local",
        type=Path,
        metavar="DIR",
        help=f"npm prefix kinesis-local is installed in (default: ${PREFIX_ENV}, ./infra/local or the user cache)",
    )
    parser.set_defaults(run=run)


def print_state(state: stack.StackState) -> None:
    for record in (state.kinesis, state.moto):
        status = "running" if stack.is_alive(record) else "NOT RUNNING"
        print(f"{record.name:<14} {record.url:<28} pid {record.pid:<8} {status}")
    print(f"region         {state.region}")
    print(f"logs           {state.log_dir}")


def print_env(state: stack.StackState) -> None:
    """boto3 (1.28+) and the AWS CLI read these: Kinesis goes to kinesis-local, the rest to moto."""
    print(f"export AWS_ENDPOINT_URL={state.moto.url}")
    print(f"export AWS_ENDPOINT_URL_KINESIS={state.kinesis.url}")
    print(f"export AWS_REGION={state.region} AWS_DEFAULT_REGION={state.region}")
    for key, value in stack.FAKE_CREDENTIALS.items():
        print(f"export {key}={value}")


def run(args: argparse.Namespace) -> int:
    state_dir: Path = args.state_dir
    try:
        if args.action == "start":
            print_state(stack.start_detached(state_dir, args.region, args.kinesis_local))
            print(f"stop it with: stream-processor stack stop --state-dir {state_dir}")
            return 0
        if args.action == "stop":
            stopped = stack.stop_detached(state_dir)
            print(f"stopped: {', '.join(stopped)}" if stopped else "no local stack was running")
            return 0
    except RuntimeError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    state = stack.read_state(state_dir)
    if state is None:
        print("no local stack is recorded (start one with: stream-processor stack start)", file=sys.stderr)
        return 1
    if args.action == "env":
        print_env(state)
        return 0
    print_state(state)
    return 0 if stack.is_alive(state.kinesis) and stack.is_alive(state.moto) else 1
