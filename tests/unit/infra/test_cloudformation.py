"""Structure checks on infra/cloudformation/*.yaml: the IAM policies name what they need and nothing wider.

cfn-lint (run by `make lint`) checks that the templates are valid CloudFormation; these tests check what
cfn-lint cannot know: that the consumer's role can do its job, that no identity policy grants `*` on a
resource that could be named, and that the Lambda wiring matches the handlers in the package.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import re
import shlex
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import yaml

from tests.conftest import REPO_ROOT

TEMPLATES = REPO_ROOT / "infra" / "cloudformation"
TEMPLATE_NAMES = ("feed.yaml", "consumer.yaml", "state.yaml", "lambda.yaml")

# Actions that IAM cannot scope to a resource, each with why "*" is the only choice.
ACTIONS_WITHOUT_RESOURCES: dict[str, str] = {
    "cloudwatch:PutMetricData": "CloudWatch metrics have no ARN; scoped instead by a cloudwatch:namespace condition",
    "ecr:GetAuthorizationToken": "an account-wide registry login token; ECR has no resource to name for it",
}
# Conditions that must accompany a "*" resource for the action to count as scoped.
REQUIRED_CONDITION_KEYS: dict[str, str] = {"cloudwatch:PutMetricData": "cloudwatch:namespace"}
# Resource types whose policies are resource-based: there "*" means the resource itself, not every resource.
RESOURCE_POLICY_TYPES: dict[str, str] = {
    "AWS::KMS::Key": "a key policy's Resource '*' is the key itself",
    "AWS::SQS::QueuePolicy": "attached to the queue it names",
}


# --------------------------------------------------------------------------- loading


class _TemplateLoader(yaml.SafeLoader):
    """YAML with CloudFormation's short intrinsic tags (!Ref, !Sub, !GetAtt, !If, ...) as their long forms."""


def _intrinsic(loader: _TemplateLoader, tag_suffix: str, node: yaml.Node) -> dict[str, Any]:
    value: Any
    if isinstance(node, yaml.ScalarNode):
        value = loader.construct_scalar(node)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)  # type: ignore[arg-type]
    if tag_suffix == "Ref":
        return {"Ref": value}
    if tag_suffix == "Condition":
        return {"Condition": value}
    if tag_suffix == "GetAtt" and isinstance(value, str):
        value = value.split(".", 1)
    return {f"Fn::{tag_suffix}": value}


_TemplateLoader.add_multi_constructor("!", _intrinsic)


def load_template(name: str) -> dict[str, Any]:
    document = yaml.load((TEMPLATES / name).read_text(encoding="utf-8"), Loader=_TemplateLoader)
    assert isinstance(document, dict), f"{name} is not a YAML mapping"
    return document


@pytest.fixture(scope="module", params=TEMPLATE_NAMES)
def template(request: pytest.FixtureRequest) -> tuple[str, dict[str, Any]]:
    return request.param, load_template(request.param)


# --------------------------------------------------------------------------- walking policies


@dataclass(frozen=True)
class Statement:
    where: str
    effect: str
    actions: tuple[str, ...]
    resources: tuple[str, ...]
    condition: dict[str, Any]


def _branches(value: Any) -> Iterator[Any]:
    """Every value an Fn::If may take (both branches), without AWS::NoValue."""
    if isinstance(value, dict) and "Fn::If" in value:
        _, when_true, when_false = value["Fn::If"]
        yield from _branches(when_true)
        yield from _branches(when_false)
    elif value == {"Ref": "AWS::NoValue"}:
        return
    else:
        yield value


