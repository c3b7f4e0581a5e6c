"""The rule file: tattletail's schema loads; every kind of mistake is reported, all at once, readably."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import ClassVar

import pytest

from stream_processor.alerts.destinations.base import Destination, register
from stream_processor.aws import AwsSettings, split_s3_url
from stream_processor.config import (
    RULE_KEYS,
    Config,
    DestinationConfig,
    Rule,
    config_location_from_env,
    load_config,
    parse_config,
)
from stream_processor.errors import ConfigError
from stream_processor.model import Alert
from tests.conftest import REPO_ROOT

SEED = REPO_ROOT / "examples" / "seed.toml"
SOURCE = "rules.toml"
SECRET_URL = "https://hooks.slack.com/services/T000/B000/sEcReTtOkEn"


@register
class _ConfigTestDestination(Destination):
    """A destination type of this test's own, so the generic checks do not hang on the shipped ones."""

    TYPE = "config_test"
    REQUIRED_KEYS: ClassVar[tuple[str, ...]] = ("endpoint",)
    OPTIONAL_KEYS: ClassVar[tuple[str, ...]] = ("channel",)

    def _send(self, alert: Alert) -> None:
        raise NotImplementedError


TEST_DESTINATION = """
[[destination]]
id = "Test"
type = "config_test"
endpoint = "somewhere"
"""


def problems_of(text: str) -> list[str]:
    """The problems parse_config reports for `text` (fails the test when it loads)."""
    with pytest.raises(ConfigError) as caught:
        parse_config(text, SOURCE)
    return caught.value.problems


def rule(body: str) -> str:
    return f"[[rule]]\n{body}\n"


# ---------------------------------------------------------------- what loads


def test_seed_config_loads_unchanged() -> None:
    config = load_config(str(SEED))

    assert config.source == str(SEED)
    assert [r.name for r in config.rules] == ["Create AccessKey", "SSM Start Session"]
    assert [r.index for r in config.rules] == [1, 2]
    assert config.rules[1].jq_match.startswith('select(.eventName == "StartSession") | "username: \\(')
    assert config.rules[0].description == "A new Access Key has been created"
    assert config.rules[0].destinations == ("Slack Audit",)
    assert config.destination("Slack Audit") == DestinationConfig(
        id="Slack Audit", type="slack_webhook", options={"webhook_url": "___YOUR_SLACK_WEBHOOK___"}
    )


def test_seed_file_is_the_design_example_verbatim() -> None:
    design = REPO_ROOT.parent / "shared" / "DESIGN.md"
    if not design.exists():
        pytest.skip("../shared/DESIGN.md is absent (a fresh clone has no ../shared)")
    example = design.read_text().split("```toml\n", 1)[1].split("```", 1)[0]
    assert SEED.read_text() == example


def test_every_shipped_destination_type_validates_with_tattletails_keys() -> None:
    config = parse_config(
        rule('name = "r"\njq_match = "."\ndestinations = ["sns", "slack", "mail", "out"]')
        + '[[destination]]\nid = "sns"\ntype = "sns"\nsns_arn = "arn:aws:sns:us-east-1:123456789012:alerts"\n'
        + f'[[destination]]\nid = "slack"\ntype = "slack_webhook"\nwebhook_url = "{SECRET_URL}"\n'
        + '[[destination]]\nid = "mail"\ntype = "ses"\nto_emails = ["a@example.com", "b@example.com"]\n'
        + 'from_email = "alerts@example.com"\n'
        + '[[destination]]\nid = "out"\ntype = "stdout"\n',
        SOURCE,
    )

    assert config.destination("mail").options == {
        "to_emails": ("a@example.com", "b@example.com"),
        "from_email": "alerts@example.com",
    }
    assert config.destination("sns").options["sns_arn"].endswith(":alerts")
    assert config.destination("out").options == {}


def test_description_and_destinations_are_optional() -> None:
    config = parse_config(rule('name = "r"\njq_match = "true"'), SOURCE)

    assert config.rules == (Rule(name="r", jq_match="true", description="", destinations=(), index=1),)
    assert config.destinations == ()


