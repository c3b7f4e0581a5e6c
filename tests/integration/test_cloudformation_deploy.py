"""The templates of infra/cloudformation deployed: every stack created in moto's CloudFormation (moto in server mode,
with the resource types its CloudFormation lacks added by tests/support/moto_cfn_models.py), then the S3 Lambda
handler and the ECS consumer's settings run against what the stacks created.

What must hold, read from the deployed stacks (never from the templates' text): the Lambda function and the
consumer task use the state stack's DynamoDB ledger and storm table, its SQS dead-letter queue and its Secrets
Manager secret, and their roles name exactly those resources.
"""

from __future__ import annotations

import gzip
import io
import json
import os
import shlex
import uuid
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import orjson
import pytest
import yaml

from stream_processor.cli import main
from stream_processor.config import load_config
from stream_processor.dead_letters import ALERT
from stream_processor.decode import encode_subscription_record
from stream_processor.dedupe import dedupe_key
from stream_processor.kcl.processor import build_parser, settings_from_args
from stream_processor.local.receiver import SlackReceiver
from stream_processor.model import Position, RawRecord
from stream_processor.sources import lambda_s3
from stream_processor.sources.lambda_runtime import ContainerRuntime
from stream_processor.wiring import Settings, Store, build_pipeline, open_dead_letters
from tests.support.moto_cfn import start_moto_with_cfn

pytestmark = pytest.mark.integration

REPO_ROOT = Path(__file__).resolve().parents[2]
TEMPLATES = REPO_ROOT / "infra" / "cloudformation"
REGION = "us-east-1"
ACCOUNT = "123456789012"  # moto's
FAKE_KEYS = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing", "aws_session_token": "testing"}
CONFIG_BUCKET = "sp-config"
CONFIG_KEY = "stream-processor/tattletail.toml"
CODE_BUCKET = "sp-code"
TRAIL_BUCKET = "sp-org-trail"
MISSING_TOPIC = f"arn:aws:sns:{REGION}:{ACCOUNT}:no-such-topic"


@dataclass
class Deployment:
    endpoint: str
    state: dict[str, str]
    feed: dict[str, str]
    consumer: dict[str, str]
    functions: dict[str, str]
    state_key_arn: str
    receiver: SlackReceiver

    def client(self, service: str) -> Any:
        return boto3.client(service, endpoint_url=self.endpoint, region_name=REGION, **FAKE_KEYS)  # type: ignore[call-overload]


def rule_file(secret_name: str) -> str:
    """A tattletail file whose Slack webhook is the state stack's secret; a second destination always fails."""
    return f"""\
[[rule]]
name = "Create AccessKey"
jq_match = 'select(.eventName == "CreateAccessKey")'
description = "A new access key"
destinations = ["Slack Audit", "Gone SNS"]

[[destination]]
id = "Slack Audit"
type = "slack_webhook"
webhook_url = "secretsmanager:{secret_name}#slack_audit"

[[destination]]
id = "Gone SNS"
type = "sns"
sns_arn = "{MISSING_TOPIC}"
"""


def event(event_id: str) -> dict[str, Any]:
    return {
        "eventVersion": "1.09",
        "eventID": event_id,
        "eventTime": "2026-11-27T01:02:03Z",
        "eventSource": "iam.amazonaws.com",
        "eventName": "CreateAccessKey",
        "awsRegion": REGION,
        "recipientAccountId": ACCOUNT,
        "userIdentity": {"type": "IAMUser", "arn": f"arn:aws:iam::{ACCOUNT}:user/mallory"},
        "requestParameters": {"userName": "backdoor"},
    }


def deploy(cfn: Any, name: str, template: str, parameters: dict[str, str]) -> dict[str, str]:
    """Create the stack; every resource whose condition holds must exist (none skipped), CREATE_COMPLETE."""
    cfn.create_stack(
        StackName=name,
        TemplateBody=(TEMPLATES / template).read_text(encoding="utf-8"),
        Parameters=[{"ParameterKey": key, "ParameterValue": value} for key, value in parameters.items()],
        Capabilities=["CAPABILITY_IAM"],
    )
    (stack,) = cfn.describe_stacks(StackName=name)["Stacks"]
    assert stack["StackStatus"] == "CREATE_COMPLETE", stack.get("StackStatusReason")
    created = {r["LogicalResourceId"]: r for r in cfn.list_stack_resources(StackName=name)["StackResourceSummaries"]}
    assert all(r["ResourceStatus"] == "CREATE_COMPLETE" for r in created.values())
    wanted = expected_resources(template, {**defaults(template), **parameters})
    assert wanted <= set(created), f"{template}: not created: {sorted(wanted - set(created))}"
    return {output["OutputKey"]: output["OutputValue"] for output in stack.get("Outputs", [])}


class _Loader(yaml.SafeLoader):
    pass


