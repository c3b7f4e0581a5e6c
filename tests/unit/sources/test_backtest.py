"""`stream-processor backtest` over local archives: counts agree with libjq run directly, dates prune folders."""

from __future__ import annotations

import csv
import gzip
import io
import json
from collections import Counter
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from botocore.exceptions import ClientError
from botocore.response import StreamingBody

from stream_processor.cli import main
from stream_processor.config import load_config
from stream_processor.decode import decode_bytes
from stream_processor.local.traffic import TrafficGenerator, seed_triggers
from stream_processor.matcher import LibjqMatcher
from stream_processor.model import CloudTrailEvent
from stream_processor.sources import backtest as backtest_source
from stream_processor.sources.files import ArchiveObject, DateRange
from stream_processor.wiring import Limits
from tests.conftest import CORPUS, REPO_ROOT, corpus_path

RULES = """
[[rule]]
name = "Create AccessKey"
jq_match = 'select(.eventName == "CreateAccessKey")'
description = "A new Access Key has been created"
destinations = ["Audit"]

[[rule]]
name = "SSM Start Session"
jq_match = '''select(.eventName == "StartSession")
  | "username: \\(.responseElements.sessionId) target: \\(.requestParameters.target)"'''
description = "SSM start session"
destinations = ["Audit"]

[[rule]]
name = "Access denied"
jq_match = 'select(.errorCode == "AccessDenied" or .errorCode == "Client.UnauthorizedOperation") | .eventName'
description = "denied"
destinations = ["Audit"]

[[rule]]
name = "Broken on AssumeRole"
jq_match = 'select(.eventName == "AssumeRole") | (.eventTime | tonumber)'
description = "errors at run time on every AssumeRole"
destinations = ["Audit"]

[[destination]]
id = "Audit"
type = "stdout"
"""

ACCOUNT = "123456789012"
REGIONS = ("us-east-1", "eu-west-1")
FIRST_DAY = date(2024, 8, 1)
DAYS = 3
FILES_PER_DAY = 2
EVENTS_PER_FILE = 150


def write_rules(tmp_path: Path) -> Path:
    path = tmp_path / "rules.toml"
    path.write_text(RULES)
    return path


def cloudtrail_files(seed: int = 7) -> dict[str, bytes]:
    """A few days of a CloudTrail bucket: relative key → gzip log file, plus digest files beside them.

    Each file mixes realistic traffic with seed triggers, so every rule has something to find.
    """
    generator = TrafficGenerator(seed=seed, match_rate=0.05)
    triggers = iter(seed_triggers(DAYS * len(REGIONS) * FILES_PER_DAY * 2, seed=seed))
    files: dict[str, bytes] = {}
    for day_index in range(DAYS):
        day = FIRST_DAY + timedelta(days=day_index)
        for region in REGIONS:
            folder = f"AWSLogs/{ACCOUNT}/CloudTrail/{region}/{day:%Y/%m/%d}"
            for number in range(FILES_PER_DAY):
                events = [*generator.generate(EVENTS_PER_FILE), next(triggers), next(triggers)]
                for event in events:  # the date folder is the day the events happened
                    event["eventTime"] = f"{day:%Y-%m-%d}" + event["eventTime"][10:]
                name = f"{ACCOUNT}_CloudTrail_{region}_{day:%Y%m%d}T{number:02d}00Z_{seed}{number}.json.gz"
                files[f"{folder}/{name}"] = gzip.compress(orjson.dumps({"Records": events}))
            digest_folder = f"AWSLogs/{ACCOUNT}/CloudTrail-Digest/{region}/{day:%Y/%m/%d}"
            digest = {"digestStartTime": f"{day}T00:00:00Z", "digestEndTime": f"{day}T01:00:00Z", "logFiles": []}
            files[f"{digest_folder}/{ACCOUNT}_CloudTrail-Digest_{region}_{day:%Y%m%d}.json.gz"] = gzip.compress(
                orjson.dumps(digest)
            )
    return files


def write_tree(root: Path, files: dict[str, bytes]) -> None:
    for key, data in files.items():
        path = root / key
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)