def test_an_empty_file_is_a_config_without_rules() -> None:
    assert parse_config("", SOURCE) == Config(rules=(), destinations=(), source=SOURCE)


def test_a_utf8_bom_is_accepted(tmp_path: Path) -> None:
    path = tmp_path / "bom.toml"
    path.write_bytes(b"\xef\xbb\xbf" + rule('name = "r"\njq_match = "."').encode())

    assert load_config(str(path)).rules[0].name == "r"


def test_rule_keys_are_tattletails_until_extensions_land() -> None:
    assert set(RULE_KEYS) == {"name", "jq_match", "description", "destinations"}


# ---------------------------------------------------------------- rule problems


def test_missing_jq_match_names_file_rule_and_fix() -> None:
    text = rule('name = "ok"\njq_match = "."') + rule('name = "SSM Start Session"\ndescription = "d"')

    assert problems_of(text) == [
        f"{SOURCE}: rule #2 \"SSM Start Session\": missing jq_match: add jq_match = '...' "
        "(the jq program that selects events, e.g. 'select(.eventName == \"CreateAccessKey\")')"
    ]


def test_missing_name_is_reported_by_index() -> None:
    (problem,) = problems_of(rule('jq_match = "."'))

    assert problem.startswith(f"{SOURCE}: rule #1 (no name): missing name: add name = ")


def test_empty_jq_match_and_name_are_reported() -> None:
    found = problems_of(rule('name = " "\njq_match = ""'))

    assert [p.split(": ")[2] for p in found] == ["name is empty", "jq_match is empty"]


def test_jq_that_does_not_compile_includes_libjqs_message() -> None:
    (problem,) = problems_of(rule('name = "Broken"\njq_match = "select(.eventName =="'))

    assert problem.startswith(f'{SOURCE}: rule #1 "Broken": jq_match does not compile: jq: error: syntax error')
    assert "line 1, column" in problem
    assert problem.endswith("fix the jq program")


def test_jq_with_an_undefined_function_is_reported() -> None:
    (problem,) = problems_of(rule('name = "Typo"\njq_match = "selec(.a)"'))

    assert "jq: error: selec/1 is not defined" in problem


def test_each_rule_that_does_not_compile_is_named_among_many_that_do() -> None:
    # libjq checks the rules of a file in one compile; a failure must still name each rule, and only those.
    rules = [rule(f'name = "r{i}"\njq_match = \'select(.eventName == "E{i}")\'') for i in range(1, 9)]
    rules[2] = rule('name = "r3"\njq_match = "select($nowhere)"')
    rules[6] = rule('name = "r7"\njq_match = "selec(.a)"')

    found = problems_of("".join(rules))

    assert [p.split(": ")[1] for p in found] == ['rule #3 "r3"', 'rule #7 "r7"']
    assert "$nowhere is not defined" in found[0]
    assert "selec/1 is not defined" in found[1]


def test_a_fragment_that_compiles_only_beside_others_is_refused() -> None:
    # `1), (2` is not a program, though `(A), (1), (2)` is: it must not pass inside the file's one compile.
    text = rule('name = "ok"\njq_match = "."') + rule('name = "fragment"\njq_match = "1), (2"')

    (problem,) = problems_of(text)

    assert problem.startswith(f'{SOURCE}: rule #2 "fragment": jq_match does not compile: jq: error: syntax error')


def test_unknown_destination_id_suggests_the_closest() -> None:
    text = rule('name = "r"\njq_match = "."\ndestinations = ["Slack Audt"]') + (
        '[[destination]]\nid = "Slack Audit"\ntype = "config_test"\nendpoint = "e"\n'
    )

    assert problems_of(text) == [
        f'{SOURCE}: rule #1 "r": destination "Slack Audt" is not defined: did you mean "Slack Audit"?'
    ]


def test_unknown_destination_id_without_a_close_match_lists_the_defined_ones() -> None:
    text = rule('name = "r"\njq_match = "."\ndestinations = ["PagerDuty"]') + TEST_DESTINATION

    assert problems_of(text) == [
        f'{SOURCE}: rule #1 "r": destination "PagerDuty" is not defined: use one of "Test" '
        "or add a [[destination]] with that id"
    ]


