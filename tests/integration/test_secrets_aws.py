"""`ssm:` and `secretsmanager:` references against moto in server mode, through config loading and `validate`."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest

from stream_processor.aws import AwsSettings
from stream_processor.cli import main
from stream_processor.config import load_config
from stream_processor.errors import ConfigError
from stream_processor.secrets import SecretReferenceError, SecretResolver

pytestmark = pytest.mark.integration

HOOK_URL = "https://hooks.example.com/T0/B0/sSmS3cReTpAtH"
ROUTING_KEY = "pDr0uTiNgKeYfRoMsEcReTsMaNaGeR0"
HMAC_KEY = "hMaCkEy-from-secrets-manager"


@pytest.fixture
def names(moto_server: AwsSettings) -> dict[str, str]:
    """A fresh SSM parameter (SecureString) and a JSON secret, unique per test."""
    suffix = uuid.uuid4().hex[:8]
    parameter = f"/stream-processor/{suffix}/hook-url"
    secret = f"stream-processor/{suffix}/alerting"
    moto_server.client("ssm").put_parameter(Name=parameter, Value=HOOK_URL, Type="SecureString")
    moto_server.client("secretsmanager").create_secret(
        Name=secret, SecretString=json.dumps({"routing_key": ROUTING_KEY, "hmac": HMAC_KEY, "port": 443})
    )
    return {"parameter": parameter, "secret": secret}


def write_config(tmp_path: Path, names: dict[str, str], *, parameter: str | None = None, key: str = "hmac") -> Path:
    text = (
        '[[rule]]\nname = "r"\njq_match = "."\ndestinations = ["hook", "pd"]\n'
        f'[[destination]]\nid = "hook"\ntype = "webhook"\nurl = "ssm:{parameter or names["parameter"]}"\n'
        f'hmac_secret = "secretsmanager:{names["secret"]}#{key}"\n'
        f'[[destination]]\nid = "pd"\ntype = "pagerduty"\n'
        f'routing_key = "secretsmanager:{names["secret"]}#routing_key"\n'
    )
    path = tmp_path / "rules.toml"
    path.write_text(text)
    return path


def test_ssm_and_secrets_manager_references_resolve_at_load(
    moto_server: AwsSettings, names: dict[str, str], tmp_path: Path
) -> None:
    config = load_config(str(write_config(tmp_path, names)), moto_server)

    assert config.destination("hook").options == {"url": HOOK_URL, "hmac_secret": HMAC_KEY}
    assert config.destination("pd").options == {"routing_key": ROUTING_KEY}
    assert config.destination("pd").references == {"routing_key": f"secretsmanager:{names['secret']}#routing_key"}


def test_a_whole_secret_string_without_a_key(moto_server: AwsSettings, names: dict[str, str]) -> None:
    moto_server.client("secretsmanager").create_secret(Name=names["secret"] + "-plain", SecretString="plain-t0ken")

    resolver = SecretResolver(moto_server, {})

    assert resolver.resolve(f"secretsmanager:{names['secret']}-plain") == "plain-t0ken"
    assert resolver.resolve(f"secretsmanager:{names['secret']}#port") == "443"


def test_one_fetch_per_secret_until_refresh_then_new_values_are_seen(
    moto_server: AwsSettings, names: dict[str, str], tmp_path: Path
) -> None:
    # GIVEN a resolver kept across loads, as a reloading worker keeps it
    resolver = SecretResolver(moto_server, {})
    path = write_config(tmp_path, names)
    load_config(str(path), moto_server, resolver=resolver)
    assert resolver.fetches == 2  # the SSM parameter, and the secret once for both of its keys

    # WHEN the parameter is rotated
    moto_server.client("ssm").put_parameter(
        Name=names["parameter"], Value="https://hooks.example.com/rotated", Type="SecureString", Overwrite=True
    )

    # THEN a load without refresh keeps the cached value, and one after refresh sees the new one
    assert load_config(str(path), moto_server, resolver=resolver).destination("hook").options["url"] == HOOK_URL
    resolver.refresh()
    rotated = load_config(str(path), moto_server, resolver=resolver)
    assert rotated.destination("hook").options["url"] == "https://hooks.example.com/rotated"


def test_missing_parameter_secret_and_key_are_named_without_values(
    moto_server: AwsSettings, names: dict[str, str], tmp_path: Path
) -> None:
    path = write_config(tmp_path, names, parameter="/stream-processor/absent", key="hmca")

    with pytest.raises(ConfigError) as caught:
        load_config(str(path), moto_server)

    found = caught.value.problems
    assert len(found) == 2
    assert found[0].startswith(f'{path}: destination #1 "hook" (type webhook): url: cannot resolve ')
    assert "ssm:/stream-processor/absent: no such SSM parameter" in found[0]
    assert (
        "hmac_secret: cannot resolve" in found[1]
        and "has no key 'hmca' (its keys: hmac, port, routing_key)" in found[1]
    )
    for problem in found:
        assert ROUTING_KEY not in problem and HMAC_KEY not in problem and "sSmS3cReT" not in problem


def test_a_missing_secret_says_what_to_do(moto_server: AwsSettings) -> None:
    with pytest.raises(SecretReferenceError, match="no such secret in Secrets Manager"):
        SecretResolver(moto_server, {}).resolve("secretsmanager:stream-processor/never-created")


def test_validate_checks_references_exist_and_never_prints_a_value(
    moto_server: AwsSettings, names: dict[str, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    good = write_config(tmp_path, names)
    endpoint = ["--aws-endpoint", str(moto_server.endpoint_url), "--region", "us-east-1"]

    assert main(["validate", str(good), *endpoint]) == 0
    good_output = capsys.readouterr()

    (tmp_path / "bad").mkdir()
    bad = write_config(tmp_path / "bad", names, parameter="/stream-processor/absent")
    assert main(["validate", str(bad), *endpoint]) == 1
    bad_output = capsys.readouterr()

    assert "OK" in good_output.out
    assert "no such SSM parameter" in bad_output.err
    everything = good_output.out + good_output.err + bad_output.out + bad_output.err
    for secret in (HOOK_URL, ROUTING_KEY, HMAC_KEY):
        assert secret not in everything
