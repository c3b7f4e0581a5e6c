"""The Lambda function's limits come from its environment, checked at start."""

from __future__ import annotations

import pytest

from stream_processor.errors import ConfigError
from stream_processor.sources.lambda_runtime import LambdaSettings
from stream_processor.wiring import ENV_RULE_BUDGET_MS

BASE = {"CONFIG_PATH": "tattletail.toml"}


def test_the_rule_budget_is_read_from_the_environment() -> None:
    assert LambdaSettings.from_env(BASE).settings.limits.rule_budget_ms is None  # the default budget
    assert LambdaSettings.from_env({**BASE, ENV_RULE_BUDGET_MS: "80"}).settings.limits.rule_budget_ms == 80.0
    assert LambdaSettings.from_env({**BASE, ENV_RULE_BUDGET_MS: "0"}).settings.limits.rule_budget_ms == 0.0


@pytest.mark.parametrize("value", ["fast", "-5", "inf", "nan"])
def test_a_rule_budget_that_is_not_milliseconds_is_refused(value: str) -> None:
    with pytest.raises(ConfigError, match=ENV_RULE_BUDGET_MS):
        LambdaSettings.from_env({**BASE, ENV_RULE_BUDGET_MS: value})


def test_decode_budgets_are_read_from_the_environment() -> None:
    settings = LambdaSettings.from_env({**BASE, "STREAM_PROCESSOR_MAX_EVENT_BYTES": "512k"}).settings
    assert settings.limits.decode.event_bytes == 512 * 1024
    with pytest.raises(ConfigError, match="STREAM_PROCESSOR_MAX_RECORD_BYTES"):
        LambdaSettings.from_env({**BASE, "STREAM_PROCESSOR_MAX_RECORD_BYTES": "lots"})
