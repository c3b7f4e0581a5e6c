"""The roof: the rule file (tattletail's `tattletail.toml` schema plus our extensions), read and validated.

It sits above the stages it validates (destinations say which options they take, the matcher which jq
programs rules may use) and builds the plain `model.Config` they run on. `load` reads a local file or S3
and parses TOML, `validate` reports every problem at once, `messages` words them, `durations` reads
`"10m"`. The rule types themselves live on the floor (`stream_processor.model`) and are re-exported here.
"""

from __future__ import annotations

from stream_processor.config.durations import parse_duration
from stream_processor.config.load import (
    ENV_CONFIG_BUCKET,
    ENV_CONFIG_PATH,
    config_location_from_env,
    load_config,
    parse_config,
    parse_tests_file,
)
from stream_processor.config.validate import (
    ALL_RULE_KEYS,
    DESTINATION_KEYS,
    EXTENSION_RULE_KEYS,
    RENAMED_RULE_KEYS,
    RULE_KEYS,
    SEVERITIES,
    TEST_EXPECTATIONS,
    TEST_KEYS,
    TOP_LEVEL_KEYS,
    sending_problems,
)
from stream_processor.model import Config, DestinationConfig, Rule, RuleTest

__all__ = [
    "ALL_RULE_KEYS",
    "DESTINATION_KEYS",
    "ENV_CONFIG_BUCKET",
    "ENV_CONFIG_PATH",
    "EXTENSION_RULE_KEYS",
    "RENAMED_RULE_KEYS",
    "RULE_KEYS",
    "SEVERITIES",
    "TEST_EXPECTATIONS",
    "TEST_KEYS",
    "TOP_LEVEL_KEYS",
    "Config",
    "DestinationConfig",
    "Rule",
    "RuleTest",
    "config_location_from_env",
    "load_config",
    "parse_config",
    "parse_duration",
    "parse_tests_file",
    "sending_problems",
]