def expected_report(rules_path: Path, files: dict[str, bytes]) -> dict[str, dict[str, Any]]:
    """Per rule what libjq itself says: matches, distinct principals, first/last time, run-time errors."""
    config = load_config(str(rules_path))
    events: list[CloudTrailEvent] = []
    for key, data in files.items():
        events.extend(decode_bytes(data, key).events)
    result = LibjqMatcher(config.rules).match_batch(events)
    expected: dict[str, dict[str, Any]] = {}
    errors = Counter(error.rule_name for error in result.errors)
    for rule in config.rules:
        matches = [m for m in result.matches if m.rule_name == rule.name]
        times = sorted(m.event.data["eventTime"] for m in matches)
        principals = {
            m.event.data["userIdentity"].get("arn")
            or m.event.data["userIdentity"].get("principalId")
            or m.event.data["userIdentity"].get("invokedBy")
            for m in matches
        }
        expected[rule.name] = {
            "matches": len(matches),
            "distinct_principals": len(principals - {None, ""}),
            "first_event_time": times[0] if times else None,
            "last_event_time": times[-1] if times else None,
            "rule_errors": errors[rule.name],
        }
    return expected


def run_json(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, dict[str, Any]]:
    code = main(["backtest", "--format", "json", *args])
    return code, json.loads(capsys.readouterr().out)