def test_a_destination_with_problems_still_counts_as_defined_for_rules() -> None:
    text = rule('name = "r"\njq_match = "."\ndestinations = ["Test"]') + '[[destination]]\nid = "Test"\n'

    found = problems_of(text)

    assert len(found) == 1
    assert found[0].startswith(f'{SOURCE}: destination #1 "Test": missing type: add type = "..." (one of: ')


def test_a_destination_listed_twice_in_a_rule() -> None:
    text = rule('name = "r"\njq_match = "."\ndestinations = ["Test", "Test"]') + TEST_DESTINATION

    assert problems_of(text) == [f'{SOURCE}: rule #1 "r": destinations lists "Test" twice: remove the repeat']


def test_duplicate_rule_names() -> None:
    text = (
        rule('name = "Same"\njq_match = "."')
        + rule('name = "Other"\njq_match = "."')
        + rule('name = "Same"\njq_match = "true"')
    )

    assert problems_of(text) == [
        f'{SOURCE}: rule #3 "Same": name is already used by rule #1: rule names must be unique '
        "(alerts and counts are keyed by them), rename one"
    ]


def test_unknown_rule_key_suggests_the_closest_valid_key() -> None:
    (problem,) = problems_of(rule('name = "r"\njq_match = "."\ndescripton = "typo"'))

    assert problem == f'{SOURCE}: rule #1 "r": unknown key "descripton": did you mean "description"?'


def test_misspelled_required_key_is_reported_once_as_did_you_mean() -> None:
    found = problems_of(rule('name = "r"\njq_mach = "."'))

    assert found == [f'{SOURCE}: rule #1 "r": unknown key "jq_mach": did you mean "jq_match"?']


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        (
            'destinations = "Test"',
            'destinations must be a list of destination ids, got a string: write destinations = ["Test"]',
        ),
        ("destinations = 3", "destinations must be a list of destination ids, got an integer"),
        ('destinations = ["Test", 7]', "destinations[2] must be a destination id (a string), got an integer"),
        ("description = 3", "description must be a string, got an integer"),
        ('description = ["a"]', "description must be a string, got an array"),
    ],
)
def test_wrong_value_types_in_a_rule(line: str, expected: str) -> None:
    (problem,) = problems_of(rule(f'name = "r"\njq_match = "."\n{line}') + TEST_DESTINATION)

    assert problem.startswith(f'{SOURCE}: rule #1 "r": {expected}')


def test_name_and_jq_match_of_the_wrong_type() -> None:
    found = problems_of(rule("name = 1\njq_match = true"))

    assert [p.split(": ", 2)[2].split(":")[0] for p in found] == [
        "name must be a string, got an integer",
        "jq_match must be a string, got a boolean",
    ]


def test_a_rule_that_reads_the_environment_is_refused() -> None:
    found = problems_of(rule('name = "Leak"\njq_match = "select(.eventName == $ENV.X) | input"'))

    assert len(found) == 2
    assert found[0].startswith(f'{SOURCE}: rule #1 "Leak": jq_match uses `$ENV`')
    assert found[1].startswith(f'{SOURCE}: rule #1 "Leak": jq_match uses `input`')


def test_a_field_named_env_is_not_refused() -> None:
    config = parse_config(rule('name = "ok"\njq_match = \'select(.requestParameters.env == "input")\''), SOURCE)

    assert config.rules[0].name == "ok"


# ---------------------------------------------------------------- destination problems


def test_duplicate_destination_ids() -> None:
    text = TEST_DESTINATION + TEST_DESTINATION

    assert problems_of(text) == [
        f'{SOURCE}: destination #2 "Test": id is already used by destination #1: ids must be unique, rename one'
    ]


def test_destination_missing_its_required_key() -> None:
    (problem,) = problems_of('[[destination]]\nid = "T"\ntype = "config_test"\nchannel = "c"\n')

    assert problem == (
        f'{SOURCE}: destination #1 "T" (type config_test): missing endpoint (required for type config_test): '
        'add endpoint = "..."'
    )