def render(value: Any) -> str:
    """An intrinsic as the string it stands for, with ${Name} placeholders (enough to compare ARNs)."""
    if isinstance(value, str):
        return value
    if isinstance(value, dict) and len(value) == 1:
        (key, inner), = value.items()
        if key == "Ref":
            return f"${{{inner}}}"
        if key == "Fn::Sub":
            return inner if isinstance(inner, str) else str(inner[0])
        if key == "Fn::GetAtt":
            return f"${{{'.'.join(inner)}}}"
    raise AssertionError(f"cannot render {value!r}")


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _statements(where: str, document: dict[str, Any]) -> Iterator[Statement]:
    for raw in _as_list(document.get("Statement", [])):
        for statement in _branches(raw):
            yield Statement(
                where=where,
                effect=statement["Effect"],
                actions=tuple(_as_list(statement.get("Action", []))),
                resources=tuple(render(r) for r in _as_list(statement.get("Resource", []))),
                condition=statement.get("Condition", {}),
            )


def identity_statements(document: dict[str, Any]) -> Iterator[Statement]:
    """Statements of every identity policy in a template (role inline policies and managed policies)."""
    for logical_id, resource in document.get("Resources", {}).items():
        properties = resource.get("Properties", {})
        if resource["Type"] == "AWS::IAM::Role":
            for raw in properties.get("Policies", []):
                for policy in _branches(raw):
                    yield from _statements(f"{logical_id}/{policy['PolicyName']}", policy["PolicyDocument"])
        elif resource["Type"] in ("AWS::IAM::ManagedPolicy", "AWS::IAM::Policy"):
            yield from _statements(logical_id, properties["PolicyDocument"])


def role_statements(document: dict[str, Any], role: str) -> list[Statement]:
    """Everything a role may do: its inline policies plus the template's managed policies attached to it."""
    properties = document["Resources"][role]["Properties"]
    found = [s for s in identity_statements(document) if s.where.startswith(f"{role}/")]
    for arn in properties.get("ManagedPolicyArns", []):
        assert isinstance(arn, dict) and "Ref" in arn, f"{role} attaches a managed policy from outside the template"
        found.extend(s for s in identity_statements(document) if s.where == arn["Ref"])
    return found


def grants(statements: list[Statement], action: str) -> list[Statement]:
    return [s for s in statements if s.effect == "Allow" and action in s.actions]


def resources_for(statements: list[Statement], action: str) -> set[str]:
    return {r for s in grants(statements, action) for r in s.resources}


# --------------------------------------------------------------------------- every template


def test_template_parses_as_cloudformation(template: tuple[str, dict[str, Any]]) -> None:
    name, document = template
    assert document["AWSTemplateFormatVersion"] == "2010-09-09", name
    assert document["Resources"], f"{name} has no resources"
    assert document.get("Description"), f"{name} has no Description"


def test_no_star_resource_where_one_can_be_named(template: tuple[str, dict[str, Any]]) -> None:
    name, document = template
    for statement in identity_statements(document):
        if statement.effect != "Allow" or "*" not in statement.resources:
            continue
        for action in statement.actions:
            assert action in ACTIONS_WITHOUT_RESOURCES, (
                f"{name} {statement.where}: {action} on Resource '*' but it can be scoped to a resource"
            )
            needed = REQUIRED_CONDITION_KEYS.get(action)
            if needed:
                keys = {key for operator in statement.condition.values() for key in operator}
                assert needed in keys, f"{name} {statement.where}: {action} on '*' without a {needed} condition"


def test_no_wildcard_actions_in_identity_policies(template: tuple[str, dict[str, Any]]) -> None:
    name, document = template
    for statement in identity_statements(document):
        for action in statement.actions:
            assert "*" not in action, f"{name} {statement.where}: wildcard action {action}"


def test_resource_policies_with_star_are_only_the_known_kinds(template: tuple[str, dict[str, Any]]) -> None:
    name, document = template
    for logical_id, resource in document["Resources"].items():
        properties = resource.get("Properties", {})
        policy = properties.get("KeyPolicy") or (
            properties.get("PolicyDocument") if resource["Type"].endswith("QueuePolicy") else None
        )
        if policy is None:
            continue
        assert resource["Type"] in RESOURCE_POLICY_TYPES, f"{name} {logical_id}: unexpected resource policy"
        if resource["Type"] == "AWS::SQS::QueuePolicy":
            for statement in _statements(logical_id, policy):
                assert statement.effect == "Deny" or "*" not in statement.resources, (
                    f"{name} {logical_id}: a queue policy allowing '*'"
                )


