"""wiring.Settings: read the same way by consume, its record processors, the Lambda runtime and the commands."""

from __future__ import annotations

import argparse
import shlex
from pathlib import Path

import pytest

from stream_processor.aws import AwsSettings
from stream_processor.cli import main
from stream_processor.decode import DecodeBudget
from stream_processor.errors import ConfigError
from stream_processor.kcl.processor import build_parser, command_line, settings_from_args
from stream_processor.sources.lambda_runtime import LambdaSettings
from stream_processor.wiring import (
    HOST,
    LAMBDA,
    ONE_SHOT,
    Limits,
    MetricsSettings,
    Settings,
    Store,
    StormSettings,
    add_aws_arguments,
    add_state_arguments,
    build_pipeline,
    open_storm,
    region_for_store,
)

QUEUE = "https://sqs.eu-west-1.amazonaws.com/123456789012/sp-dead-letters"
SEED = """\
[[rule]]
name = "Create AccessKey"
jq_match = 'select(.eventName == "CreateAccessKey")'
destinations = ["Slack Audit"]

[[destination]]
id = "Slack Audit"
type = "slack_webhook"
webhook_url = "https://hooks.slack.com/services/T0/B0/x"
"""


def parse(argv: list[str], shape_storm: bool = True) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_aws_arguments(parser, services=("kinesis", "dynamodb"))
    add_state_arguments(parser, storm=shape_storm)
    return parser.parse_args(argv)


# --------------------------------------------------------------------------- the record processor's argv


@pytest.mark.parametrize(
    "settings",
    [
        Settings().resolve_paths(),
        Settings(
            aws=AwsSettings(
                region="eu-west-1",
                profile="alerts",
                endpoint_url="http://127.0.0.1:5000",
                service_endpoints=(("kinesis", "http://127.0.0.1:4567"),),
            ),
            state_dir=Path("/srv/state"),
            ledger=Store("dynamodb", "sp-dedupe"),
            dead_letters=Store("sqs", QUEUE),
            storm=StormSettings(Store("sqlite", "/srv/state/storm.sqlite3"), 25, 120.5),
            metrics=MetricsSettings(worker_id="host-7", log_seconds=0.0),
            matcher="libjq",
            limits=Limits(12.5, DecodeBudget(record_bytes=2 << 20, record_items=500, event_bytes=300_000)),
        ),
        Settings(ledger=Store("memory"), dead_letters=Store("none"), storm=StormSettings(Store("none"))),
        Settings(ledger=Store("dynamodb", "sp-dedupe"), storm=StormSettings(Store("dynamodb", "sp-storm"), 5)),
        Settings(storm=StormSettings(Store("memory"))),
    ],
    ids=["defaults", "everything-set", "memory-and-none", "dynamodb-storm", "memory-storm"],
)
def test_settings_survive_the_trip_through_the_processor_command_line(settings: Settings) -> None:
    argv = command_line("rules.toml", settings, dry_run=True, reload_interval=2.5, verbose=True)
    assert argv[1:3] == ["-m", "stream_processor.kcl.processor"]
    args = build_parser().parse_args(argv[3:])
    assert settings_from_args(args) == settings.resolve_paths()
    assert (args.config, args.dry_run, args.reload_interval, args.verbose) == ("rules.toml", True, 2.5, True)