_Loader.add_multi_constructor("!", lambda loader, suffix, node: {suffix: None})


def defaults(template: str) -> dict[str, str]:
    document = yaml.load((TEMPLATES / template).read_text(encoding="utf-8"), Loader=_Loader)
    return {name: str(spec.get("Default", "")) for name, spec in document["Parameters"].items()}


def expected_resources(template: str, parameters: dict[str, str]) -> set[str]:
    """The logical ids the stack must have: those without a condition, and those whose simple condition holds."""
    document = yaml.load((TEMPLATES / template).read_text(encoding="utf-8"), Loader=_Loader)
    on = {
        "KinesisFront": parameters.get("DeployKinesisFunction") == "true",
        "S3Front": parameters.get("DeployS3Function") == "true",
        "MakeTrail": parameters.get("CreateTrail") == "true",
    }
    return {
        logical_id
        for logical_id, resource in document["Resources"].items()
        if "Condition" not in resource or on.get(resource["Condition"], True)
    }


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    server = start_moto_with_cfn(tmp_path_factory.mktemp("moto-cfn"))
    receiver = SlackReceiver().start()
    try:
        endpoint = server.url
        client = lambda service: boto3.client(  # noqa: E731
            service, endpoint_url=endpoint, region_name=REGION, **FAKE_KEYS
        )
        s3 = client("s3")
        for bucket in (CONFIG_BUCKET, CODE_BUCKET, TRAIL_BUCKET):
            s3.create_bucket(Bucket=bucket)
        package = io.BytesIO()
        with zipfile.ZipFile(package, "w") as archive:
            archive.writestr("stream_processor/__init__.py", "")
        s3.put_object(Bucket=CODE_BUCKET, Key="stream-processor/lambda.zip", Body=package.getvalue())
        ec2 = client("ec2")
        vpc = ec2.create_vpc(CidrBlock="10.8.0.0/16")["Vpc"]["VpcId"]
        subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.8.1.0/24")["Subnet"]["SubnetId"]
        state_key = client("kms").create_key(Description="state key")["KeyMetadata"]["Arn"]
        topic = client("sns").create_topic(Name="security-alerts")["TopicArn"]
        cfn = client("cloudformation")

        state = deploy(cfn, "sp-state", "state.yaml", {"KmsKeyArn": state_key})
        secret_name = state["WebhookSecretName"]
        client("secretsmanager").put_secret_value(
            SecretId=state["WebhookSecretArn"], SecretString=json.dumps({"slack_audit": receiver.url})
        )
        s3.put_object(Bucket=CONFIG_BUCKET, Key=CONFIG_KEY, Body=rule_file(secret_name).encode())
        trail = {"CreateTrail": "true", "TrailName": "org-trail", "TrailBucketName": TRAIL_BUCKET}
        feed = deploy(cfn, "sp-feed", "feed.yaml", trail)
        shared = {
            "StreamName": feed["StreamName"],
            "StreamKeyId": feed["StreamKeyId"],
            "DedupeTableName": state["DedupeTableName"],
            "StormTableName": state["StormTableName"],
            "DeadLetterQueueArn": state["DeadLetterQueueArn"],
            "StateKmsKeyArn": state["KmsKeyArn"],
            "SecretArns": state["WebhookSecretArn"],
            "ConfigBucket": CONFIG_BUCKET,
            "ConfigKey": CONFIG_KEY,
            "SnsTopicArns": topic,
        }
        consumer = deploy(
            cfn, "sp-consumer", "consumer.yaml",
            {**shared, "ContainerImage": "stream-processor:test", "VpcId": vpc, "SubnetIds": subnet},
        )  # fmt: skip
        functions = deploy(
            cfn, "sp-lambda", "lambda.yaml",
            {**shared, "CodeBucket": CODE_BUCKET, "DeployS3Function": "true", "TrailBucketName": TRAIL_BUCKET,
             "TrailBucketAccountId": "210987654321", "FailedBatchQueueArn": state["FailedBatchQueueArn"]},
        )  # fmt: skip
        yield Deployment(endpoint, state, feed, consumer, functions, state_key, receiver)
    finally:
        receiver.stop()
        server.stop()


@pytest.fixture
def aws_is_moto(deployment: Deployment, monkeypatch: pytest.MonkeyPatch) -> None:
    """What the task or function would see, with moto standing in for AWS (the SDK's own variable)."""
    monkeypatch.setenv("AWS_ENDPOINT_URL", deployment.endpoint)
    for key, value in FAKE_KEYS.items():
        monkeypatch.setenv(key.upper(), value)