@pytest.mark.parametrize(
    ("type_name", "keys", "missing"),
    [
        ("slack_webhook", "", ["webhook_url"]),
        ("sns", "", ["sns_arn"]),
        ("ses", 'from_email = "a@example.com"', ["to_emails"]),
        ("ses", "", ["to_emails", "from_email"]),
    ],
)
def test_shipped_destinations_missing_their_keys(type_name: str, keys: str, missing: list[str]) -> None:
    found = problems_of(f'[[destination]]\nid = "D"\ntype = "{type_name}"\n{keys}\n')

    assert [p.split(": ")[2].split(" ")[1] for p in found] == missing
    assert all(p.startswith(f'{SOURCE}: destination #1 "D" (type {type_name}): missing ') for p in found)


def test_unknown_destination_type_suggests_a_shipped_one() -> None:
    (problem,) = problems_of(f'[[destination]]\nid = "D"\ntype = "slak_webhook"\nwebhook_url = "{SECRET_URL}"\n')

    assert problem.startswith(
        f'{SOURCE}: destination #1 "D" (type slak_webhook): unknown destination type "slak_webhook": '
        'did you mean "slack_webhook"? (known types: '
    )
    assert "sns" in problem and "ses" in problem


def test_missing_type_lists_the_known_types() -> None:
    (problem,) = problems_of('[[destination]]\nid = "D"\n')

    assert "missing type" in problem and "slack_webhook" in problem


def test_unknown_destination_key_suggests_the_types_key() -> None:
    (problem,) = problems_of(f'[[destination]]\nid = "D"\ntype = "slack_webhook"\nwebhok_url = "{SECRET_URL}"\n')

    assert (
        problem
        == f'{SOURCE}: destination #1 "D" (type slack_webhook): unknown key "webhok_url": did you mean "webhook_url"?'
    )


def test_a_key_of_another_destination_type_is_unknown() -> None:
    (problem,) = problems_of('[[destination]]\nid = "D"\ntype = "sns"\nsns_arn = "arn"\nfrom_email = "x@example.com"\n')

    assert problem.startswith(f'{SOURCE}: destination #1 "D" (type sns): unknown key "from_email"')


@pytest.mark.parametrize(
    ("keys", "expected"),
    [
        (
            'to_emails = "a@example.com"\nfrom_email = "b@example.com"',
            'to_emails must be a list of strings, got a string: write to_emails = ["..."]',
        ),
        (
            'to_emails = []\nfrom_email = "b@example.com"',
            "to_emails must be a non-empty list of non-empty strings, got an array",
        ),
        ('to_emails = ["a@example.com", 1]\nfrom_email = "b@example.com"', "to_emails must be a non-empty list"),
        ('to_emails = ["a@example.com"]\nfrom_email = 5', "from_email must be a string, got an integer"),
        ('to_emails = ["a@example.com"]\nfrom_email = ""', "from_email is empty"),
    ],
)
def test_wrong_value_types_in_a_destination(keys: str, expected: str) -> None:
    (problem,) = problems_of(f'[[destination]]\nid = "Mail"\ntype = "ses"\n{keys}\n')

    assert problem.startswith(f'{SOURCE}: destination #1 "Mail" (type ses): {expected}')


def test_destination_id_of_the_wrong_type() -> None:
    (problem,) = problems_of('[[destination]]\nid = 3\ntype = "config_test"\nendpoint = "e"\n')

    assert problem.startswith(f"{SOURCE}: destination #1: id must be a string, got an integer")


# ---------------------------------------------------------------- file-level problems


def test_unknown_top_level_key_suggests_the_closest() -> None:
    found = problems_of('[[rules]]\nname = "r"\njq_match = "."\n')

    assert found == [f'{SOURCE}: unknown top-level key "rules": did you mean "rule"?']


def test_single_bracket_table_is_explained() -> None:
    (problem,) = problems_of('[rule]\nname = "r"\njq_match = "."\n')

    assert problem == f"{SOURCE}: rule must be an array of tables: write [[rule]] (double brackets), not [rule]"


def test_toml_syntax_error_gives_line_and_column() -> None:
    (problem,) = problems_of('[[rule]]\nname = "r"\njq_match "."\n')

    assert problem.startswith(f"{SOURCE}: not valid TOML: ")
    assert "(at line 3, column 10)" in problem
    assert problem.endswith("fix the syntax there")