def test_every_service_role_trust_names_one_service(template: tuple[str, dict[str, Any]]) -> None:
    name, document = template
    for logical_id, resource in document["Resources"].items():
        if resource["Type"] != "AWS::IAM::Role":
            continue
        for statement in _as_list(resource["Properties"]["AssumeRolePolicyDocument"]["Statement"]):
            principal = statement["Principal"]
            assert set(principal) == {"Service"}, f"{name} {logical_id}: trust principal {principal}"
            assert isinstance(principal["Service"], str), f"{name} {logical_id}: trusts several services"


# --------------------------------------------------------------------------- consumer


# KCL 3.x's tables: the lease table (named after the application), its coordinator state and worker metrics.
KCL_TABLES = ("table/${AppName}", "table/${AppName}-CoordinatorState", "table/${AppName}-WorkerMetricStats")
CONSUMER_NEEDS: dict[str, tuple[str, ...]] = {
    # action: substrings the resource must contain (each one must be granted)
    "kinesis:GetRecords": ("stream/${StreamName}",),
    "kinesis:GetShardIterator": ("stream/${StreamName}",),
    "kinesis:DescribeStream": ("stream/${StreamName}",),
    "kinesis:DescribeStreamSummary": ("stream/${StreamName}",),
    "kinesis:ListShards": ("stream/${StreamName}",),
    "kms:Decrypt": ("key/${StreamKeyId}",),
    "dynamodb:CreateTable": KCL_TABLES,
    "dynamodb:DescribeTable": KCL_TABLES,
    "dynamodb:UpdateTable": ("table/${AppName}",),
    "dynamodb:Query": ("table/${AppName}/index/*",),
    "dynamodb:Scan": (*KCL_TABLES, "table/${StormTableName}"),
    "dynamodb:UpdateItem": (*KCL_TABLES, "table/${StormTableName}"),
    "dynamodb:GetItem": (*KCL_TABLES, "table/${DedupeTableName}", "table/${StormTableName}"),
    "dynamodb:PutItem": (*KCL_TABLES, "table/${DedupeTableName}"),
    "dynamodb:DeleteItem": (*KCL_TABLES, "table/${DedupeTableName}", "table/${StormTableName}"),
    "cloudwatch:PutMetricData": ("*",),
    "s3:GetObject": ("${ConfigBucket}/${ConfigKey}",),
    "secretsmanager:GetSecretValue": ("${SecretArns}",),
    "ssm:GetParameter": ("parameter/${SsmParameterPath}*",),
    "sns:Publish": ("${SnsTopicArns}",),
    "ses:SendEmail": ("${SesIdentityArns}",),
    "sqs:SendMessage": ("${DeadLetterQueueArn}",),
}


@pytest.mark.parametrize("action", sorted(CONSUMER_NEEDS))
def test_consumer_task_role_can_do_its_job(action: str) -> None:
    statements = role_statements(load_template("consumer.yaml"), "TaskRole")
    resources = resources_for(statements, action)
    for needed in CONSUMER_NEEDS[action]:
        assert any(r == needed or r.endswith(needed) for r in resources), (
            f"TaskRole lacks {action} on ...{needed} (has {sorted(resources)})"
        )


def test_consumer_table_grants_are_exact_table_names() -> None:
    """`table/${AppName}*` would also match other applications' tables: each KCL table is named in full."""
    statements = role_statements(load_template("consumer.yaml"), "TaskRole")
    for statement in statements:
        for resource in statement.resources:
            if ":dynamodb:" in resource:
                assert re.search(r"table/[^*]+(/index/\*)?$", resource), f"{statement.where}: {resource}"


def test_consumer_does_not_use_enhanced_fan_out() -> None:
    statements = role_statements(load_template("consumer.yaml"), "TaskRole")
    for action in ("kinesis:SubscribeToShard", "kinesis:RegisterStreamConsumer", "kinesis:PutRecord"):
        assert not grants(statements, action), f"TaskRole grants {action}, which a POLLING consumer never calls"


