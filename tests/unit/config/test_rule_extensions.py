"""Rule extensions: severity, title, runbook, tags, enabled, storm_window, group_by; and how alerts show them."""

from __future__ import annotations

import json
from typing import Any

import pytest

from stream_processor.alerts import render
from stream_processor.config import Config, Rule, load_config, parse_config, parse_duration
from stream_processor.errors import ConfigError
from stream_processor.model import Alert, CloudTrailEvent, Match, Position
from tests.conftest import REPO_ROOT

SOURCE = "rules.toml"
SEED = REPO_ROOT / "examples" / "seed.toml"
EVENT: dict[str, Any] = {
    "eventVersion": "1.09",
    "eventID": "e-1",
    "eventName": "CreateAccessKey",
    "eventSource": "iam.amazonaws.com",
    "requestParameters": {"userName": "<!channel> bob"},
    "userIdentity": {"type": "IAMUser", "arn": "arn:aws:iam::1:user/alice"},
}


def rule_text(extra: str) -> str:
    return f'[[rule]]\nname = "r"\njq_match = \'select(.eventName == "CreateAccessKey")\'\n{extra}\n'


def load_rule(extra: str) -> Rule:
    (rule,) = parse_config(rule_text(extra), SOURCE).rules
    return rule


def problems_of(text: str) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        parse_config(text, SOURCE)
    return caught.value.problems


def event(data: dict[str, Any] | None = None) -> CloudTrailEvent:
    data = EVENT if data is None else data
    return CloudTrailEvent(json.dumps(data).encode(), data, Position("t"))


# ---------------------------------------------------------------- loading


def test_a_tattletail_rule_gets_the_neutral_defaults() -> None:
    rule = load_config(str(SEED)).rules[0]

    assert (rule.severity, rule.title, rule.runbook, rule.tags) == (None, None, None, ())
    assert rule.enabled is True and rule.storm_window is None and rule.group_by is None and rule.tests == ()


def test_every_extension_loads() -> None:
    rule = load_rule(
        'severity = "High"\n'
        "title = '\"Access key for \\(.requestParameters.userName)\"'\n"
        'runbook = "https://wiki.example.com/runbooks/access-keys"\n'
        'tags = ["T1098.001", "persistence"]\n'
        "enabled = false\n"
        'storm_window = "1h30m"\n'
        "group_by = '.userIdentity.arn'\n"
    )

    assert rule.severity == "high"  # any case, stored lower-case
    assert rule.title == '"Access key for \\(.requestParameters.userName)"'
    assert rule.runbook == "https://wiki.example.com/runbooks/access-keys"
    assert rule.tags == ("T1098.001", "persistence")
    assert rule.enabled is False
    assert rule.storm_window == 5400.0
    assert rule.group_by == ".userIdentity.arn"


def test_disabled_rules_are_loaded_but_not_matched() -> None:
    config = parse_config(rule_text("enabled = false") + '[[rule]]\nname = "on"\njq_match = "."\n', SOURCE)

    assert [r.name for r in config.rules] == ["r", "on"]
    assert [r.name for r in config.enabled_rules] == ["on"]
    assert config.rule("r").enabled is False


def test_a_disabled_rule_is_still_validated() -> None:
    (problem,) = problems_of('[[rule]]\nname = "r"\njq_match = "select("\nenabled = false\n')

    assert "jq_match does not compile" in problem


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        (600, 600.0),
        (2.5, 2.5),
        ('"90s"', 90.0),
        ('"10m"', 600.0),
        ('"1h"', 3600.0),
        ('"1d"', 86400.0),
        ('"1h 30m"', 5400.0),
        ('"10M"', 600.0),
    ],
)
def test_storm_window_accepts_seconds_and_durations(value: object, seconds: float) -> None:
    assert load_rule(f"storm_window = {value}").storm_window == seconds


@pytest.mark.parametrize(("value", "written"), [('"10m"', 'storm_window = "10m"'), ("600", "storm_window = 600")])
def test_the_old_dedupe_window_key_is_still_read_with_a_warning(value: str, written: str) -> None:
    config = parse_config(rule_text(f"dedupe_window = {value}"), SOURCE)

    assert config.rules[0].storm_window == 600.0
    (warning,) = config.warnings
    assert warning.startswith(f'{SOURCE}: rule #1 "r": dedupe_window is deprecated, it sets the storm window')
    assert warning.endswith(f"write {written} instead")