def parked_alerts(settings: Settings, event_id: str) -> list[tuple[str, str]]:
    """(destination, eventID) of the alerts of `event_id` parked in the store `settings` name."""
    store = open_dead_letters(settings)
    assert store is not None
    try:
        letters = store.list(kind=ALERT)
    finally:
        store.close()
    found = [(letter.destination_id, letter.alert().event.event_id) for letter in letters]
    return [item for item in found if item[1] == event_id]


def ledger_keys(deployment: Deployment) -> set[str]:
    items = deployment.client("dynamodb").scan(TableName=deployment.state["DedupeTableName"])["Items"]
    return {item["id"]["S"] for item in items}


def storm_windows(deployment: Deployment) -> set[tuple[str, str]]:
    """(rule, destination) of every window in the state stack's storm table that counted an alert sent."""
    items = deployment.client("dynamodb").scan(TableName=deployment.state["StormTableName"])["Items"]
    return {(item["rule"]["S"], item["destination"]["S"]) for item in items if int(item["sent"]["N"]) > 0}


def role_policy_text(deployment: Deployment, role_arn: str) -> str:
    """Every policy of a deployed role, as moto holds them (Refs and Subs resolved), as text to search."""
    iam = deployment.client("iam")
    name = role_arn.rsplit("/", 1)[1]
    texts = [
        json.dumps(iam.get_role_policy(RoleName=name, PolicyName=policy)["PolicyDocument"])
        for policy in iam.list_role_policies(RoleName=name)["PolicyNames"]
    ]
    for attached in iam.list_attached_role_policies(RoleName=name)["AttachedPolicies"]:
        version = iam.get_policy(PolicyArn=attached["PolicyArn"])["Policy"]["DefaultVersionId"]
        texts.append(
            json.dumps(
                iam.get_policy_version(PolicyArn=attached["PolicyArn"], VersionId=version)["PolicyVersion"]["Document"]
            )
        )
    return "\n".join(texts)


# --------------------------------------------------------------------------- the stacks themselves


def test_every_stack_is_created_whole(deployment: Deployment) -> None:
    """(deploy() checked each resource; these are the cross-stack facts.)"""
    assert deployment.state["DeadLetterQueueUrl"].endswith("/stream-processor-dead-letters")
    assert deployment.feed["StreamName"] == "stream-processor-cloudtrail"
    trail = deployment.client("cloudtrail").get_trail(Name="org-trail")["Trail"]
    assert trail["CloudWatchLogsLogGroupArn"].startswith(deployment.feed["TrailLogGroupArn"].removesuffix(":*"))
    (subscription,) = deployment.client("logs").describe_subscription_filters(
        logGroupName="/stream-processor/cloudtrail"
    )["subscriptionFilters"]
    assert subscription["destinationArn"] == deployment.feed["StreamArn"]


def test_the_s3_function_may_be_invoked_by_the_log_archive_accounts_bucket(deployment: Deployment) -> None:
    policy = json.loads(
        deployment.client("lambda").get_policy(FunctionName=deployment.functions["S3FunctionArn"])["Policy"]
    )
    (statement,) = policy["Statement"]
    assert statement["Condition"]["StringEquals"]["AWS:SourceAccount"] == "210987654321"
    assert statement["Condition"]["ArnLike"]["AWS:SourceArn"] == f"arn:aws:s3:::{TRAIL_BUCKET}"


@pytest.mark.parametrize("role_output", ["consumer", "lambda"])
def test_the_roles_name_the_state_stacks_resources(deployment: Deployment, role_output: str) -> None:
    if role_output == "consumer":
        role_arn = deployment.consumer["TaskRoleArn"]
    else:
        function = deployment.client("lambda").get_function_configuration(
            FunctionName=deployment.functions["S3FunctionArn"]
        )
        role_arn = function["Role"]
    text = role_policy_text(deployment, role_arn)
    assert f"table/{deployment.state['DedupeTableName']}" in text
    assert f"table/{deployment.state['StormTableName']}" in text
    assert deployment.state["DeadLetterQueueArn"] in text
    assert deployment.state["WebhookSecretArn"] in text
    assert deployment.state_key_arn in text  # the state key, through DynamoDB, SQS and Secrets Manager


# --------------------------------------------------------------------------- the S3 Lambda function