def test_consume_hands_its_processors_the_durable_stores_the_environment_names(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """What the ECS task does: the table and queue come from the environment, as for the Lambda functions."""
    config = tmp_path / "rules.toml"
    config.write_text(SEED)
    monkeypatch.setenv("STREAM_PROCESSOR_DEDUPE_TABLE", "sp-dedupe")
    monkeypatch.setenv("STREAM_PROCESSOR_DEAD_LETTER_QUEUE_URL", QUEUE)
    work = tmp_path / "work"
    argv = ["consume", "-c", str(config), "--stream", "s", "--application", "a", "--region", "eu-west-1"]
    assert main([*argv, "--work-dir", str(work), "--print-properties"]) == 0
    executable = next(
        line.split("=", 1)[1].strip() for line in capsys.readouterr().out.splitlines() if line.startswith("executable")
    )
    exec_line = next(line for line in Path(executable).read_text().splitlines() if line.startswith("exec "))
    command = shlex.split(exec_line.removeprefix("exec "))
    settings = settings_from_args(build_parser().parse_args(command[3:]))
    assert settings.ledger == Store("dynamodb", "sp-dedupe")
    assert settings.dead_letters == Store("sqs", QUEUE)
    assert settings.storm.store == Store("sqlite", str(work / "storm.sqlite3"))  # storms: the host's files
    assert settings.aws.region == "eu-west-1"


def test_consume_hands_its_processors_the_storm_table_the_environment_names(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Every task of the ECS service folds into one table of windows: one digest per window, not one per task."""
    config = tmp_path / "rules.toml"
    config.write_text(SEED)
    monkeypatch.setenv("STREAM_PROCESSOR_STORM_TABLE", "sp-storm")
    argv = ["consume", "-c", str(config), "--stream", "s", "--application", "a", "--region", "eu-west-1"]
    assert main([*argv, "--work-dir", str(tmp_path / "work"), "--storm-max", "3", "--print-properties"]) == 0
    executable = next(
        line.split("=", 1)[1].strip() for line in capsys.readouterr().out.splitlines() if line.startswith("executable")
    )
    exec_line = next(line for line in Path(executable).read_text().splitlines() if line.startswith("exec "))
    command = shlex.split(exec_line.removeprefix("exec "))
    monkeypatch.delenv("STREAM_PROCESSOR_STORM_TABLE")  # the processor reads its command line, not the variable
    settings = settings_from_args(build_parser().parse_args(command[3:]))
    assert settings.storm == StormSettings(Store("dynamodb", "sp-storm"), 3)


def test_consume_without_durable_stores_keeps_sqlite_files_in_its_work_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("STREAM_PROCESSOR_DEDUPE_TABLE", raising=False)
    monkeypatch.delenv("STREAM_PROCESSOR_DEAD_LETTER_QUEUE_URL", raising=False)
    monkeypatch.delenv("STREAM_PROCESSOR_STATE_DIR", raising=False)
    settings = Settings.from_args(parse([]), {}, HOST, state_dir=tmp_path)
    assert settings.ledger == Store("sqlite", str(tmp_path / "ledger.sqlite3"))
    assert settings.dead_letters == Store("sqlite", str(tmp_path / "dead-letters.sqlite3"))
    assert settings.storm.store == Store("sqlite", str(tmp_path / "storm.sqlite3"))


# --------------------------------------------------------------------------- flags, then environment, then shape


def test_flags_win_over_the_environment_which_wins_over_the_default() -> None:
    environ = {
        "STREAM_PROCESSOR_DEDUPE_TABLE": "from-env",
        "STREAM_PROCESSOR_DEAD_LETTER_QUEUE_URL": QUEUE,
        "STREAM_PROCESSOR_STORM_TABLE": "storm-from-env",
    }
    from_env = Settings.from_args(parse([]), environ, HOST)
    assert (from_env.ledger, from_env.dead_letters) == (Store("dynamodb", "from-env"), Store("sqs", QUEUE))
    assert from_env.storm.store == Store("dynamodb", "storm-from-env")
    flagged = Settings.from_args(
        parse(["--dedupe", "memory", "--dead-letters", "none", "--storm", "sqlite:/x/s.db"]), environ, HOST
    )
    assert (flagged.ledger, flagged.dead_letters) == (Store("memory"), Store("none"))
    assert flagged.storm.store == Store("sqlite", "/x/s.db")
    assert Settings.from_args(parse(["--no-storm"]), environ, HOST).storm.store == Store("none")


@pytest.mark.parametrize("command", ["replay", "redrive", "match"])
def test_replays_and_one_shot_sends_never_fold_into_the_consumers_storm_table(command: str) -> None:
    """A replay folding into the live windows would hold back the consumers' alerts, or add to their digests."""
    from stream_processor.commands.dead_letters import REDRIVE
    from stream_processor.commands.replay import REPLAY

    shape = {"replay": REPLAY, "redrive": REDRIVE, "match": ONE_SHOT}[command]
    environ = {"STREAM_PROCESSOR_STORM_TABLE": "sp-storm"}
    assert Settings.from_args(parse([]), environ, shape).storm.store == Store("none")
    flagged = Settings.from_args(parse(["--storm", "dynamodb:sp-storm"]), environ, shape)
    assert flagged.storm.store == Store("dynamodb", "sp-storm")


@pytest.mark.parametrize(
    ("spec", "backend"),
    [
        ("dynamodb:sp-storm", "DynamoDBStormStore"),
        ("memory", "MemoryStormStore"),
        ("sqlite", "SQLiteStormStore"),
        ("none", None),
    ],
)
def test_open_storm_opens_the_store_the_flag_names(tmp_path: Path, spec: str, backend: str | None) -> None:
    settings = Settings.from_args(
        parse(["--storm", spec, "--storm-max", "4", "--state-dir", str(tmp_path), "--region", "eu-west-1"]), {}, HOST
    )
    store = open_storm(settings)
    if backend is None:
        assert store is None
        return
    assert type(store).__name__ == backend
    assert store is not None and store.policy.max_alerts_per_window == 4
    store.close()


@pytest.mark.parametrize(
    ("argv", "ledger", "dead_letters", "storm"),
    [
        (["--dedupe-db", "/x/l.db"], Store("sqlite", "/x/l.db"), None, None),
        (["--dedupe-table", "t"], Store("dynamodb", "t"), None, None),
        (["--no-dedupe"], Store("none"), None, None),
        (["--dead-letters-queue", QUEUE], None, Store("sqs", QUEUE), None),
        (["--dead-letters-db", "/x/d.db"], None, Store("sqlite", "/x/d.db"), None),
        (["--no-storm"], None, None, Store("none")),
        (["--storm-db", "/x/s.db"], None, None, Store("sqlite", "/x/s.db")),
    ],
    ids=["dedupe-db", "dedupe-table", "no-dedupe", "dead-letters-queue", "dead-letters-db", "no-storm", "storm-db"],
)
def test_the_old_flags_are_aliases_of_the_store_flags(
    argv: list[str], ledger: Store | None, dead_letters: Store | None, storm: Store | None
) -> None:
    settings = Settings.from_args(parse(argv), {}, HOST)
    assert ledger is None or settings.ledger == ledger
    assert dead_letters is None or settings.dead_letters == dead_letters
    assert storm is None or settings.storm.store == storm


def test_lambda_keeps_no_state_unless_the_environment_names_it() -> None:
    bare = LambdaSettings.from_env({"CONFIG_PATH": "rules.toml"}).settings
    assert (bare.ledger, bare.dead_letters, bare.storm.store) == (Store("none"), Store("none"), Store("none"))
    environ = {
        "CONFIG_PATH": "rules.toml",
        "STREAM_PROCESSOR_DEDUPE_TABLE": "sp-dedupe",
        "STREAM_PROCESSOR_DEAD_LETTER_QUEUE_URL": QUEUE,
        "AWS_REGION": "ap-south-1",
    }
    settings = LambdaSettings.from_env(environ).settings
    assert (settings.ledger, settings.dead_letters) == (Store("dynamodb", "sp-dedupe"), Store("sqs", QUEUE))
    assert settings.storm.store == Store("none")
    assert settings.aws.region == "ap-south-1"
    assert settings == Settings.from_env(environ, LAMBDA)
    folding = LambdaSettings.from_env({**environ, "STREAM_PROCESSOR_STORM_TABLE": "sp-storm"}).settings
    assert folding.storm.store == Store("dynamodb", "sp-storm")


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("postgres", "choose sqlite"),
        ("dynamodb:", "name the table"),
        ("memory:/x", "takes no location"),
    ],
    ids=["unknown", "no-table", "memory-with-path"],
)
def test_unusable_store_specs_are_refused_with_the_choices(spec: str, message: str) -> None:
    with pytest.raises(ConfigError) as raised:
        Settings.from_args(parse(["--dedupe", spec]), {}, HOST)
    assert message in str(raised.value)