def test_file_not_found_says_what_to_do(tmp_path: Path) -> None:
    missing = tmp_path / "tattletail.toml"

    with pytest.raises(ConfigError) as caught:
        load_config(str(missing))

    assert caught.value.problems == [
        f"{missing}: file not found: check the path (a tattletail.toml, or s3://bucket/key for S3); "
        "examples/seed.toml shows the format"
    ]


def test_a_directory_is_not_a_config(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="is a directory"):
        load_config(str(tmp_path))


def test_invalid_utf8_is_reported(tmp_path: Path) -> None:
    path = tmp_path / "latin1.toml"
    path.write_bytes(rule('name = "caf\xe9"\njq_match = "."').encode("latin-1"))

    with pytest.raises(ConfigError, match=r"not valid UTF-8 \(at line 2, column 12\): save the rule file as UTF-8"):
        load_config(str(path))


def test_every_problem_is_collected_not_just_the_first(tmp_path: Path) -> None:
    # GIVEN a file with one problem of each kind, spread over rules and destinations
    path = tmp_path / "many.toml"
    path.write_text(
        rule(
            'name = "Create AccessKey"\njq_match = \'select(.eventName == "CreateAccessKey")\'\n'
            'destinations = ["Slack"]'
        )
        + rule('name = "SSM Start Session"\njq_match = "select("\nseverty = "high"')
        + rule('description = "no name, no program"')
        + rule('name = "Create AccessKey"\njq_match = "."')
        + f'[[destination]]\nid = "Slack Audit"\ntype = "slack_webhook"\nwebhook_url = "{SECRET_URL}"\n'
        + '[[destination]]\nid = "Slack Audit"\ntype = "sns"\n'
    )

    # WHEN it is loaded
    with pytest.raises(ConfigError) as caught:
        load_config(str(path))

    # THEN every problem is there, in reading order, each naming the file and where
    where = [p.removeprefix(f"{path}: ").split(": ")[0] for p in caught.value.problems]
    assert where == [
        'rule #1 "Create AccessKey"',  # unknown destination "Slack"
        'rule #2 "SSM Start Session"',  # unknown key severity
        'rule #2 "SSM Start Session"',  # jq does not compile
        "rule #3 (no name)",  # missing name
        "rule #3 (no name)",  # missing jq_match
        'rule #4 "Create AccessKey"',  # duplicate name
        'destination #2 "Slack Audit" (type sns)',  # missing sns_arn
        'destination #2 "Slack Audit"',  # duplicate id
    ]
    assert all(p.startswith(f"{path}: ") for p in caught.value.problems)
    assert str(caught.value) == "\n".join(caught.value.problems)


# ---------------------------------------------------------------- secrets


def test_a_webhook_url_never_appears_in_a_message() -> None:
    text = (
        rule('name = "r"\njq_match = "."\ndestinations = ["Slack Audt"]')
        + f'[[destination]]\nid = "Slack Audit"\ntype = "slak_webhook"\nwebhook_url = "{SECRET_URL}"\n'
        + f'[[destination]]\nid = "Slack Audit"\ntype = "slack_webhook"\nwebhok_url = "{SECRET_URL}"\n'
        + f'[[destination]]\nid = "Two"\ntype = "slack_webhook"\nwebhook_url = ["{SECRET_URL}"]\n'
        + f'[[destination]]\nid = "Three"\nwebhook_url = "{SECRET_URL}"\n'
        + f'[[destination]]\nid = "Four"\ntype = "sns"\nwebhook_url = "{SECRET_URL}"\n'
    )

    found = problems_of(text)

    assert len(found) >= 6
    assert not [p for p in found if "sEcReT" in p]


def test_a_loaded_destination_does_not_show_its_webhook_in_repr() -> None:
    config = parse_config(f'[[destination]]\nid = "S"\ntype = "slack_webhook"\nwebhook_url = "{SECRET_URL}"\n', SOURCE)

    assert config.destination("S").options["webhook_url"] == SECRET_URL
    assert "sEcReT" not in repr(config)


# ---------------------------------------------------------------- locations: environment and S3