def test_consumer_metrics_are_limited_to_the_kcl_namespace() -> None:
    statements = role_statements(load_template("consumer.yaml"), "TaskRole")
    (statement,) = grants(statements, "cloudwatch:PutMetricData")
    assert statement.condition == {"StringEquals": {"cloudwatch:namespace": {"Ref": "AppName"}}}


def test_consumer_autoscaling_is_capped_by_max_tasks() -> None:
    resources = load_template("consumer.yaml")["Resources"]
    target = resources["ScalableTarget"]["Properties"]
    assert target["MaxCapacity"] == {"Ref": "MaxTasks"}
    assert target["MinCapacity"] == {"Ref": "DesiredCount"}
    policy = resources["CpuScaling"]["Properties"]
    assert policy["ScalingTargetId"] == {"Ref": "ScalableTarget"}


def test_consumer_container_runs_consume_as_non_root() -> None:
    container = load_template("consumer.yaml")["Resources"]["TaskDefinition"]["Properties"]["ContainerDefinitions"][0]
    assert container["Command"][0] == "consume"
    assert container["User"] not in ("0", "root")
    env = {item["Name"]: item["Value"] for raw in container["Environment"] for item in _branches(raw)}
    assert env["S3_CONFIG_BUCKET"] == {"Ref": "ConfigBucket"}
    assert env["S3_CONFIG_PATH"] == {"Ref": "ConfigKey"}


def test_consumer_command_is_accepted_by_the_cli() -> None:
    """The flags in the task definition must be ones `stream-processor consume` knows."""
    if importlib.util.find_spec("stream_processor.commands.consume") is None:
        pytest.skip("stream_processor/commands/consume.py does not exist yet")
    consume = importlib.import_module("stream_processor.commands.consume")
    parser = argparse.ArgumentParser(prog="stream-processor")
    consume.add_parser(parser.add_subparsers(dest="command", required=True))
    container = load_template("consumer.yaml")["Resources"]["TaskDefinition"]["Properties"]["ContainerDefinitions"][0]
    parameter_values = {"${InitialPosition}": "LATEST", "${AWS::Region}": "eu-west-1"}
    argv = [parameter_values.get(render(item), render(item)) for item in container["Command"]]
    try:
        parser.parse_args(argv)
    except SystemExit as error:
        pytest.fail(f"`stream-processor {shlex.join(argv)}` is refused by the CLI (exit {error.code})")


# --------------------------------------------------------------------------- feed


def test_feed_subscription_role_trust_is_limited_to_this_account() -> None:
    role = load_template("feed.yaml")["Resources"]["SubscriptionRole"]["Properties"]
    (statement,) = role["AssumeRolePolicyDocument"]["Statement"]
    assert statement["Principal"] == {"Service": "logs.amazonaws.com"}
    condition = statement["Condition"]
    assert condition["StringEquals"]["aws:SourceAccount"] == {"Ref": "AWS::AccountId"}
    assert "logs:${AWS::Region}:${AWS::AccountId}:" in render(condition["StringLike"]["aws:SourceArn"])


def test_feed_subscription_role_may_only_put_into_the_stream() -> None:
    document = load_template("feed.yaml")
    statements = role_statements(document, "SubscriptionRole")
    assert {a for s in statements for a in s.actions} == {"kinesis:PutRecord", "kms:GenerateDataKey"}
    assert resources_for(statements, "kinesis:PutRecord") == {"${Stream.Arn}"}
    assert resources_for(statements, "kms:GenerateDataKey") == {"${StreamKey.Arn}"}
    subscription = document["Resources"]["SubscriptionFilter"]["Properties"]
    assert subscription["DestinationArn"] == {"Fn::GetAtt": ["Stream", "Arn"]}
    assert subscription["RoleArn"] == {"Fn::GetAtt": ["SubscriptionRole", "Arn"]}


