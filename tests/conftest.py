"""Shared fixtures: real local servers on 127.0.0.1, started per session and stopped by PID."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from stream_processor.aws import AwsSettings
from stream_processor.local.moto import start_moto

REPO_ROOT = Path(__file__).resolve().parent.parent
CORPUS = REPO_ROOT.parent / "shared" / "corpus"
CORPUS_MISSING = "../shared/corpus is absent (a fresh clone has no ../shared): corpus tests need it"


def corpus_path(*parts: str) -> Path:
    """A file of the shared corpus, or skip the calling test with the reason when it is absent."""
    path = CORPUS.joinpath(*parts)
    if not path.exists():
        pytest.skip(CORPUS_MISSING)
    return path


@pytest.fixture(scope="session", autouse=True)
def _fake_aws_credentials() -> None:
    """No test may reach real AWS: fake credentials and a region for every boto3 client."""
    os.environ["AWS_ACCESS_KEY_ID"] = "testing"
    os.environ["AWS_SECRET_ACCESS_KEY"] = "testing"
    os.environ["AWS_SESSION_TOKEN"] = "testing"
    os.environ["AWS_DEFAULT_REGION"] = "us-east-1"
    os.environ.pop("AWS_PROFILE", None)


@pytest.fixture(scope="session")
def moto_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AwsSettings]:
    """moto in server mode on a free loopback port, for the whole session."""
    server = start_moto(tmp_path_factory.mktemp("moto"))
    try:
        yield AwsSettings(region="us-east-1", endpoint_url=server.url)
    finally:
        server.stop()
