"""moto in server mode with CloudFormation support for the resource types our templates use that moto lacks.

moto's CloudFormation creates the resources it has a model for in its own backends and skips the others with a
warning, so a template that names a Secrets Manager secret, a queue policy, a trail, a subscription filter, an
event-invoke config or Application Auto Scaling would "deploy" without them. These models create each one through
the service backend moto already has (`secretsmanager`, `sqs`, `cloudtrail`, `logs`, `awslambda`,
`applicationautoscaling`), so the stacks are deployed whole and their outputs are real. It also fixes moto's KMS
key model, which cannot take CloudFormation's `Tags` (`Key`/`Value`).

Imported by `tests.support.moto_cfn`, which runs the server (`start_moto_with_cfn`).
"""

from __future__ import annotations

import json
from typing import Any

from moto.applicationautoscaling.models import applicationautoscaling_backends
from moto.awslambda.models import lambda_backends
from moto.cloudtrail.models import cloudtrail_backends
from moto.core.common_models import CloudFormationModel
from moto.kms.models import Key
from moto.logs.models import logs_backends
from moto.secretsmanager.models import secretsmanager_backends
from moto.sqs.models import sqs_backends


def _flag(value: Any) -> bool:
    return str(value).lower() == "true"


class _Created:
    """A resource made through a backend: its Ref (physical id) and the attributes GetAtt may read.

    A mixin: moto finds models as the direct subclasses of CloudFormationModel, so each model names both.
    """

    def __init__(self, physical_resource_id: str, attributes: dict[str, str] | None = None) -> None:
        self.physical_resource_id = physical_resource_id
        self._attributes = attributes or {}

    @staticmethod
    def cloudformation_name_type() -> str:
        return ""

    @classmethod
    def has_cfn_attr(cls, attr: str) -> bool:
        return True

    def get_cfn_attribute(self, attribute_name: str) -> str:
        return self._attributes[attribute_name]

    @classmethod
    def create_from_cloudformation_json(  # type: ignore[override]
        cls, resource_name: str, cloudformation_json: Any, account_id: str, region_name: str, **kwargs: Any
    ) -> Any:
        raise NotImplementedError

    @classmethod
    def update_from_cloudformation_json(  # type: ignore[override]
        cls, original_resource: Any, new_resource_name: str, cloudformation_json: Any, account_id: str,
        region_name: str,
    ) -> Any:  # fmt: skip
        return cls.create_from_cloudformation_json(new_resource_name, cloudformation_json, account_id, region_name)

    @classmethod
    def delete_from_cloudformation_json(  # type: ignore[override]
        cls, resource_name: str, cloudformation_json: Any, account_id: str, region_name: str
    ) -> None:
        return None

    def is_created(self) -> bool:
        return True


class SecretModel(_Created, CloudFormationModel):
    @staticmethod
    def cloudformation_name_type() -> str:
        return "Name"

    @staticmethod
    def cloudformation_type() -> str:
        return "AWS::SecretsManager::Secret"

    @classmethod
    def create_from_cloudformation_json(  # type: ignore[override]
        cls, resource_name: str, cloudformation_json: Any, account_id: str, region_name: str, **kwargs: Any
    ) -> SecretModel:
        properties = cloudformation_json["Properties"]
        backend = secretsmanager_backends[account_id][region_name]
        answer = json.loads(
            backend.create_secret(
                name=resource_name,
                secret_string=properties.get("SecretString"),
                secret_binary=None,
                description=properties.get("Description"),
                tags=properties.get("Tags"),
                kms_key_id=properties.get("KmsKeyId"),
                client_request_token=None,
                replica_regions=[],
                force_overwrite=False,
            )
        )
        return cls(answer["ARN"], {"Id": answer["ARN"]})  # a secret's Ref is its ARN


