"""Secrets by reference: `env:` resolution, the resolver's cache and refresh, and that values never leak."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from stream_processor.alerts.redact import REDACTOR
from stream_processor.config import parse_config
from stream_processor.errors import ConfigError
from stream_processor.secrets import (
    SecretReference,
    SecretReferenceError,
    SecretResolver,
    UnresolvedSecrets,
    is_reference,
    parse_reference,
)

SOURCE = "rules.toml"
HOOK_URL = "https://hooks.example.com/services/T0/B0/eNvS3cReTvAlUe"


def config_text(**options: str) -> str:
    lines = "".join(f'{key} = "{value}"\n' for key, value in options.items())
    return f'[[destination]]\nid = "hook"\ntype = "webhook"\n{lines}'


def problems_of(text: str, resolver: SecretResolver) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        parse_config(text, SOURCE, resolver=resolver)
    return caught.value.problems


# ---------------------------------------------------------------- parsing references


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("env:HOOK_URL", SecretReference("env", "HOOK_URL", None, "env:HOOK_URL")),
        ("ssm:/alerts/hook", SecretReference("ssm", "/alerts/hook", None, "ssm:/alerts/hook")),
        ("secretsmanager:alerts", SecretReference("secretsmanager", "alerts", None, "secretsmanager:alerts")),
        ("secretsmanager:alerts#pd", SecretReference("secretsmanager", "alerts", "pd", "secretsmanager:alerts#pd")),
    ],
)
def test_references_are_parsed(text: str, expected: SecretReference) -> None:
    assert is_reference(text)
    assert parse_reference(text) == expected


@pytest.mark.parametrize(
    "text", ["env:", "env: X", "ssm:", "ssm:  ", "secretsmanager:", "secretsmanager:#k", "secretsmanager:a#"]
)
def test_malformed_references_are_refused(text: str) -> None:
    with pytest.raises(SecretReferenceError):
        parse_reference(text)


def test_plain_values_are_not_references() -> None:
    for value in (HOOK_URL, "arn:aws:sns:us-east-1:1:t", "a@example.com", "environment:x", "ENV:X"):
        assert not is_reference(value)
        assert SecretResolver(None, {}).resolve(value) == value


# ---------------------------------------------------------------- env: at load


def test_env_references_resolve_at_load_and_record_the_reference() -> None:
    resolver = SecretResolver(None, {"HOOK_URL": HOOK_URL, "HOOK_KEY": "k3y-from-env"})

    config = parse_config(config_text(url="env:HOOK_URL", hmac_secret="env:HOOK_KEY"), SOURCE, resolver=resolver)

    destination = config.destination("hook")
    assert destination.options == {"url": HOOK_URL, "hmac_secret": "k3y-from-env"}
    assert destination.references == {"url": "env:HOOK_URL", "hmac_secret": "env:HOOK_KEY"}
    assert "eNvS3cReT" not in repr(config) and "k3y-from-env" not in repr(config)


def test_references_inside_lists_and_tables_resolve() -> None:
    resolver = SecretResolver(None, {"TO": "oncall@example.com", "TOKEN": "Bearer abc123xyz"})
    text = (
        '[[destination]]\nid = "mail"\ntype = "ses"\nto_emails = ["sec@example.com", "env:TO"]\n'
        'from_email = "alerts@example.com"\n'
        f'[[destination]]\nid = "hook"\ntype = "webhook"\nurl = "{HOOK_URL}"\n'
        'headers = { Authorization = "env:TOKEN", "X-Team" = "security" }\n'
    )

    config = parse_config(text, SOURCE, resolver=resolver)

    assert config.destination("mail").options["to_emails"] == ("sec@example.com", "oncall@example.com")
    assert config.destination("mail").references == {"to_emails[2]": "env:TO"}
    assert config.destination("hook").options["headers"] == {"Authorization": "Bearer abc123xyz", "X-Team": "security"}
    assert config.destination("hook").references == {"headers.Authorization": "env:TOKEN"}


def test_an_unresolvable_reference_names_destination_field_and_reference_never_a_value() -> None:
    resolver = SecretResolver(None, {"EMPTY": "  ", "HOOK_URL": HOOK_URL})
    text = config_text(url="env:MISSING_URL", hmac_secret="env:EMPTY") + (
        '[[destination]]\nid = "pd"\ntype = "pagerduty"\nrouting_key = "env:"\n'
    )

    found = problems_of(text, resolver)

    assert found == [
        f'{SOURCE}: destination #1 "hook" (type webhook): url: cannot resolve env:MISSING_URL: environment variable '
        "MISSING_URL is not set: export it",
        f'{SOURCE}: destination #1 "hook" (type webhook): hmac_secret: cannot resolve env:EMPTY: environment '
        "variable EMPTY is empty: set a value",
        f'{SOURCE}: destination #2 "pd" (type pagerduty): routing_key: cannot resolve env:: not an environment '
        "variable name: write env:NAME",
    ]


def test_a_resolved_value_is_checked_without_being_echoed() -> None:
    resolver = SecretResolver(None, {"HOOK_URL": "not-a-url-but-a-s3cret"})

    (problem,) = problems_of(config_text(url="env:HOOK_URL"), resolver)

    assert "url is not an https:// URL" in problem
    assert "s3cret" not in problem


def test_a_file_without_references_never_makes_a_resolver(monkeypatch: pytest.MonkeyPatch) -> None:
    import stream_processor.secrets as secrets

    def refuse(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("no resolver needed")

    monkeypatch.setattr(secrets.SecretResolver, "__init__", refuse)

    config = parse_config(config_text(url=HOOK_URL), SOURCE)

    assert config.destination("hook").options["url"] == HOOK_URL


def test_without_a_resolver_the_process_environment_is_used(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STREAM_PROCESSOR_TEST_HOOK", HOOK_URL)

    config = parse_config(config_text(url="env:STREAM_PROCESSOR_TEST_HOOK"), SOURCE)

    assert config.destination("hook").options["url"] == HOOK_URL


def test_unresolved_secrets_check_the_form_only() -> None:
    config = parse_config(config_text(url="ssm:/nowhere", hmac_secret="env:NOPE"), SOURCE, resolver=UnresolvedSecrets())

    assert config.destination("hook").options["url"] == UnresolvedSecrets.PLACEHOLDER
    assert problems_of(config_text(url="ssm:"), UnresolvedSecrets())


# ---------------------------------------------------------------- cache, refresh, redaction


class CountingResolver(SecretResolver):
    """SSM stand-in: values from a dict, fetches counted by the base class."""

    def __init__(self, values: dict[str, str], **kwargs: Any) -> None:
        super().__init__(None, {}, **kwargs)
        self.values = values

    def _fetch_ssm(self, reference: SecretReference) -> str:
        if reference.name not in self.values:
            raise SecretReferenceError(f"{reference}: no such SSM parameter")
        return self.values[reference.name]


def test_values_are_cached_until_refresh() -> None:
    resolver = CountingResolver({"/hook": "first-value-111"})

    assert resolver.resolve("ssm:/hook") == "first-value-111"
    resolver.values["/hook"] = "second-value-222"
    assert resolver.resolve("ssm:/hook") == "first-value-111"
    assert resolver.fetches == 1

    resolver.refresh()

    assert resolver.resolve("ssm:/hook") == "second-value-222"
    assert resolver.fetches == 2


def test_a_reload_after_refresh_sees_the_new_value() -> None:
    resolver = CountingResolver({"/hook": "https://one.example.com/a"})
    text = config_text(url="ssm:/hook")
    first = parse_config(text, SOURCE, resolver=resolver)
    resolver.values["/hook"] = "https://two.example.com/b"

    resolver.refresh()
    second = parse_config(text, SOURCE, resolver=resolver)

    assert first.destination("hook").options["url"] == "https://one.example.com/a"
    assert second.destination("hook").options["url"] == "https://two.example.com/b"


def test_max_age_refetches_old_values() -> None:
    now = [0.0]
    resolver = CountingResolver({"/k": "value-aaaaaa"}, max_age=60, clock=lambda: now[0])
    resolver.resolve("ssm:/k")
    now[0] = 30
    resolver.resolve("ssm:/k")
    now[0] = 61
    resolver.resolve("ssm:/k")

    assert resolver.fetches == 2


def test_resolved_values_are_redacted_from_library_logs(caplog: pytest.LogCaptureFixture) -> None:
    resolver = SecretResolver(None, {"TOKEN": "xoxb-redact-me-123"})
    resolver.resolve("env:TOKEN")
    logger = logging.getLogger("urllib3.connectionpool")
    installed_before = REDACTOR in logger.filters  # the product's own filter must stay for later tests
    logger.addFilter(REDACTOR)
    try:
        with caplog.at_level(logging.DEBUG, logger="urllib3.connectionpool"):
            logger.debug("sending header %s", "xoxb-redact-me-123")
    finally:
        if not installed_before:
            logger.removeFilter(REDACTOR)

    assert "xoxb-redact-me-123" not in caplog.text
    assert "<redacted>" in caplog.text


def test_the_resolver_repr_shows_no_value() -> None:
    resolver = CountingResolver({"/k": "value-in-cache-42"})
    resolver.resolve("ssm:/k")

    assert "value-in-cache-42" not in repr(resolver) and "cached=1" in repr(resolver)