def test_a_queue_url_or_table_arn_brings_its_region() -> None:
    aws = AwsSettings()
    assert region_for_store(Store("sqs", QUEUE), aws, "sqs").region == "eu-west-1"
    arn = "arn:aws:dynamodb:ap-northeast-2:123456789012:table/sp-dedupe"
    assert region_for_store(Store("dynamodb", arn), aws, "dynamodb").region == "ap-northeast-2"
    emulator = AwsSettings(endpoint_url="http://127.0.0.1:5000")
    assert region_for_store(Store("sqs", QUEUE), emulator, "sqs") == emulator


def test_a_dry_run_opens_no_store(tmp_path: Path) -> None:
    from stream_processor.config import parse_config

    settings = Settings.from_args(parse(["--state-dir", str(tmp_path / "state")]), {}, HOST)
    pipeline = build_pipeline(parse_config(SEED, "seed.toml"), settings, send=False)
    assert (pipeline.ledger, pipeline.dead_letters, pipeline.storm) == (None, None, None)
    assert not (tmp_path / "state").exists()
    pipeline.close()


def test_one_shot_match_send_keeps_no_state_by_default() -> None:
    settings = Settings.from_args(parse([], shape_storm=False), {}, ONE_SHOT)
    assert (settings.ledger, settings.dead_letters, settings.storm.store) == (Store("none"),) * 3