class QueuePolicyModel(_Created, CloudFormationModel):
    @staticmethod
    def cloudformation_type() -> str:
        return "AWS::SQS::QueuePolicy"

    @classmethod
    def create_from_cloudformation_json(  # type: ignore[override]
        cls, resource_name: str, cloudformation_json: Any, account_id: str, region_name: str, **kwargs: Any
    ) -> QueuePolicyModel:
        properties = cloudformation_json["Properties"]
        backend = sqs_backends[account_id][region_name]
        for url in properties["Queues"]:
            backend.set_queue_attributes(url.rsplit("/", 1)[1], {"Policy": json.dumps(properties["PolicyDocument"])})
        return cls(resource_name)


class TrailModel(_Created, CloudFormationModel):
    @staticmethod
    def cloudformation_name_type() -> str:
        return "TrailName"

    @staticmethod
    def cloudformation_type() -> str:
        return "AWS::CloudTrail::Trail"

    @classmethod
    def create_from_cloudformation_json(  # type: ignore[override]
        cls, resource_name: str, cloudformation_json: Any, account_id: str, region_name: str, **kwargs: Any
    ) -> TrailModel:
        p = cloudformation_json["Properties"]
        backend = cloudtrail_backends[account_id][region_name]
        trail = backend.create_trail(
            name=resource_name,
            bucket_name=p["S3BucketName"],
            s3_key_prefix=p.get("S3KeyPrefix"),
            sns_topic_name=p.get("SnsTopicName"),
            is_global=_flag(p.get("IncludeGlobalServiceEvents", True)),
            is_multi_region=_flag(p.get("IsMultiRegionTrail", False)),
            log_validation=_flag(p.get("EnableLogFileValidation", False)),
            is_org_trail=_flag(p.get("IsOrganizationTrail", False)),
            cw_log_group_arn=p.get("CloudWatchLogsLogGroupArn"),
            cw_role_arn=p.get("CloudWatchLogsRoleArn"),
            kms_key_id=p.get("KMSKeyId"),
            tags_list=p.get("Tags", []),
        )
        if _flag(p.get("IsLogging", False)):
            backend.start_logging(resource_name)
        return cls(resource_name, {"Arn": trail.arn})


class SubscriptionFilterModel(_Created, CloudFormationModel):
    @staticmethod
    def cloudformation_name_type() -> str:
        return "FilterName"

    @staticmethod
    def cloudformation_type() -> str:
        return "AWS::Logs::SubscriptionFilter"

    @classmethod
    def create_from_cloudformation_json(  # type: ignore[override]
        cls, resource_name: str, cloudformation_json: Any, account_id: str, region_name: str, **kwargs: Any
    ) -> SubscriptionFilterModel:
        p = cloudformation_json["Properties"]
        logs_backends[account_id][region_name].put_subscription_filter(
            p["LogGroupName"], resource_name, p.get("FilterPattern", ""), p["DestinationArn"], p.get("RoleArn", "")
        )
        return cls(resource_name)


class EventInvokeConfigModel(_Created, CloudFormationModel):
    @staticmethod
    def cloudformation_type() -> str:
        return "AWS::Lambda::EventInvokeConfig"

    @classmethod
    def create_from_cloudformation_json(  # type: ignore[override]
        cls, resource_name: str, cloudformation_json: Any, account_id: str, region_name: str, **kwargs: Any
    ) -> EventInvokeConfigModel:
        p = cloudformation_json["Properties"]
        config = {key: p[key] for key in ("MaximumRetryAttempts", "MaximumEventAgeInSeconds") if key in p}
        if "DestinationConfig" in p:
            config["DestinationConfig"] = p["DestinationConfig"]
        lambda_backends[account_id][region_name].put_function_event_invoke_config(p["FunctionName"], config)
        return cls(resource_name)