def test_the_new_storm_window_key_loads_without_a_warning() -> None:
    assert parse_config(rule_text('storm_window = "10m"'), SOURCE).warnings == ()


def test_both_window_keys_on_one_rule_are_a_problem() -> None:
    (problem,) = problems_of(rule_text('storm_window = "10m"\ndedupe_window = "5m"'))

    assert problem.endswith('"r": has both storm_window and dedupe_window (its old name): keep storm_window')


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ('severity = "urgent"', 'severity "urgent" is not one of info, low, medium, high, critical'),
        ('severity = "hihg"', 'did you mean "high"?'),
        ("severity = 3", "severity an integer is not one of"),
        ("title = 'select('", "title does not compile"),
        ("title = ''", "title is empty"),
        ("title = 7", "title must be a jq program (a string), got an integer"),
        ("title = '$ENV.HOME'", "title uses `$ENV`"),
        ("group_by = 'input'", "group_by uses `input`"),
        ('runbook = "wiki/runbook"', 'runbook "wiki/runbook" is not an http(s) URL'),
        ('runbook = ["https://a"]', "runbook must be a URL (a string), got an array"),
        ('tags = "T1098"', 'tags must be a list of strings, got a string: write tags = ["T1098"]'),
        ('tags = ["a", 1]', "tags[2] must be a non-empty string, got an integer"),
        ('tags = ["a", "a"]', 'tags lists "a" twice'),
        ('enabled = "no"', "enabled must be true or false, got a string"),
        ('storm_window = "ten minutes"', 'storm_window "ten minutes" is not a duration'),
        ("storm_window = 0", "storm_window must be more than zero seconds"),
        ("storm_window = -5", "storm_window must be more than zero seconds"),
        ("storm_window = true", "storm_window must be a number of seconds"),
        ("dedupe_window = 0", "dedupe_window must be more than zero seconds"),
        ('storm_windw = "10m"', 'unknown key "storm_windw": did you mean "storm_window"?'),
        ('severty = "high"', 'unknown key "severty": did you mean "severity"?'),
        ('references = "https://a"', 'references must be a list of strings, got a string: write references = ["https'),
        ('false_positives = ["ok", ""]', "false_positives[2] must be a non-empty string, got an empty string"),
        ("false_positives = 3", "false_positives must be a list of strings, got an integer"),
        ('falsepositives = ["x"]', 'unknown key "falsepositives": did you mean "false_positives"?'),
    ],
)
def test_extension_mistakes_are_reported_with_the_fix(line: str, expected: str) -> None:
    (problem,) = problems_of(rule_text(line))

    assert problem.startswith(f'{SOURCE}: rule #1 "r": ')
    assert expected in problem


def test_references_and_false_positives_are_kept_for_the_reader() -> None:
    rule = load_rule('references = ["https://a", "RFC 1"]\nfalse_positives = ["Admin scripts"]')
    assert rule.references == ("https://a", "RFC 1")
    assert rule.false_positives == ("Admin scripts",)
    assert load_rule("").references == () and load_rule("").false_positives == ()


def test_parse_duration_refuses_nonsense() -> None:
    for bad in ("", "m", "5x", "1.5", "inf", float("inf"), float("nan"), None):
        with pytest.raises(ValueError):
            parse_duration(bad)


def test_rules_stay_hashable_and_comparable() -> None:
    first = load_rule('tags = ["a"]\nseverity = "low"')
    second = load_rule('tags = ["a"]\nseverity = "low"')

    assert first == second and hash(first) == hash(second)


# ---------------------------------------------------------------- titles and alerts


def test_render_title_is_the_first_output_as_one_capped_line() -> None:
    rule = load_rule("title = '\"Key for \\(.requestParameters.userName)\\nnext line\"'")

    assert render.render_title(rule, event()) == "Key for <!channel> bob next line"
    long_rule = load_rule("title = '\"x\" * 1000'")
    title = render.render_title(long_rule, event())
    assert title is not None and len(title) == render.TITLE_CHARS and title.endswith("…")


