"""Reading the rule file: from a local path or S3 (`s3://bucket/key`, or tattletail's two variables), then
parsed as TOML and handed to the validator.

Read failures are `ConfigError`s that say what to do (upload it, fix the key, grant s3:GetObject); a denied
read is an `AwsError` with its exit code. Nothing read is echoed back: the file may hold secrets.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import cast

from stream_processor.aws import S3_SCHEME, AwsSettings, split_s3_url
from stream_processor.aws_errors import describe_failure, error_code
from stream_processor.config.messages import one_line, quote, rule_label
from stream_processor.config.validate import ConfigBuilder
from stream_processor.errors import EXIT_AWS_ACCESS, AwsError, ConfigError
from stream_processor.model import Config, RuleTest
from stream_processor.secrets import SecretResolver

ENV_CONFIG_BUCKET = "S3_CONFIG_BUCKET"
ENV_CONFIG_PATH = "S3_CONFIG_PATH"


def config_location_from_env(environ: Mapping[str, str]) -> str | None:
    """tattletail's `S3_CONFIG_BUCKET` + `S3_CONFIG_PATH` as an `s3://bucket/key` location, or None.

    Raises:
        ConfigError: only one of the two is set (tattletail would silently fall back to its bundled file).
    """
    bucket = environ.get(ENV_CONFIG_BUCKET, "").strip()
    key = environ.get(ENV_CONFIG_PATH, "")
    if not bucket and not key:
        return None
    if not bucket or not key:
        present, missing = (ENV_CONFIG_BUCKET, ENV_CONFIG_PATH) if bucket else (ENV_CONFIG_PATH, ENV_CONFIG_BUCKET)
        raise ConfigError(f"{present} is set but {missing} is not: set both (bucket and object key) or neither")
    return f"{S3_SCHEME}{bucket}/{key}"


def load_config(location: str, aws: AwsSettings | None = None, *, resolver: SecretResolver | None = None) -> Config:
    """Read, parse and validate the rule file at a local path or `s3://bucket/key`.

    Secret references in destinations (`env:`, `ssm:`, `secretsmanager:`) are resolved by `resolver`; without
    one, a resolver over `aws` and this process's environment is made when the file has references. A
    reloader keeps its own resolver and calls `resolver.refresh()` before loading again.

    Raises:
        ConfigError: the file cannot be read, or it has problems; `problems` lists every one.
    """
    data = _read_s3(location, aws) if location.startswith(S3_SCHEME) else _read_local(location)
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        line = data.count(b"\n", 0, error.start) + 1
        column = error.start - (data.rfind(b"\n", 0, error.start) + 1) + 1
        raise ConfigError(
            f"{location}: not valid UTF-8 (at line {line}, column {column}): save the rule file as UTF-8 text"
        ) from None
    try:
        return parse_config(text, location, resolver=resolver, aws=aws)
    except ConfigError:
        raise
    except RecursionError:
        raise ConfigError(f"{location}: nested too deeply to be read: simplify the file") from None
    except Exception as error:  # the type only: a message could hold a secret being resolved
        raise ConfigError(f"{location}: could not be loaded ({type(error).__name__}): check the file") from None


def _read_local(location: str) -> bytes:
    path = Path(location).expanduser()
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(
            f"{location}: file not found: check the path (a tattletail.toml, or s3://bucket/key for S3); "
            "examples/seed.toml shows the format"
        ) from None
    except IsADirectoryError:
        raise ConfigError(f"{location}: is a directory: give the rule file inside it (e.g. tattletail.toml)") from None
    except PermissionError:
        raise ConfigError(f"{location}: permission denied: make the file readable by this user") from None
    except OSError as error:
        raise ConfigError(f"{location}: cannot be read ({error.strerror}): check the path") from None


def _read_s3(location: str, aws: AwsSettings | None) -> bytes:
    from botocore.exceptions import BotoCoreError, ClientError  # here: a rule file on disk needs no botocore

    try:
        bucket, key = split_s3_url(location, key_required=True)
    except ValueError:
        raise ConfigError(
            f"{location}: not an S3 location of the form s3://bucket/key: give the bucket and the key"
        ) from None
    client = (aws or AwsSettings()).client("s3")
    try:
        body = client.get_object(Bucket=bucket, Key=key)["Body"]
        return cast(bytes, body.read())
    except ClientError as error:
        code = error_code(error)
        if code in ("NoSuchKey", "404", "NotFound"):
            raise ConfigError(
                f"{location}: no object {key!r} in bucket {bucket!r}: upload the rule file there "
                f"(aws s3 cp tattletail.toml {location}) or fix the key ({ENV_CONFIG_PATH})"
            ) from None
        if code == "NoSuchBucket":
            raise ConfigError(
                f"{location}: bucket {bucket!r} does not exist (or not in this account/endpoint): "
                f"fix the bucket name ({ENV_CONFIG_BUCKET})"
            ) from None
        if code in ("AccessDenied", "403", "Forbidden"):
            raise AwsError(
                f"{location}: access denied: grant s3:GetObject on arn:aws:s3:::{bucket}/{key} to this identity "
                "(and kms:Decrypt when the bucket uses SSE-KMS)",
                EXIT_AWS_ACCESS,
            ) from None
        failure = describe_failure(error)
        if failure is not None and failure.kind != "service":
            raise AwsError(f"{location}: {failure.message}", failure.exit_code) from None
        raise ConfigError(f"{location}: S3 refused the read ({code or 'error'}): {one_line(str(error))}") from None
    except BotoCoreError as error:
        failure = describe_failure(error)
        if failure is not None:
            raise AwsError(f"{location}: {failure.message}", failure.exit_code) from None
        raise ConfigError(
            f"{location}: cannot read from S3 ({type(error).__name__}): {one_line(str(error))}: "
            "check credentials, region and endpoint"
        ) from None


def parse_config(
    text: str, source: str, *, resolver: SecretResolver | None = None, aws: AwsSettings | None = None
) -> Config:
    """Parse and validate a rule file's text; `source` names it in every message.

    Raises:
        ConfigError: the text is not TOML, or it breaks the schema; `problems` lists every problem found.
    """
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"{source}: not valid TOML: {error}: fix the syntax there") from None
    except RecursionError:
        raise ConfigError(f"{source}: not readable TOML: nested too deeply") from None
    return ConfigBuilder(source, resolver, aws).build(document)


def parse_tests_file(text: str, source: str) -> dict[str, tuple[RuleTest, ...]]:
    """Rule tests kept beside a rule file: `[[rule]]` tables with only `name` and `[[rule.test]]`.

    Returns rule name -> its tests, in file order (names are checked against the config by the caller).

    Raises:
        ConfigError: not TOML, or a test breaks the schema; `problems` lists every problem found.
    """
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"{source}: not valid TOML: {error}: fix the syntax there") from None
    builder = ConfigBuilder(source)
    for key in document:
        if key != "rule":
            builder.problem("", f"unknown top-level key {quote(key)}: a tests file holds [[rule]] tables only")
    tests: dict[str, tuple[RuleTest, ...]] = {}
    for index, table in builder.tables(document, "rule"):
        raw_name = table.get("name")
        label = rule_label(index, raw_name if isinstance(raw_name, str) and raw_name else None)
        builder.unknown_keys(label, table, ("name", "test"))
        how = 'add name = "..." (the name of the rule these tests are for)'
        name = builder.string(label, table, "name", how, set())
        found = builder.rule_tests(label, table)
        if name is not None:
            if name in tests:
                builder.problem(label, "the same rule appears twice: put all its [[rule.test]] under one [[rule]]")
            tests[name] = tests.get(name, ()) + found
    if builder.problems:
        raise ConfigError(builder.problems)
    return tests