def test_config_location_from_env_uses_tattletails_variables() -> None:
    environ = {"S3_CONFIG_BUCKET": "my-bucket", "S3_CONFIG_PATH": "config/tattletail.toml"}

    assert config_location_from_env(environ) == "s3://my-bucket/config/tattletail.toml"
    assert config_location_from_env({}) is None


@pytest.mark.parametrize("present", ["S3_CONFIG_BUCKET", "S3_CONFIG_PATH"])
def test_config_location_from_env_refuses_half_a_location(present: str) -> None:
    with pytest.raises(ConfigError, match=f"^{present} is set but S3_CONFIG_"):
        config_location_from_env({present: "x"})


def test_s3_keys_are_kept_verbatim() -> None:
    assert split_s3_url("s3://b/dir/tattletail.toml", key_required=True) == ("b", "dir/tattletail.toml")
    assert split_s3_url("s3://b//leading-slash.toml", key_required=True) == ("b", "/leading-slash.toml")
    with pytest.raises(ConfigError, match="s3://bucket/key"):
        load_config("s3://only-bucket")


@pytest.fixture(scope="module")
def config_bucket(moto_server: AwsSettings) -> str:
    bucket = f"config-{uuid.uuid4().hex[:12]}"
    s3 = moto_server.client("s3")
    s3.create_bucket(Bucket=bucket)
    s3.put_object(Bucket=bucket, Key="rules/tattletail.toml", Body=SEED.read_bytes())
    s3.put_object(Bucket=bucket, Key="rules/broken.toml", Body=rule('name = "r"').encode())
    return bucket


@pytest.mark.integration
def test_load_from_s3(moto_server: AwsSettings, config_bucket: str) -> None:
    location = f"s3://{config_bucket}/rules/tattletail.toml"

    config = load_config(location, moto_server)

    assert config.source == location
    assert [r.name for r in config.rules] == ["Create AccessKey", "SSM Start Session"]


@pytest.mark.integration
def test_load_from_tattletails_environment_variables(moto_server: AwsSettings, config_bucket: str) -> None:
    environ = {"S3_CONFIG_BUCKET": config_bucket, "S3_CONFIG_PATH": "rules/tattletail.toml"}
    location = config_location_from_env(environ)
    assert location is not None

    assert len(load_config(location, moto_server).rules) == 2


@pytest.mark.integration
def test_problems_in_an_s3_file_name_the_s3_location(moto_server: AwsSettings, config_bucket: str) -> None:
    location = f"s3://{config_bucket}/rules/broken.toml"

    with pytest.raises(ConfigError) as caught:
        load_config(location, moto_server)

    assert caught.value.problems[0].startswith(f'{location}: rule #1 "r": missing jq_match')


@pytest.mark.integration
def test_missing_s3_object_says_what_to_do(moto_server: AwsSettings, config_bucket: str) -> None:
    location = f"s3://{config_bucket}/rules/absent.toml"

    with pytest.raises(ConfigError) as caught:
        load_config(location, moto_server)

    assert caught.value.problems == [
        f"{location}: no object 'rules/absent.toml' in bucket '{config_bucket}': upload the rule file there "
        f"(aws s3 cp tattletail.toml {location}) or fix the key (S3_CONFIG_PATH)"
    ]


@pytest.mark.integration
def test_missing_s3_bucket_says_what_to_do(moto_server: AwsSettings) -> None:
    with pytest.raises(ConfigError, match=r"bucket 'no-such-bucket-x1' does not exist .*S3_CONFIG_BUCKET"):
        load_config("s3://no-such-bucket-x1/tattletail.toml", moto_server)


@pytest.mark.parametrize(
    ("url", "problem"),
    [("s3:/b/k", "is not an s3:// URL"), ("s3:///k", "names no bucket"), ("s3://b", "names no object key")],
)
def test_split_s3_url_says_what_is_wrong(url: str, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        split_s3_url(url, key_required=True)


def test_an_s3_prefix_may_be_empty() -> None:
    assert split_s3_url("s3://bucket") == ("bucket", "")
    assert split_s3_url("s3://bucket/AWSLogs/") == ("bucket", "AWSLogs/")