def test_feed_stream_is_kms_encrypted_and_mode_is_a_parameter() -> None:
    stream = load_template("feed.yaml")["Resources"]["Stream"]["Properties"]
    assert stream["StreamEncryption"] == {"EncryptionType": "KMS", "KeyId": {"Fn::GetAtt": ["StreamKey", "Arn"]}}
    assert stream["StreamModeDetails"] == {"StreamMode": {"Ref": "StreamMode"}}


def test_feed_trail_role_writes_only_its_log_group() -> None:
    statements = role_statements(load_template("feed.yaml"), "TrailCloudWatchLogsRole")
    for action in ("logs:CreateLogStream", "logs:PutLogEvents"):
        (resource,) = resources_for(statements, action)
        assert resource.endswith("log-group:${TrailLogGroup}:log-stream:*")


# --------------------------------------------------------------------------- state


def test_state_dedupe_table_matches_the_dynamodb_store() -> None:
    """The table's key and TTL attribute are the ones DynamoDBDedupeStore writes."""
    from stream_processor.dedupe import DynamoDBDedupeStore, LedgerRecord, Status

    item = DynamoDBDedupeStore._item(LedgerRecord("k", Status.COMPLETED, "owner", 1.0, 1.0))
    table = load_template("state.yaml")["Resources"]["DedupeTable"]["Properties"]
    (key,) = table["KeySchema"]
    assert key["KeyType"] == "HASH" and key["AttributeName"] in item
    assert item[key["AttributeName"]].keys() == {"S"}
    ttl = table["TimeToLiveSpecification"]
    assert ttl["Enabled"] is True
    assert item[ttl["AttributeName"]].keys() == {"N"}, "the TTL attribute must be a number (epoch seconds)"


class RecordingDynamoDB:
    """A DynamoDB client that records the calls DynamoDBStormStore makes (each update succeeds)."""

    def __init__(self) -> None:
        self.updates: list[dict[str, Any]] = []

    def update_item(self, **kwargs: Any) -> dict[str, Any]:
        self.updates.append(kwargs)
        return {}


def test_state_storm_table_matches_the_dynamodb_store() -> None:
    """The table's key and TTL attribute are the ones DynamoDBStormStore writes; kept like the ledger's table."""
    from stream_processor.alerts.storm import DynamoDBStormStore
    from stream_processor.model import Alert, CloudTrailEvent, Position

    client = RecordingDynamoDB()
    store = DynamoDBStormStore(client, "sp-storm")  # type: ignore[arg-type]
    store.admit(Alert("r", "", True, CloudTrailEvent(b"{}", {}, Position("s"))), "slack")
    (update,) = client.updates
    resource = load_template("state.yaml")["Resources"]["StormTable"]
    table = resource["Properties"]
    (key,) = table["KeySchema"]
    assert key["KeyType"] == "HASH" and update["Key"].keys() == {key["AttributeName"]}
    assert update["Key"][key["AttributeName"]].keys() == {"S"}
    ttl = table["TimeToLiveSpecification"]
    assert ttl["Enabled"] is True
    assert ttl["AttributeName"] in update["ExpressionAttributeNames"].values()
    assert update["ExpressionAttributeValues"][":exp"].keys() == {"N"}, "the TTL attribute must be epoch seconds"
    ledger = load_template("state.yaml")["Resources"]["DedupeTable"]
    for same in ("DeletionPolicy", "UpdateReplacePolicy"):
        assert resource[same] == ledger[same]
    for same in ("BillingMode", "SSESpecification", "PointInTimeRecoverySpecification"):
        assert table[same] == ledger["Properties"][same]


@pytest.mark.parametrize("template_name", ["consumer.yaml", "lambda.yaml"])
def test_the_storm_table_is_optional_and_named_by_the_state_stacks_output(template_name: str) -> None:
    parameter = load_template(template_name)["Parameters"]["StormTableName"]
    assert parameter["Default"] == "" and "StormTableName" in parameter["Description"]
    assert "StormTableName" in load_template("state.yaml")["Outputs"]


