"""`stream-processor backtest` over a moto S3 bucket laid out like a real CloudTrail bucket."""

from __future__ import annotations

import json
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from stream_processor.aws import AwsSettings
from stream_processor.cli import main
from tests.unit.sources.test_backtest import (
    DAYS,
    FILES_PER_DAY,
    FIRST_DAY,
    REGIONS,
    by_rule,
    cloudtrail_files,
    expected_report,
    write_rules,
)

pytestmark = pytest.mark.integration

OTHER_ACCOUNT = "210987654321"


@pytest.fixture
def trail_bucket(moto_server: AwsSettings) -> tuple[str, dict[str, bytes]]:
    """A fresh bucket with two accounts' CloudTrail logs and digests, a README at the top and an org-trail path."""
    s3 = moto_server.client("s3")
    bucket = f"trail-{uuid.uuid4().hex[:10]}"
    s3.create_bucket(Bucket=bucket)
    files = cloudtrail_files(seed=1)
    files.update({key.replace("123456789012", OTHER_ACCOUNT): data for key, data in cloudtrail_files(seed=2).items()})
    for key, data in files.items():
        s3.put_object(Bucket=bucket, Key=key, Body=data)
    s3.put_object(Bucket=bucket, Key="README.txt", Body=b"CloudTrail logs for the audit account\n")
    return bucket, files


def backtest(moto: AwsSettings, args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, dict[str, Any]]:
    assert moto.endpoint_url is not None
    code = main(["backtest", "--format", "json", "--aws-endpoint", moto.endpoint_url, "--region", "us-east-1", *args])
    return code, json.loads(capsys.readouterr().out)


def test_a_whole_awslogs_prefix_is_listed_read_and_counted_like_libjq(
    moto_server: AwsSettings,
    trail_bucket: tuple[str, dict[str, bytes]],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    bucket, files = trail_bucket
    rules = write_rules(tmp_path)

    code, report = backtest(moto_server, ["-c", str(rules), "--workers", "4", f"s3://{bucket}/AWSLogs/"], capsys)

    assert code == 0
    rows = by_rule(report)
    for name, expected in expected_report(rules, files).items():
        assert {key: rows[name][key] for key in expected} == expected, name
    assert report["totals"]["objects"] == len(files)  # README.txt is outside the prefix
    assert report["totals"]["digest_files"] == 2 * DAYS * len(REGIONS)
    assert report["totals"]["malformed"] == 0


def test_one_account_and_region_for_one_day(
    moto_server: AwsSettings,
    trail_bucket: tuple[str, dict[str, bytes]],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    bucket, files = trail_bucket
    rules = write_rules(tmp_path)
    day = FIRST_DAY + timedelta(days=2)
    prefix = f"AWSLogs/{OTHER_ACCOUNT}/CloudTrail/eu-west-1/"
    selected = {key: data for key, data in files.items() if key.startswith(prefix) and f"/{day:%Y/%m/%d}/" in key}

    _, report = backtest(
        moto_server, ["-c", str(rules), "--since", str(day), "--until", str(day), f"s3://{bucket}/{prefix}"], capsys
    )

    assert report["totals"]["objects"] == len(selected) == FILES_PER_DAY
    rows = by_rule(report)
    for name, expected in expected_report(rules, selected).items():
        assert rows[name]["matches"] == expected["matches"], name
        assert rows[name]["distinct_principals"] == expected["distinct_principals"], name


def test_since_alone_reads_every_account_from_that_day_on(
    moto_server: AwsSettings,
    trail_bucket: tuple[str, dict[str, bytes]],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    bucket, files = trail_bucket
    rules = write_rules(tmp_path)
    since = FIRST_DAY + timedelta(days=1)
    selected = {key: data for key, data in files.items() if f"/{FIRST_DAY:%Y/%m/%d}/" not in key}

    _, report = backtest(moto_server, ["-c", str(rules), "--since", str(since), f"s3://{bucket}/"], capsys)

    # The README at the top has no date: it is read, and reported as not CloudTrail.
    assert report["totals"]["objects"] == len(selected) + 1
    assert report["totals"]["malformed"] == 1
    rows = by_rule(report)
    expected = expected_report(rules, selected)
    assert {name: rows[name]["matches"] for name in expected} == {n: e["matches"] for n, e in expected.items()}


def test_a_missing_bucket_is_reported_and_the_exit_code_says_so(
    moto_server: AwsSettings, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rules = write_rules(tmp_path)

    code, report = backtest(moto_server, ["-c", str(rules), "s3://no-such-bucket-here/AWSLogs/"], capsys)

    assert code == 1
    assert len(report["unreadable"]) == 1 and "NoSuchBucket" in report["unreadable"][0]
