"""`stream-processor validate`: what a user sees on stdout/stderr and the exit status."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from pathlib import Path

import pytest

from stream_processor import matcher
from stream_processor.aws import AwsSettings
from stream_processor.cli import main
from stream_processor.config import Rule
from tests.conftest import REPO_ROOT

SHIPPED_SEED = REPO_ROOT / "examples" / "seed.toml"
SECRET_URL = "https://hooks.slack.com/services/T000/B000/sEcReTtOkEn"
SEED = ""  # the seed with its webhook filled in (what a user validates before going live): set by _live_seed

BROKEN = f"""
[[rule]]
name = "Create AccessKey"
jq_match = 'select(.eventName == "CreateAccessKey"'
destinations = ["Slack Audt"]

[[rule]]
name = "SSM Start Session"
jq_mach = '.'

[[destination]]
id = "Slack Audit"
type = "slack_webhook"
webhok_url = "{SECRET_URL}"
"""


@pytest.fixture(scope="module", autouse=True)
def _live_seed(tmp_path_factory: pytest.TempPathFactory) -> None:
    global SEED
    path = tmp_path_factory.mktemp("seed") / "seed.toml"
    path.write_text(SHIPPED_SEED.read_text().replace("___YOUR_SLACK_WEBHOOK___", SECRET_URL))
    SEED = str(path)


@pytest.fixture
def broken(tmp_path: Path) -> str:
    path = tmp_path / "broken.toml"
    path.write_text(BROKEN)
    return str(path)


@pytest.fixture(autouse=True)
def _no_config_in_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("S3_CONFIG_BUCKET", raising=False)
    monkeypatch.delenv("S3_CONFIG_PATH", raising=False)


def test_valid_file_prints_a_summary_and_exits_0(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["validate", SEED])

    out, err = capsys.readouterr()
    assert code == 0
    assert out == f"{SEED}: OK: 2 rules, 1 destination\n"
    assert err == ""


def test_the_shipped_seed_is_refused_until_its_webhook_placeholder_is_replaced(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """It loads (a dry run or test-rules reads it) but cannot go live: the placeholder is not an https URL."""
    assert main(["validate", str(SHIPPED_SEED)]) == 1
    err = capsys.readouterr().err
    assert 'destination "Slack Audit" (type slack_webhook): webhook_url is not an https:// URL' in err
    assert "___YOUR_SLACK_WEBHOOK___" not in err


def test_invalid_file_prints_every_problem_one_per_line_and_exits_1(
    broken: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["validate", broken])

    out, err = capsys.readouterr()
    assert code == 1
    assert out == ""
    lines = err.splitlines()
    # libjq's own wording varies across versions: only its start and our advice are pinned
    assert lines[0].startswith(
        f'{broken}: rule #1 "Create AccessKey": jq_match does not compile: jq: error: syntax error, '
        "unexpected end of file"
    )
    assert "line 1, column" in lines[0]
    assert lines[0].endswith(": fix the jq program")
    assert lines[1:] == [
        f'{broken}: rule #1 "Create AccessKey": destination "Slack Audt" is not defined: did you mean "Slack Audit"?',
        f'{broken}: rule #2 "SSM Start Session": unknown key "jq_mach": did you mean "jq_match"?',
        f'{broken}: destination #1 "Slack Audit" (type slack_webhook): unknown key "webhok_url": '
        'did you mean "webhook_url"?',
        f"{broken}: INVALID: 4 problems",
    ]
    assert "sEcReT" not in err


def test_several_files_are_all_checked(broken: str, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["validate", broken, SEED])

    out, err = capsys.readouterr()
    assert code == 1
    assert out == f"{SEED}: OK: 2 rules, 1 destination\n"
    assert f"{broken}: INVALID: 4 problems" in err


def test_all_valid_files_exit_0(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", SEED, SEED]) == 0
    assert capsys.readouterr().out.count(": OK: ") == 2


def test_missing_file_exits_1_with_what_to_do(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = str(tmp_path / "tattletail.toml")

    code = main(["validate", missing])

    err = capsys.readouterr().err
    assert code == 1
    assert err.startswith(f"{missing}: file not found: check the path")


def test_nothing_to_validate_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["validate"])

    assert code == 2
    assert "no CONFIG given and S3_CONFIG_BUCKET / S3_CONFIG_PATH are not set" in capsys.readouterr().err


def test_half_an_s3_location_in_the_environment_exits_1(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("S3_CONFIG_BUCKET", "bucket")

    code = main(["validate"])

    assert code == 1
    assert capsys.readouterr().err.startswith("S3_CONFIG_BUCKET is set but S3_CONFIG_PATH is not")


def test_help_explains_the_command(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["validate", "--help"])

    out = capsys.readouterr().out
    assert exited.value.code == 0
    for words in ("CONFIG", "s3://bucket/key", "S3_CONFIG_BUCKET", "--explain", "exit status: 0", "stderr"):
        assert words in out


def test_validate_is_listed_in_the_top_level_help(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["--help"])

    assert "check rule files and print every problem" in capsys.readouterr().out


def test_explain_prints_one_line_per_rule(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["validate", "--explain", SEED])

    lines = capsys.readouterr().out.splitlines()
    assert code == 0
    assert lines[0] == f"{SEED}: OK: 2 rules, 1 destination"
    assert [line.split(": ")[0] for line in lines[1:-1]] == [
        '  rule #1 "Create AccessKey"',
        '  rule #2 "SSM Start Session"',
    ]
    assert all(line.split(": ", 1)[1].strip() for line in lines[1:-1])
    assert lines[1].endswith('compiled (indexed on eventName in {"CreateAccessKey"})')
    assert lines[-1].startswith("  index: reads eventName of each event")


def test_explain_shows_what_the_matcher_says(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def fake_explain(rules: Sequence[Rule]) -> list[tuple[str, str, str]]:
        return [(rule.name, "fast", f"indexed on eventName ({rule.index})") for rule in rules]

    monkeypatch.setattr(matcher, "explain", fake_explain, raising=False)

    main(["validate", "--explain", SEED])

    assert capsys.readouterr().out.splitlines()[1:-1] == [
        '  rule #1 "Create AccessKey": fast (indexed on eventName (1))',
        '  rule #2 "SSM Start Session": fast (indexed on eventName (2))',
    ]


def test_explain_names_the_rules_that_run_on_libjq(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "mixed.toml"
    config.write_text(
        '[[rule]]\nname = "Plain"\njq_match = \'select(.eventName == "StopLogging")\'\ndestinations = ["out"]\n'
        '[[rule]]\nname = "Folded"\njq_match = \'def n: .resources | length; select(n > 3)\'\ndestinations = ["out"]\n'
        '[[rule]]\nname = "Assigns"\njq_match = \'select((.seen = true) | .eventName == "X")\'\n'
        'destinations = ["out"]\n'
        '[[destination]]\nid = "out"\ntype = "stdout"\n'
    )

    assert main(["validate", "--explain", str(config)]) == 0

    lines = capsys.readouterr().out.splitlines()[1:]
    assert lines[0].startswith('  rule #1 "Plain": compiled')
    assert lines[1].startswith('  rule #2 "Folded": compiled')
    assert lines[2].startswith('  rule #3 "Assigns": libjq')


def test_explain_is_not_printed_for_an_invalid_file(broken: str, capsys: pytest.CaptureFixture[str]) -> None:
    main(["validate", "--explain", broken])

    assert capsys.readouterr().out == ""


# ---------------------------------------------------------------- S3


@pytest.fixture(scope="module")
def config_bucket(moto_server: AwsSettings) -> str:
    bucket = f"validate-{uuid.uuid4().hex[:12]}"
    s3 = moto_server.client("s3")
    s3.create_bucket(Bucket=bucket)
    s3.put_object(Bucket=bucket, Key="tattletail.toml", Body=Path(SEED).read_bytes())
    s3.put_object(Bucket=bucket, Key="broken.toml", Body=BROKEN.encode())
    return bucket


@pytest.mark.integration
def test_validate_an_s3_file(moto_server: AwsSettings, config_bucket: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert moto_server.endpoint_url is not None
    location = f"s3://{config_bucket}/tattletail.toml"

    code = main(["validate", "--aws-endpoint", moto_server.endpoint_url, location])

    assert code == 0
    assert capsys.readouterr().out == f"{location}: OK: 2 rules, 1 destination\n"


@pytest.mark.integration
def test_validate_an_invalid_s3_file(
    moto_server: AwsSettings, config_bucket: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert moto_server.endpoint_url is not None
    location = f"s3://{config_bucket}/broken.toml"

    code = main(["validate", "--aws-endpoint", moto_server.endpoint_url, location])

    err = capsys.readouterr().err
    assert code == 1
    assert f'{location}: rule #2 "SSM Start Session": unknown key "jq_mach"' in err
    assert "sEcReT" not in err


@pytest.mark.integration
def test_validate_the_file_named_by_tattletails_variables(
    moto_server: AwsSettings, config_bucket: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert moto_server.endpoint_url is not None
    monkeypatch.setenv("S3_CONFIG_BUCKET", config_bucket)
    monkeypatch.setenv("S3_CONFIG_PATH", "tattletail.toml")

    code = main(["validate", "--aws-endpoint", moto_server.endpoint_url])

    assert code == 0
    assert capsys.readouterr().out == f"s3://{config_bucket}/tattletail.toml: OK: 2 rules, 1 destination\n"


@pytest.mark.integration
def test_missing_s3_object_exits_1(
    moto_server: AwsSettings, config_bucket: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert moto_server.endpoint_url is not None
    location = f"s3://{config_bucket}/absent.toml"

    code = main(["validate", "--aws-endpoint", moto_server.endpoint_url, location])

    assert code == 1
    assert capsys.readouterr().err.startswith(f"{location}: no object 'absent.toml' in bucket")


# ---------------------------------------------------------------- for CI: --format json


def test_json_output_has_every_files_status_problems_and_notes(
    broken: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import json

    go = tmp_path / "go.toml"
    go.write_text(
        '[[rule]]\nname = "Users"\njq_match = \'select(.eventName | test("(?P<v>Create)User"))\'\n'
        'destinations = ["out"]\n[[destination]]\nid = "out"\ntype = "stdout"\n'
    )
    code = main(["validate", "--format", "json", "--explain", SEED, broken, str(go)])

    out, err = capsys.readouterr()
    assert code == 1 and err == ""
    document = json.loads(out)
    assert (document["ok"], document["exit_code"]) == (False, 1)
    seed, bad, translated = document["files"]
    assert (seed["status"], seed["rules"], seed["destinations"], seed["problems"]) == ("ok", 2, 1, [])
    assert [entry["rule"] for entry in seed["explain"]] == ["Create AccessKey", "SSM Start Session"]
    assert bad["status"] == "invalid" and len(bad["problems"]) == 4 and SECRET_URL not in out
    assert translated["status"] == "ok" and "reads (?<name>...)" in translated["notes"][0]


def test_a_deprecated_key_is_a_warning_naming_the_file_the_rule_and_the_new_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import json

    old = tmp_path / "old.toml"
    old.write_text(
        '[[rule]]\nname = "Denied"\njq_match = \'select(.errorCode == "AccessDenied")\'\ndedupe_window = "10m"\n'
        'destinations = ["out"]\n[[destination]]\nid = "out"\ntype = "stdout"\n'
    )
    warning = (
        f'{old}: rule #1 "Denied": dedupe_window is deprecated, it sets the storm window (alerts folded into a '
        'digest): write storm_window = "10m" instead'
    )

    assert main(["validate", str(old)]) == 0  # still valid: the old key is read
    out, err = capsys.readouterr()
    assert out == f"{old}: OK: 1 rule, 1 destination\n"
    assert err == f"warning: {warning}\n"

    assert main(["validate", "--format", "json", str(old)]) == 0
    (file,) = json.loads(capsys.readouterr().out)["files"]
    assert (file["status"], file["warnings"]) == ("ok", [warning])


def test_json_output_of_a_file_aws_would_not_hand_out(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import json

    monkeypatch.setenv("AWS_PROFILE", "no-such-profile-here")
    assert main(["validate", "--format", "json", "s3://bucket/rules.toml"]) == 2
    (file,) = json.loads(capsys.readouterr().out)["files"]
    assert file["status"] == "not_checked" and "no-such-profile-here" in file["problems"][0]