@pytest.mark.parametrize("role", ["S3FunctionRole", "KinesisFunctionRole"])
def test_lambda_functions_may_fold_storms_in_the_storm_table_only(role: str) -> None:
    statements = role_statements(load_template("lambda.yaml"), role)
    table = "arn:${AWS::Partition}:dynamodb:${AWS::Region}:${AWS::AccountId}:table/${StormTableName}"
    storm = [s for s in statements if table in s.resources]
    assert {action for s in storm for action in s.actions} == {
        "dynamodb:GetItem", "dynamodb:UpdateItem", "dynamodb:DeleteItem", "dynamodb:Scan"
    }  # fmt: skip
    assert all(s.resources == (table,) for s in storm)
    assert resources_for(statements, "dynamodb:Scan") == {table}  # no other table may be scanned


@pytest.mark.parametrize("function", ["KinesisFunction", "S3Function"])
def test_lambda_functions_fold_into_the_storm_table(function: str) -> None:
    variables = load_template("lambda.yaml")["Resources"][function]["Properties"]["Environment"]["Variables"]
    assert variables["STREAM_PROCESSOR_STORM_TABLE"] == {"Ref": "StormTableName"}  # empty: not read


@pytest.mark.parametrize("queue_id", ["DeadLetterQueue", "FailedBatchQueue"])
def test_state_queues_are_encrypted(queue_id: str) -> None:
    queue = load_template("state.yaml")["Resources"][queue_id]["Properties"]
    assert queue["SqsManagedSseEnabled"] == {"Fn::If": ["UseCustomerKey", {"Ref": "AWS::NoValue"}, True]}
    assert queue["KmsMasterKeyId"] == {"Fn::If": ["UseCustomerKey", {"Ref": "KmsKeyArn"}, {"Ref": "AWS::NoValue"}]}


# --------------------------------------------------------------------------- lambda