def by_rule(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {row["rule"]: row for row in report["rules"]}


def test_counts_principals_and_times_per_rule_agree_with_libjq(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rules = write_rules(tmp_path)
    files = cloudtrail_files()
    write_tree(tmp_path / "bucket", files)

    code, report = run_json(["-c", str(rules), str(tmp_path / "bucket")], capsys)

    assert code == 0
    rows = by_rule(report)
    for name, expected in expected_report(rules, files).items():
        assert {key: rows[name][key] for key in expected} == expected, name
    assert rows["Create AccessKey"]["matches"] > 0 and rows["SSM Start Session"]["matches"] > 0
    assert rows["Access denied"]["matches"] > 0 and rows["Broken on AssumeRole"]["rule_errors"] > 0
    totals = report["totals"]
    assert totals["objects"] == len(files)
    assert totals["digest_files"] == DAYS * len(REGIONS)
    assert totals["events"] == DAYS * len(REGIONS) * FILES_PER_DAY * (EVENTS_PER_FILE + 2)
    assert totals["malformed"] == 0 and totals["unreadable_objects"] == 0


def test_sample_is_the_earliest_match_with_its_rendered_output(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rules = write_rules(tmp_path)
    files = cloudtrail_files()
    write_tree(tmp_path, files)
    sessions = [
        event
        for data in files.values()
        for event in orjson.loads(gzip.decompress(data)).get("Records", [])
        if event["eventName"] == "StartSession"
    ]
    earliest = min(sessions, key=lambda e: (e["eventTime"], e["eventID"]))

    _, report = run_json(["-c", str(rules), "--workers", "4", str(tmp_path / "AWSLogs")], capsys)

    sample = by_rule(report)["SSM Start Session"]["sample"]
    assert sample["eventID"] == earliest["eventID"]
    assert sample["output"] == (
        f"username: {earliest['responseElements']['sessionId']} target: {earliest['requestParameters']['target']}"
    )
    assert by_rule(report)["Create AccessKey"]["sample"]["output"].startswith("iam.amazonaws.com CreateAccessKey by ")


def test_since_and_until_read_only_the_days_in_range(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rules = write_rules(tmp_path)
    files = cloudtrail_files()
    write_tree(tmp_path / "bucket", files)
    middle = FIRST_DAY + timedelta(days=1)
    in_range = {key: data for key, data in files.items() if f"/{middle:%Y/%m/%d}/" in key}

    _, report = run_json(
        ["-c", str(rules), "--since", str(middle), "--until", str(middle), str(tmp_path / "bucket")], capsys
    )

    assert report["totals"]["objects"] == len(in_range)
    rows = by_rule(report)
    for name, expected in expected_report(rules, in_range).items():
        assert rows[name]["matches"] == expected["matches"], name
    assert rows["Create AccessKey"]["first_event_time"].startswith(str(middle))


def test_csv_has_one_row_per_rule(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rules = write_rules(tmp_path)
    files = cloudtrail_files()
    write_tree(tmp_path, files)

    assert main(["backtest", "-c", str(rules), "--format", "csv", str(tmp_path / "AWSLogs")]) == 0

    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    expected = expected_report(rules, files)
    assert [row["rule"] for row in rows] == list(expected)
    assert {row["rule"]: int(row["matches"]) for row in rows} == {k: v["matches"] for k, v in expected.items()}


def test_table_shows_every_rule_and_the_totals(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rules = write_rules(tmp_path)
    write_tree(tmp_path, cloudtrail_files())

    assert main(["backtest", "-c", str(rules), str(tmp_path / "AWSLogs")]) == 0

    captured = capsys.readouterr()
    for name in ("Create AccessKey", "SSM Start Session", "Access denied", "Broken on AssumeRole"):
        assert name in captured.out
    assert "events/s" in captured.err and "digest files skipped" in captured.err


def test_a_missing_source_is_an_error_before_anything_is_read(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rules = write_rules(tmp_path)

    assert main(["backtest", "-c", str(rules), str(tmp_path / "nope")]) == 1

    assert "no such file or folder" in capsys.readouterr().err


def test_corpus_matches_agree_with_libjq(capsys: pytest.CaptureFixture[str]) -> None:
    corpus_path()  # skips in a fresh clone
    cis = REPO_ROOT / "examples" / "cis.toml"
    files = {str(path): path.read_bytes() for path in sorted(CORPUS.rglob("*")) if path.is_file()}

    code, report = run_json(["-c", str(cis), str(CORPUS)], capsys)

    assert code == 0
    rows = by_rule(report)
    expected = expected_report(cis, files)
    assert {name: rows[name]["matches"] for name in expected} == {n: e["matches"] for n, e in expected.items()}
    assert sum(e["matches"] for e in expected.values()) > 0
    assert report["totals"]["events"] == sum(len(decode_bytes(data, key).events) for key, data in files.items())


def test_one_stratus_file_on_its_own(capsys: pytest.CaptureFixture[str]) -> None:
    path = corpus_path("stratus-red-team", "aws.execution.ssm-start-session.json")
    seed = REPO_ROOT / "examples" / "seed.toml"
    events = decode_bytes(path.read_bytes(), str(path)).events

    _, report = run_json(["-c", str(seed), str(path)], capsys)

    expected = sum(1 for e in events if e.data.get("eventName") == "StartSession")
    assert by_rule(report)["SSM Start Session"]["matches"] == expected > 0


# --- the pieces ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "inside"),
    [
        ("AWSLogs/1/CloudTrail/us-east-1/2024/", True),
        ("AWSLogs/1/CloudTrail/us-east-1/2023/", False),
        ("AWSLogs/1/CloudTrail/us-east-1/2024/07/", True),  # July 31 is in range
        ("AWSLogs/1/CloudTrail/us-east-1/2024/07/30/", False),
        ("AWSLogs/1/CloudTrail/us-east-1/2024/08/02/x.json.gz", True),
        ("AWSLogs/1/CloudTrail/us-east-1/2024/08/03/", False),
        ("AWSLogs/o-abc/1/CloudTrail/eu-west-1/2024/08/01/", True),
        ("AWSLogs/1/CloudTrail-Digest/us-east-1/2024/08/04/", False),
        ("AWSLogs/1/CloudTrail/us-east-1/", True),
        ("exports/events.jsonl", True),
    ],
)
def test_date_range_prunes_only_dated_paths_outside_it(path: str, inside: bool) -> None:
    assert DateRange(date(2024, 7, 31), date(2024, 8, 2)).may_contain(path) is inside


class _FailingS3:
    """Answers get_object for every key but one, which is denied."""

    def __init__(self, files: dict[str, bytes], denied: str) -> None:
        self.files = files
        self.denied = denied

    def get_object(self, Bucket: str, Key: str) -> dict[str, Any]:
        if Key == self.denied:
            raise ClientError({"Error": {"Code": "AccessDenied", "Message": "Access Denied"}}, "GetObject")
        return {"Body": StreamingBody(io.BytesIO(self.files[Key]), len(self.files[Key]))}


def test_an_unreadable_object_is_reported_and_the_others_are_read(tmp_path: Path) -> None:
    files = cloudtrail_files()
    keys = sorted(files)
    config = load_config(str(write_rules(tmp_path)))
    scanner = backtest_source._Scanner(config, None, "fast", 1, Limits())
    scanner._s3 = _FailingS3(files, denied=keys[1])

    parts = [scanner.scan(ArchiveObject(f"s3://b/{key}", len(files[key]))) for key in keys]

    assert [part.failures for part in parts if part.failures] == [[f"s3://b/{keys[1]}: AccessDenied: Access Denied"]]
    assert sum(part.objects for part in parts) == len(keys) - 1


def test_many_workers_give_exactly_the_report_of_one(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_tree(tmp_path / "bucket", cloudtrail_files())
    (tmp_path / "bucket" / "broken.json").write_bytes(b'{"Records": [{"eventVersion": "1.08", "eventName": x}]}')
    rules = write_rules(tmp_path)

    reports = []
    for workers in ("1", "3"):
        code, report = run_json(["-c", str(rules), "--workers", workers, str(tmp_path / "bucket")], capsys)
        assert code == 0
        for volatile in ("seconds", "events_per_second"):
            report["totals"].pop(volatile)
        reports.append(report)

    assert reports[0] == reports[1]
    assert reports[0]["totals"]["malformed"] == 1