@pytest.mark.parametrize("program", ["null", "false", "empty", ".missing.field", 'error("boom")', "1 / 0 | tostring"])
def test_a_title_that_says_nothing_or_fails_falls_back_to_the_rule_name(program: str) -> None:
    rule = load_rule(f"title = '{program}'")

    alert = render.build_alert(rule, Match(rule.name, event(), True))

    assert render.render_title(rule, event()) is None
    assert render.display_title(alert) == "r"


def test_a_non_string_title_is_compact_json() -> None:
    rule = load_rule("title = '{user: .requestParameters.userName}'")

    assert render.render_title(rule, event()) == '{"user":"<!channel> bob"}'


def test_build_alert_carries_the_extensions() -> None:
    rule = load_rule(
        'title = \'"Key for \\(.requestParameters.userName)"\'\nseverity = "critical"\n'
        'tags = ["T1098.001"]\nrunbook = "https://rb.example.com/keys"'
    )

    alert = render.build_alert(rule, Match(rule.name, event(), EVENT))

    assert alert == Alert(
        "r",
        "",
        EVENT,
        event(),
        title="Key for <!channel> bob",
        severity="critical",
        runbook="https://rb.example.com/keys",
        tags=("T1098.001",),
    )


def titled_alert() -> Alert:
    return Alert(
        "Create AccessKey",
        "A new key",
        True,
        event(),
        title="Key for <!channel> bob",
        severity="high",
        runbook="https://rb.example.com/keys",
        tags=("T1098.001",),
    )


def test_slack_shows_title_severity_tags_and_runbook_and_escapes_the_title() -> None:
    payload = render.slack_payload(titled_alert())

    header = payload["blocks"][0]
    assert header["text"] == {"type": "plain_text", "text": "Key for <!channel> bob"}  # plain_text: no ping
    context = payload["blocks"][1]
    assert context["type"] == "context"
    texts = [element["text"] for element in context["elements"]]
    assert texts == [
        "*Severity:* HIGH",
        "*Rule:* Create AccessKey",
        "*Tags:* T1098.001",
        "*Runbook:* <https://rb.example.com/keys|open>",
    ]
    assert payload["text"].startswith("[HIGH] Key for &lt;!channel&gt; bob (Create AccessKey): A new key\n")
    assert "<!channel>" not in payload["text"]
    assert "runbook: https://rb.example.com/keys" in payload["text"]


def test_a_plain_alert_renders_exactly_as_before() -> None:
    plain = Alert("Create AccessKey", "A new key", True, event())

    payload = render.slack_payload(plain)

    assert [block["type"] for block in payload["blocks"]] == ["header", "section", "section", "section"]
    assert payload["blocks"][0]["text"]["text"] == "Create AccessKey"
    assert set(render.sns_message(plain)) == {"name", "description", "match", "event"}
    assert set(render.stdout_record(plain)) == {"rule", "description", "eventID", "eventName", "output", "event"}
    assert render.subject(plain) == "Create AccessKey: CreateAccessKey"


def test_sns_ses_and_stdout_carry_the_extensions() -> None:
    alert = titled_alert()

    assert render.subject(alert) == "[HIGH] Key for <!channel> bob"
    message = render.sns_message(alert)
    assert (message["title"], message["severity"], message["tags"], message["runbook"]) == (
        "Key for <!channel> bob",
        "high",
        ["T1098.001"],
        "https://rb.example.com/keys",
    )
    assert render.stdout_record(alert)["severity"] == "high"
    text = render.plain_text(alert)
    assert text.startswith(
        "Key for <!channel> bob\nA new key\nSeverity: high\nRule: Create AccessKey\nTags: T1098.001\n"
    )
    html = render.html_body(alert)
    assert "<h2>Key for &lt;!channel&gt; bob</h2>" in html
    assert '<th align="left">Severity</th><td>high</td>' in html


def test_webhook_record_always_has_the_extension_keys() -> None:
    record = render.webhook_record(Alert("Create AccessKey", "", True, event()))

    assert record["title"] == "Create AccessKey"
    assert record["severity"] is None and record["runbook"] is None and record["tags"] == []


def test_config_enabled_rules_of_an_empty_config() -> None:
    assert Config(rules=(), destinations=()).enabled_rules == ()