class ScalableTargetModel(_Created, CloudFormationModel):
    @staticmethod
    def cloudformation_type() -> str:
        return "AWS::ApplicationAutoScaling::ScalableTarget"

    @classmethod
    def create_from_cloudformation_json(  # type: ignore[override]
        cls, resource_name: str, cloudformation_json: Any, account_id: str, region_name: str, **kwargs: Any
    ) -> ScalableTargetModel:
        p = cloudformation_json["Properties"]
        applicationautoscaling_backends[account_id][region_name].register_scalable_target(
            p["ServiceNamespace"],
            p["ResourceId"],
            p["ScalableDimension"],
            int(p["MinCapacity"]),
            int(p["MaxCapacity"]),
            p.get("RoleARN", ""),
            p.get("SuspendedState", {}),
        )
        # ScalingPolicy names its target by this id: namespace, resource and dimension, as the real one does
        return cls(f"{p['ResourceId']}|{p['ScalableDimension']}|{p['ServiceNamespace']}")


class ScalingPolicyModel(_Created, CloudFormationModel):
    @staticmethod
    def cloudformation_name_type() -> str:
        return "PolicyName"

    @staticmethod
    def cloudformation_type() -> str:
        return "AWS::ApplicationAutoScaling::ScalingPolicy"

    @classmethod
    def create_from_cloudformation_json(  # type: ignore[override]
        cls, resource_name: str, cloudformation_json: Any, account_id: str, region_name: str, **kwargs: Any
    ) -> ScalingPolicyModel:
        p = cloudformation_json["Properties"]
        resource_id, dimension, namespace = p["ScalingTargetId"].split("|")
        policy_type = p["PolicyType"]
        body_key = "TargetTrackingScalingPolicyConfiguration" if policy_type == "TargetTrackingScaling" else (
            "StepScalingPolicyConfiguration"
        )
        applicationautoscaling_backends[account_id][region_name].put_scaling_policy(
            resource_name, namespace, resource_id, dimension, p.get(body_key, {}), policy_type
        )
        return cls(resource_name)


_original_key_create = Key.create_from_cloudformation_json


def _key_with_cloudformation_tags(
    resource_name: str, cloudformation_json: Any, account_id: str, region_name: str, **kwargs: Any
) -> Key:
    """moto's KMS model hands CloudFormation's `Key`/`Value` tags to a tagger that wants `TagKey`/`TagValue`."""
    properties = cloudformation_json["Properties"]
    properties["Tags"] = [{"TagKey": tag["Key"], "TagValue": tag["Value"]} for tag in properties.get("Tags", [])]
    return _original_key_create(resource_name, cloudformation_json, account_id, region_name, **kwargs)  # type: ignore[no-any-return]


Key.create_from_cloudformation_json = staticmethod(_key_with_cloudformation_tags)  # type: ignore[assignment,method-assign]


def _drop_novalue_items() -> None:
    """CloudFormation removes a list item that is `AWS::NoValue` (`!If [c, item, !Ref AWS::NoValue]` in a role's
    `Policies` or a policy's `Statement`); moto's template resolver leaves a null there. Resolve lists the real way.
    """
    from moto.cloudformation import parsing

    original = parsing.clean_json

    def clean_json(resource_json: Any, resources_map: Any) -> Any:
        cleaned = original(resource_json, resources_map)
        if isinstance(resource_json, list) and isinstance(cleaned, list):
            return [item for item in cleaned if item is not None]
        return cleaned

    parsing.clean_json = clean_json


_drop_novalue_items()


def _attach_managed_policies() -> None:
    """moto's IAM role model ignores `ManagedPolicyArns`: attach them, as CloudFormation does."""
    from moto.iam.models import Role, iam_backends
    from moto.utilities.utils import get_partition

    original = Role.create_from_cloudformation_json

    def create(resource_name: str, cloudformation_json: Any, account_id: str, region_name: str, **kwargs: Any) -> Any:
        role = original(resource_name, cloudformation_json, account_id, region_name, **kwargs)
        backend = iam_backends[account_id][get_partition(region_name)]
        for arn in cloudformation_json["Properties"].get("ManagedPolicyArns", []):
            backend.attach_role_policy(arn, role.name)
        return role

    Role.create_from_cloudformation_json = staticmethod(create)  # type: ignore[assignment,method-assign]


_attach_managed_policies()