def test_the_s3_function_uses_the_stacks_ledger_queue_and_secret(
    deployment: Deployment, aws_is_moto: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN the function's environment as the stack configured it
    configuration = deployment.client("lambda").get_function_configuration(
        FunctionName=deployment.functions["S3FunctionArn"]
    )
    assert configuration["Handler"] == "stream_processor.sources.lambda_s3.handler"
    for name, value in configuration["Environment"]["Variables"].items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("AWS_REGION", REGION)
    runtime = ContainerRuntime()
    monkeypatch.setattr(lambda_s3, "RUNTIME", runtime)
    # AND a CloudTrail log file landing in the trail bucket
    event_id = f"s3-{uuid.uuid4()}"
    key = f"AWSLogs/{ACCOUNT}/CloudTrail/{REGION}/2026/11/27/{ACCOUNT}_CloudTrail_{REGION}_20261127T0105Z_a.json.gz"
    body = gzip.compress(orjson.dumps({"Records": [event(event_id)]}))
    deployment.client("s3").put_object(Bucket=TRAIL_BUCKET, Key=key, Body=body)
    posted_before = len(deployment.receiver.delivered)

    # WHEN S3 notifies the function
    notification = {"Records": [{"eventName": "ObjectCreated:Put", "s3": {"bucket": {"name": TRAIL_BUCKET},
                                                                          "object": {"key": key}}}]}  # fmt: skip
    summary = lambda_s3.handler(notification, None)

    # THEN the settings are the stack's own
    settings = runtime.settings(os.environ).settings
    assert settings.ledger == Store("dynamodb", deployment.state["DedupeTableName"])
    assert settings.dead_letters == Store("sqs", deployment.state["DeadLetterQueueUrl"])
    assert settings.storm.store == Store("dynamodb", deployment.state["StormTableName"])
    # AND Slack got the alert through the stack's secret, the failing destination's alert is in the stack's queue
    assert (summary["alerts"], summary["delivered"], summary["parked"]) == (1, 1, 1)
    assert len(deployment.receiver.delivered) == posted_before + 1
    assert parked_alerts(settings, event_id) == [("Gone SNS", event_id)]
    # AND the delivery is recorded in the stack's ledger (the parked one's claim is released: a redrive may send it)
    assert [key for key in ledger_keys(deployment) if event_id in key] == [
        dedupe_key("Create AccessKey", event_id, "Slack Audit")
    ]


# --------------------------------------------------------------------------- the ECS consumer


def test_the_consumer_task_uses_the_stacks_ledger_queue_and_secret(
    deployment: Deployment,
    aws_is_moto: None,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # GIVEN the task definition the stack registered: its command and environment
    family = deployment.consumer["ClusterName"]  # AppName names the cluster and the task family
    (container,) = deployment.client("ecs").describe_task_definition(taskDefinition=family)["taskDefinition"][
        "containerDefinitions"
    ]
    for item in container["environment"]:
        monkeypatch.setenv(item["name"], item["value"])
    command = list(container["command"])
    command[command.index("--work-dir") + 1] = str(tmp_path / "kcl")  # the task's /home/app/kcl
    assert container["healthCheck"]["command"][0] == "CMD"

    # WHEN consume starts with them (up to writing the daemon's properties and the processors' command line)
    assert main([*command, "--print-properties"]) == 0
    properties = dict(
        line.split(" = ", 1) for line in capsys.readouterr().out.splitlines() if " = " in line and line[0] != "#"
    )
    assert properties["streamName"] == deployment.feed["StreamName"]
    wrapper = Path(properties["executableName"]).read_text()
    exec_line = next(line for line in wrapper.splitlines() if line.startswith("exec "))
    processor = shlex.split(exec_line.removeprefix("exec "))
    settings = settings_from_args(build_parser().parse_args(processor[3:]))

    # THEN every record processor uses the state stack's ledger, storm table and queue
    assert settings.ledger == Store("dynamodb", deployment.state["DedupeTableName"])
    assert settings.dead_letters == Store("sqs", deployment.state["DeadLetterQueueUrl"])
    assert settings.storm.store == Store("dynamodb", deployment.state["StormTableName"])
    assert settings.aws.region == REGION

    # AND a batch through the pipeline those settings build claims in that table, parks in that queue, and
    # posts to the webhook the stack's secret holds
    config_location = command[command.index("--config") + 1]
    assert config_location == f"s3://{CONFIG_BUCKET}/{CONFIG_KEY}"
    config = load_config(config_location, settings.aws)
    assert dict(config.destination("Slack Audit").references) == {
        "webhook_url": f"secretsmanager:{deployment.state['WebhookSecretName']}#slack_audit"
    }
    event_id = f"ecs-{uuid.uuid4()}"
    record = RawRecord(encode_subscription_record([event(event_id)]), Position("shardId-000000000000", "1"))
    posted_before = len(deployment.receiver.delivered)
    pipeline = build_pipeline(config, settings, send=True)
    try:
        outcome = pipeline.process_records([record])
    finally:
        pipeline.close()
    assert outcome.complete and len(outcome.parked) == 1
    assert len(deployment.receiver.delivered) == posted_before + 1
    assert [key for key in ledger_keys(deployment) if event_id in key] == [
        dedupe_key("Create AccessKey", event_id, "Slack Audit")
    ]
    assert parked_alerts(settings, event_id) == [("Gone SNS", event_id)]
    # AND its alerts were counted in the stack's storm table, whose windows every task and function shares
    assert ("Create AccessKey", "Slack Audit") in storm_windows(deployment)
