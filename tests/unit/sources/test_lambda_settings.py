"""The Lambda function's rule budget comes from its environment, checked at start."""

from __future__ import annotations

import pytest

from stream_processor.errors import ConfigError
from stream_processor.sources.lambda_runtime import ENV_RULE_BUDGET_MS, LambdaSettings

BASE = {"CONFIG_PATH": "tattletail.toml"}


def test_the_rule_budget_is_read_from_the_environment() -> None:
    assert LambdaSettings.from_env(BASE).rule_budget_ms is None  # the default budget
    assert LambdaSettings.from_env({**BASE, ENV_RULE_BUDGET_MS: "80"}).rule_budget_ms == 80.0
    assert LambdaSettings.from_env({**BASE, ENV_RULE_BUDGET_MS: "0"}).rule_budget_ms == 0.0


@pytest.mark.parametrize("value", ["fast", "-5", "inf", "nan"])
def test_a_rule_budget_that_is_not_milliseconds_is_refused(value: str) -> None:
    with pytest.raises(ConfigError, match=ENV_RULE_BUDGET_MS):
        LambdaSettings.from_env({**BASE, ENV_RULE_BUDGET_MS: value})