def test_lambda_event_source_mapping_never_drops_a_batch_silently() -> None:
    mapping = load_template("lambda.yaml")["Resources"]["KinesisEventSourceMapping"]["Properties"]
    assert mapping["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert mapping["BisectBatchOnFunctionError"] is True
    assert mapping["MaximumRetryAttempts"] == {"Ref": "MaximumRetryAttempts"}
    assert mapping["BatchSize"] == {"Ref": "BatchSize"}
    assert mapping["DestinationConfig"] == {"OnFailure": {"Destination": {"Ref": "FailedBatchQueueArn"}}}


@pytest.mark.parametrize("function", ["KinesisFunction", "S3Function"])
def test_lambda_handlers_exist_in_the_package(function: str) -> None:
    handler = load_template("lambda.yaml")["Resources"][function]["Properties"]["Handler"]
    module_name, _, attribute = handler.rpartition(".")
    module = importlib.import_module(module_name)
    assert callable(getattr(module, attribute)), f"{handler} is not a function"


def test_lambda_s3_invocation_is_limited_to_the_trail_bucket() -> None:
    resources = load_template("lambda.yaml")["Resources"]
    permission = resources["S3InvokePermission"]["Properties"]
    assert permission["Principal"] == "s3.amazonaws.com"
    assert render(permission["SourceArn"]).endswith(":s3:::${TrailBucketName}")
    # the bucket owner's account: this one, or the log archive account that owns the trail bucket
    assert permission["SourceAccount"] == {
        "Fn::If": ["TrailInOtherAccount", {"Ref": "TrailBucketAccountId"}, {"Ref": "AWS::AccountId"}]
    }
    invoke = resources["S3FunctionInvokeConfig"]["Properties"]
    assert invoke["DestinationConfig"] == {"OnFailure": {"Destination": {"Ref": "FailedBatchQueueArn"}}}


def test_lambda_s3_function_reads_only_trail_files() -> None:
    statements = role_statements(load_template("lambda.yaml"), "S3FunctionRole")
    assert resources_for(statements, "s3:GetObject") == {
        "arn:${AWS::Partition}:s3:::${TrailBucketName}/${TrailKeyPrefix}*",
        "arn:${AWS::Partition}:s3:::${ConfigBucket}/${ConfigKey}",
    }


def test_lambda_kinesis_function_can_poll_and_park() -> None:
    statements = role_statements(load_template("lambda.yaml"), "KinesisFunctionRole")
    for action in ("kinesis:GetRecords", "kinesis:GetShardIterator", "kinesis:DescribeStream",
                   "kinesis:DescribeStreamSummary", "kinesis:ListShards"):
        assert resources_for(statements, action) == {
            "arn:${AWS::Partition}:kinesis:${AWS::Region}:${AWS::AccountId}:stream/${StreamName}"
        }, action
    assert resources_for(statements, "sqs:SendMessage") == {"${DeadLetterQueueArn}", "${FailedBatchQueueArn}"}
    assert resources_for(statements, "kms:Decrypt") == {
        "arn:${AWS::Partition}:kms:${AWS::Region}:${AWS::AccountId}:key/${StreamKeyId}",
        "${StateKmsKeyArn}",
        "${ConfigBucketKmsKeyArn}",
        "${SsmKmsKeyArn}",
        "${SnsKmsKeyArns}",
    }


# --------------------------------------------------------------------------- customer managed keys and options


# (key parameter, actions the service needs from the caller, the services it may be used through)
KEY_GRANTS = (
    ("StateKmsKeyArn", {"kms:Decrypt", "kms:GenerateDataKey"}, {"dynamodb", "sqs", "secretsmanager"}),
    ("ConfigBucketKmsKeyArn", {"kms:Decrypt"}, {"s3"}),
    ("SsmKmsKeyArn", {"kms:Decrypt"}, {"ssm"}),
    ("SnsKmsKeyArns", {"kms:Decrypt", "kms:GenerateDataKey"}, {"sns"}),
)


@pytest.mark.parametrize(("template_name", "role"), [("consumer.yaml", "TaskRole"), ("lambda.yaml", "S3FunctionRole"),
                                                       ("lambda.yaml", "KinesisFunctionRole")])
@pytest.mark.parametrize(("parameter", "actions", "services"), KEY_GRANTS, ids=[g[0] for g in KEY_GRANTS])
def test_customer_managed_keys_are_granted_only_through_their_service(
    template_name: str, role: str, parameter: str, actions: set[str], services: set[str]
) -> None:
    document = load_template(template_name)
    assert parameter in document["Parameters"], f"{template_name} takes no {parameter}"
    found = [s for s in role_statements(document, role) if f"${{{parameter}}}" in s.resources]
    assert found, f"{role} gets no grant on {parameter}"
    granted = {action for statement in found for action in statement.actions}
    assert actions <= granted, f"{role} on {parameter}: {sorted(granted)}"
    for statement in found:
        via = statement.condition["StringEquals"]["kms:ViaService"]
        names = {render(item).split(".")[0] for item in _as_list(via)}
        assert names <= services, f"{role} may use {parameter} through {names}"


def test_state_key_encrypts_the_ledger_queues_and_secret() -> None:
    resources = load_template("state.yaml")["Resources"]
    with_key = {"Fn::If": ["UseCustomerKey", {"Ref": "KmsKeyArn"}, {"Ref": "AWS::NoValue"}]}
    assert resources["DedupeTable"]["Properties"]["SSESpecification"]["KMSMasterKeyId"] == with_key
    assert resources["StormTable"]["Properties"]["SSESpecification"]["KMSMasterKeyId"] == with_key
    assert resources["WebhookSecret"]["Properties"]["KmsKeyId"] == with_key
    for queue in ("DeadLetterQueue", "FailedBatchQueue"):
        assert resources[queue]["Properties"]["KmsMasterKeyId"] == with_key


def test_consumer_runs_two_tasks_up_to_an_on_demand_streams_shards() -> None:
    parameters = load_template("consumer.yaml")["Parameters"]
    assert parameters["DesiredCount"]["Default"] == 2  # a task can be replaced while the other reads
    assert parameters["MaxTasks"]["Default"] >= 4  # an on-demand stream starts with 4 shards


def test_consumer_container_has_a_health_check_on_the_heartbeat_consume_writes() -> None:
    from stream_processor.kcl.daemon import Heartbeat

    container = load_template("consumer.yaml")["Resources"]["TaskDefinition"]["Properties"]["ContainerDefinitions"][0]
    check = container["HealthCheck"]
    command = container["Command"]
    work_dir = render(command[command.index("--work-dir") + 1])
    assert f"'{work_dir}/heartbeat'" in check["Command"][-1]
    stale_after = int(re.search(r"> (\d+)\)", check["Command"][-1]).group(1))  # type: ignore[union-attr]
    assert stale_after >= 3 * Heartbeat.INTERVAL_SECONDS
    assert check["StartPeriod"] >= 60  # the JVM and the first lease take a while


def test_consumer_tasks_share_the_state_stacks_ledger_and_queue() -> None:
    container = load_template("consumer.yaml")["Resources"]["TaskDefinition"]["Properties"]["ContainerDefinitions"][0]
    env = {item["Name"]: item["Value"] for raw in container["Environment"] for item in _branches(raw)}
    assert env["STREAM_PROCESSOR_DEDUPE_TABLE"] == {"Ref": "DedupeTableName"}
    assert env["STREAM_PROCESSOR_STORM_TABLE"] == {"Ref": "StormTableName"}  # only when given
    assert {"Fn::If": ["HasStormTable", {"Name": "STREAM_PROCESSOR_STORM_TABLE", "Value": {"Ref": "StormTableName"}},
                       {"Ref": "AWS::NoValue"}]} in container["Environment"]  # fmt: skip
    assert "${QueueName}" in render(env["STREAM_PROCESSOR_DEAD_LETTER_QUEUE_URL"])
    assert "--dedupe" not in container["Command"] and "--dead-letters" not in container["Command"]


def test_the_stream_outlives_its_stack() -> None:
    stream = load_template("feed.yaml")["Resources"]["Stream"]
    assert stream["DeletionPolicy"] == "Retain" and stream["UpdateReplacePolicy"] == "Retain"


def test_the_trail_log_group_is_encrypted_with_the_stream_key_logs_may_use() -> None:
    resources = load_template("feed.yaml")["Resources"]
    assert resources["TrailLogGroup"]["Properties"]["KmsKeyId"] == {"Fn::GetAtt": ["StreamKey", "Arn"]}
    statements = resources["StreamKey"]["Properties"]["KeyPolicy"]["Statement"]
    (logs,) = [s for s in statements if "Service" in s["Principal"]]
    assert render(logs["Principal"]["Service"]) == "logs.${AWS::Region}.amazonaws.com"
    assert "log-group:${LogGroupName}" in render(logs["Condition"]["ArnEquals"]["kms:EncryptionContext:aws:logs:arn"])


@pytest.mark.parametrize("age", ["-1", "60", "3600", "604800"])
def test_record_ages_lambda_accepts_pass_the_rule(age: str) -> None:
    assert _record_age_allowed(age)


@pytest.mark.parametrize("age", ["0", "1", "30", "59"])
def test_record_ages_lambda_refuses_are_stopped_by_the_rule(age: str) -> None:
    assert not _record_age_allowed(age)


def _record_age_allowed(value: str) -> bool:
    document = load_template("lambda.yaml")
    parameter = document["Parameters"]["MaximumRecordAgeInSeconds"]
    if not parameter["MinValue"] <= int(value) <= parameter["MaxValue"]:
        return False
    (assertion,) = document["Rules"]["RecordAgeLambdaAccepts"]["Assertions"]
    refused, _ = assertion["Assert"]["Fn::Not"][0]["Fn::Contains"]
    return value not in refused


def test_every_checkov_suppression_says_why() -> None:
    for name in TEMPLATE_NAMES:
        for logical_id, resource in load_template(name)["Resources"].items():
            for skip in resource.get("Metadata", {}).get("checkov", {}).get("skip", []):
                assert re.fullmatch(r"CKV_AWS_\d+", skip["id"]), f"{name} {logical_id}: {skip}"
                assert len(skip.get("comment", "").split()) >= 8, f"{name} {logical_id}: {skip['id']} has no reason"
