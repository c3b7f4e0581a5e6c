"""Integration fixtures: the local AWS stack (kinesis-local + moto_server on 127.0.0.1) for the session."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator

import pytest

from stream_processor.local.stack import LocalStack


@pytest.fixture(scope="session")
def local_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    """kinesis-local and moto_server for the whole session, stopped by PID at the end.

    A missing kinesis-local is a failure, not a skip: `make test` installs it, so its absence means the
    checkout was not set up.
    """
    stack = LocalStack(tmp_path_factory.mktemp("local-stack"))
    try:
        stack.start()
    except RuntimeError as error:
        pytest.fail(f"the local AWS stack did not start; run `make setup` first.\n{error}", pytrace=False)
    try:
        yield stack
    finally:
        stack.stop()


@pytest.fixture
def new_stream(local_stack: LocalStack) -> Callable[[int], str]:
    """Create a uniquely named ACTIVE stream on the session's kinesis-local: `name = new_stream(shards)`."""

    def create(shards: int = 2) -> str:
        name = f"test-{uuid.uuid4().hex[:10]}"
        local_stack.create_stream(name, shards)
        return name

    return create
