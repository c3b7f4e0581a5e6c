"""Realistic CloudTrail traffic, deterministic from a seed: for the benchmark, `produce` and the demo.

Real trails are dominated by reads (Describe*/Get*/List*, AssumeRole, KMS Decrypt) made by roles and AWS
services; security-relevant writes are rare. The generator reproduces that shape (a long-tailed eventName
mix, identities of every type, ~0.8-2 KB per event) and mixes in about `match_rate` of "interesting" events
drawn from :data:`SCENARIOS`, so a realistic rule set matches a few percent of the stream, not none or all.
"""

from __future__ import annotations

import base64
import bisect
import ipaddress
import random
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from stream_processor.decode import CONTROL_MESSAGE, encode_subscription_record

Event = dict[str, Any]

DEFAULT_ACCOUNTS: tuple[str, ...] = ("123456789012", "210987654321", "345678901234", "456789012345")
DEFAULT_REGIONS: tuple[str, ...] = (
    "us-east-1",
    "us-east-1",
    "us-east-1",
    "us-west-2",
    "us-west-2",
    "eu-west-1",
    "eu-central-1",
    "ap-southeast-2",
)
DEFAULT_START = datetime(2024, 8, 1, 9, 0, 0, tzinfo=UTC)
# The whole IPv4 space as CloudTrail writes it in security group, NACL and route parameters.
ANY_IPV4 = str(ipaddress.IPv4Network((0, 0)))


_USER_AGENTS: tuple[str, ...] = (
    "aws-cli/2.15.30 Python/3.11.8 Linux/6.1.79-99.164.amzn2023.x86_64 exe/x86_64.amzn.2023 prompt/off "
    "command/ec2.describe-instances",
    "Boto3/1.34.69 md/Botocore#1.34.69 ua/2.0 os/linux#5.10.210-201.852.amzn2.x86_64 md/arch#x86_64 "
    "lang/python#3.12.2 md/pyimpl#CPython cfg/retry-mode#legacy Botocore/1.34.69",
    "aws-sdk-go-v2/1.25.2 os/linux lang/go#1.22.1 md/GOOS#linux md/GOARCH#amd64 api/ec2#1.150.1",
    "aws-sdk-java/2.25.11 Linux/5.10.210-201.852.amzn2.x86_64 OpenJDK_64-Bit_Server_VM/17.0.10+7-LTS "
    "Java/17.0.10 vendor/Amazon.com_Inc. io/sync http/Apache cfg/retry-mode/standard",
    "APN/1.0 HashiCorp/1.0 Terraform/1.7.5 (+https://www.terraform.io) terraform-provider-aws/5.42.0 "
    "(+https://registry.terraform.io/providers/hashicorp/aws) aws-sdk-go-v2/1.26.0 os/linux lang/go#1.22.1",
    "aws-sdk-js/3.540.0 ua/2.0 os/linux#5.10.213-201.855.amzn2.x86_64 lang/js md/nodejs#20.11.1 "
    "api/dynamodb#3.540.0 exec-env/AWS_Lambda_nodejs20.x",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/123.0.0.0 "
    "Safari/537.36",
    "console.amazonaws.com",
    "AWS Internal",
)
_BROWSER_AGENTS: tuple[str, ...] = (
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/123.0.0.0 "
    "Safari/537.36",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:124.0) Gecko/20100101 Firefox/124.0",
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/122.0.0.0 Safari/537.36",
)
_TLS: tuple[tuple[str, str], ...] = (
    ("TLSv1.3", "TLS_AES_128_GCM_SHA256"),
    ("TLSv1.3", "TLS_AES_256_GCM_SHA384"),
    ("TLSv1.2", "ECDHE-RSA-AES128-GCM-SHA256"),
)
_ROLE_NAMES: tuple[str, ...] = (
    "eks-node-group-role",
    "lambda-orders-api",
    "ecs-task-payments",
    "github-actions-deploy",
    "datadog-integration",
    "AWSReservedSSO_ReadOnly_4f1c2e8a9b7d6c5e",
    "AWSReservedSSO_AdministratorAccess_8a7b6c5d4e3f2a1b",
    "OrganizationAccountAccessRole",
    "karpenter-controller",
    "airflow-worker",
    "prometheus-cloudwatch-exporter",
    "backup-service-role",
    "SecurityAudit-Scanner",
    "terraform-ci",
)
_USER_NAMES: tuple[str, ...] = (
    "alice",
    "bob",
    "carol.ops",
    "dave",
    "svc-jenkins",
    "svc-legacy-backup",
    "erin",
    "frank.sre",
    "grafana-reader",
)
_SERVICES: tuple[str, ...] = (
    "ec2.amazonaws.com",
    "lambda.amazonaws.com",
    "autoscaling.amazonaws.com",
    "cloudformation.amazonaws.com",
    "elasticloadbalancing.amazonaws.com",
    "ecs-tasks.amazonaws.com",
    "config.amazonaws.com",
    "s3.amazonaws.com",
)
_HUMAN_ROLE_PREFIXES = ("AWSReservedSSO_", "OrganizationAccountAccessRole")
# Calls that workloads make and people (IAM users with long-term keys) do not: secrets are read by roles.
_WORKLOAD_ONLY = frozenset({"secret"})
_BUCKETS: tuple[str, ...] = (
    "prod-app-assets",
    "company-cloudtrail-logs",
    "data-lake-raw",
    "terraform-state-prod",
    "ml-training-sets",
    "customer-uploads",
    "athena-query-results",
)


@dataclass(frozen=True, slots=True)
class _Principal:
    """One caller: an identity template that is rebuilt into a fresh dict per event."""

    kind: str  # IAMUser | AssumedRole | AWSService | Root
    account: str
    name: str
    principal_id: str
    access_key: str


@dataclass(frozen=True, slots=True)
class GeneratedEvent:
    """An event and, when it is one of the interesting ones, the name of its scenario."""

    data: Event
    scenario: str | None


class TrafficGenerator:
    """An endless, deterministic stream of realistic CloudTrail events.

    Two generators with the same arguments produce the same events, byte for byte.
    """

    def __init__(
        self,
        seed: int = 0,
        match_rate: float = 0.02,
        accounts: Sequence[str] = DEFAULT_ACCOUNTS,
        regions: Sequence[str] = DEFAULT_REGIONS,
        start: datetime = DEFAULT_START,
        events_per_second: float = 1000.0,
    ) -> None:
        if not 0.0 <= match_rate <= 1.0:
            raise ValueError(f"match_rate must be within [0, 1], got {match_rate}")
        if not accounts or not regions:
            raise ValueError("accounts and regions must not be empty")
        self.seed = seed
        self.match_rate = match_rate
        self.accounts = tuple(accounts)
        self.regions = tuple(regions)
        self._rng = random.Random(seed)
        self._start = start
        self._step = 1.0 / events_per_second
        self._clock = 0.0
        self._time_cache: tuple[int, str] = (-1, "")
        self._principals = self._make_principals()
        self._users = [p for p in self._principals if p.kind == "IAMUser"]
        self._roles = [p for p in self._principals if p.kind == "AssumedRole"]
        self._human_roles = [p for p in self._roles if p.name.startswith(_HUMAN_ROLE_PREFIXES)]
        self._benign_cum = _cumulative([entry[3] for entry in _BENIGN])
        self._scenario_cum = _cumulative([scenario.weight for scenario in SCENARIOS])

    # --- public API -------------------------------------------------------------------------------------

    def __iter__(self) -> Iterator[Event]:
        while True:
            yield self._next().data

    def generate(self, n: int) -> list[Event]:
        """The next `n` events as dicts."""
        return [self._next().data for _ in range(n)]

    def generate_labelled(self, n: int) -> list[GeneratedEvent]:
        """The next `n` events with the scenario that produced each interesting one."""
        return [self._next() for _ in range(n)]

    def generate_bytes(self, n: int) -> list[bytes]:
        """The next `n` events serialised by orjson (compact JSON, as CloudTrail delivers them)."""
        dumps = orjson.dumps
        return [dumps(self._next().data) for _ in range(n)]

    # --- event construction -----------------------------------------------------------------------------

    def _next(self) -> GeneratedEvent:
        rng = self._rng
        self._clock += self._step * rng.expovariate(1.0)
        if rng.random() < self.match_rate:
            scenario = SCENARIOS[bisect.bisect(self._scenario_cum, rng.random() * self._scenario_cum[-1])]
            return GeneratedEvent(scenario.build(self), scenario.name)
        source, name, read_only, _weight, kind = _BENIGN[
            bisect.bisect(self._benign_cum, rng.random() * self._benign_cum[-1])
        ]
        return GeneratedEvent(self._benign(source, name, read_only, kind), None)

    def _make_principals(self) -> list[_Principal]:
        rng = self._rng
        principals: list[_Principal] = []
        for account in self.accounts:
            for role in _ROLE_NAMES:
                principals.append(_Principal("AssumedRole", account, role, "AROA" + self._ident(17), ""))
            for user in _USER_NAMES:
                principals.append(
                    _Principal("IAMUser", account, user, "AIDA" + self._ident(17), "AKIA" + self._ident(16))
                )
        rng.shuffle(principals)
        return principals

    def _ident(self, length: int) -> str:
        """Upper-case letters and digits 2-7, like AWS key and principal IDs (base32 of random bits: fast)."""
        size = (length * 5 + 7) // 8
        return base64.b32encode(self._rng.getrandbits(8 * size).to_bytes(size, "big"))[:length].decode("ascii")

    def _uuid(self) -> str:
        h = f"{self._rng.getrandbits(128):032x}"
        return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{'89ab'[int(h[16], 16) & 3]}{h[17:20]}-{h[20:32]}"

    def _time(self) -> str:
        second = int(self._clock)
        if self._time_cache[0] != second:
            stamp = (self._start + timedelta(seconds=second)).strftime("%Y-%m-%dT%H:%M:%SZ")
            self._time_cache = (second, stamp)
        return self._time_cache[1]

    def _ip(self) -> str:
        rng = self._rng
        first = rng.choice((3, 18, 34, 52, 54, 81, 93, 185, 203))
        return f"{first}.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(1, 255)}"

    def user(self) -> _Principal:
        return self._rng.choice(self._users)

    def role(self) -> _Principal:
        return self._rng.choice(self._roles)

    def human_role(self) -> _Principal:
        """A role people sign in to (SSO, cross-account admin), never a workload or CI role."""
        return self._rng.choice(self._human_roles)

    def identity(self, principal: _Principal, mfa: bool = False, invoked_by: str | None = None) -> Event:
        """A fresh userIdentity dict for `principal` (never shared between events)."""
        account = principal.account
        if principal.kind == "IAMUser":
            identity: Event = {
                "type": "IAMUser",
                "principalId": principal.principal_id,
                "arn": f"arn:aws:iam::{account}:user/{principal.name}",
                "accountId": account,
                "accessKeyId": principal.access_key,
                "userName": principal.name,
            }
            if mfa:
                identity["sessionContext"] = {
                    "attributes": {"creationDate": self._time(), "mfaAuthenticated": "true"},
                }
        elif principal.kind == "AssumedRole":
            session = f"{principal.name[:12]}-{self._rng.randrange(10**12, 10**13)}"
            identity = {
                "type": "AssumedRole",
                "principalId": f"{principal.principal_id}:{session}",
                "arn": f"arn:aws:sts::{account}:assumed-role/{principal.name}/{session}",
                "accountId": account,
                "accessKeyId": "ASIA" + self._ident(16),
                "sessionContext": {
                    "sessionIssuer": {
                        "type": "Role",
                        "principalId": principal.principal_id,
                        "arn": f"arn:aws:iam::{account}:role/{principal.name}",
                        "accountId": account,
                        "userName": principal.name,
                    },
                    "webIdFederationData": {},
                    "attributes": {"creationDate": self._time(), "mfaAuthenticated": "true" if mfa else "false"},
                },
            }
        else:
            identity = {
                "type": "Root",
                "principalId": account,
                "arn": f"arn:aws:iam::{account}:root",
                "accountId": account,
                "accessKeyId": "",
            }
        if invoked_by is not None:
            identity["invokedBy"] = invoked_by
        return identity

    def base(
        self,
        source: str,
        name: str,
        identity: Event,
        read_only: bool,
        *,
        request: Any = None,
        response: Any = None,
        user_agent: str | None = None,
        source_ip: str | None = None,
        event_type: str = "AwsApiCall",
        category: str = "Management",
    ) -> Event:
        """One event in CloudTrail's field order; callers add errorCode, resources and the like."""
        rng = self._rng
        region = rng.choice(self.regions)
        tls_version, cipher = rng.choice(_TLS)
        account = identity.get("accountId") or rng.choice(self.accounts)
        host = (
            source
            if source.startswith(("iam.", "sts.", "signin.", "organizations."))
            else source.replace(".amazonaws.com", f".{region}.amazonaws.com")
        )
        return {
            "eventVersion": "1.09" if rng.random() < 0.8 else "1.08",
            "userIdentity": identity,
            "eventTime": self._time(),
            "eventSource": source,
            "eventName": name,
            "awsRegion": region,
            "sourceIPAddress": source_ip if source_ip is not None else self._ip(),
            "userAgent": user_agent if user_agent is not None else rng.choice(_USER_AGENTS),
            "requestParameters": request,
            "responseElements": response,
            "requestID": self._uuid(),
            "eventID": self._uuid(),
            "readOnly": read_only,
            "eventType": event_type,
            "managementEvent": category == "Management",
            "recipientAccountId": account,
            "eventCategory": category,
            "tlsDetails": {"tlsVersion": tls_version, "cipherSuite": cipher, "clientProvidedHostHeader": host},
        }

    def _benign(self, source: str, name: str, read_only: bool, kind: str) -> Event:
        rng = self._rng
        roll = rng.random()
        invoked_by: str | None = None
        user_agent: str | None = None
        source_ip: str | None = None
        if roll < 0.68:
            principal = self.role()
            identity = self.identity(principal, mfa=principal.name.startswith("AWSReservedSSO") and rng.random() < 0.5)
        elif roll < 0.82:
            principal = self.role()
            invoked_by = rng.choice(_SERVICES)
            identity = self.identity(principal, invoked_by=invoked_by)
            user_agent = source_ip = invoked_by
        elif kind in _WORKLOAD_ONLY:
            identity = self.identity(self.role())
        else:
            identity = self.identity(self.user())
        if kind in ("assume", "decrypt") and roll >= 0.68 and roll < 0.9:
            # AWS services assume roles and decrypt on a caller's behalf all day long.
            service = rng.choice(_SERVICES)
            identity = {"type": "AWSService", "invokedBy": service}
            user_agent = source_ip = service
        event = self.base(source, name, identity, read_only, user_agent=user_agent, source_ip=source_ip)
        if identity["type"] == "AWSService":
            event["recipientAccountId"] = rng.choice(self.accounts)
            event["sharedEventID"] = self._uuid()
        _FILL[kind](self, event)
        error = rng.random()
        if error < 0.02:
            code, message = _ERRORS[int(error * 1000) % len(_ERRORS)]
            event["errorCode"] = code
            event["errorMessage"] = message.format(arn=identity.get("arn", "service"), action=name)
            event["responseElements"] = None
        return event

    # helpers for fillers and scenarios
    def bucket(self) -> str:
        return self._rng.choice(_BUCKETS)

    def instance_id(self) -> str:
        return self.hex_id("i-0", 16)

    def hex_id(self, prefix: str, length: int = 17) -> str:
        return f"{prefix}{self._rng.getrandbits(4 * length):0{length}x}"

    def token(self, length: int) -> str:
        return self._ident(length).lower()

    def key_arn(self, event: Event) -> str:
        return f"arn:aws:kms:{event['awsRegion']}:{event['recipientAccountId']}:key/{self._uuid()}"


def _cumulative(weights: Sequence[float]) -> list[float]:
    total = 0.0
    result: list[float] = []
    for weight in weights:
        total += weight
        result.append(total)
    return result


_ERRORS: tuple[tuple[str, str], ...] = (
    ("AccessDenied", "User: {arn} is not authorized to perform: {action} because no identity-based policy allows it"),
    ("Client.UnauthorizedOperation", "You are not authorized to perform this operation."),
    ("ThrottlingException", "Rate exceeded"),
    ("ResourceNotFoundException", "Requested resource not found"),
    ("NoSuchEntityException", "The role with name {action} cannot be found."),
    ("Client.InvalidInstanceID.NotFound", "The instance ID does not exist"),
    ("ValidationException", "1 validation error detected"),
    ("ThrottlingException", "Rate exceeded"),
    ("Client.RequestLimitExceeded", "Request limit exceeded."),
    ("ResourceNotFoundException", "Requested resource not found"),
)

# --- benign traffic: (eventSource, eventName, readOnly, weight, filler) --------------------------------------
# Weights follow a long tail observed in production trails: a handful of reads make most of the volume.

_BENIGN: tuple[tuple[str, str, bool, float, str], ...] = (
    ("sts.amazonaws.com", "AssumeRole", True, 160, "assume"),
    ("kms.amazonaws.com", "Decrypt", True, 140, "decrypt"),
    ("ec2.amazonaws.com", "DescribeInstances", True, 70, "instances"),
    ("kms.amazonaws.com", "GenerateDataKey", True, 45, "decrypt"),
    ("s3.amazonaws.com", "GetBucketAcl", True, 40, "bucket"),
    ("sts.amazonaws.com", "GetCallerIdentity", True, 35, "empty"),
    ("logs.amazonaws.com", "CreateLogStream", False, 30, "logstream"),
    ("ssm.amazonaws.com", "UpdateInstanceInformation", False, 30, "ssminfo"),
    ("ec2.amazonaws.com", "DescribeNetworkInterfaces", True, 28, "filters"),
    ("sts.amazonaws.com", "AssumeRoleWithWebIdentity", True, 26, "assume"),
    ("s3.amazonaws.com", "GetBucketLocation", True, 25, "bucket"),
    ("ecr.amazonaws.com", "GetAuthorizationToken", True, 22, "empty"),
    ("ec2.amazonaws.com", "DescribeSecurityGroups", True, 20, "filters"),
    ("secretsmanager.amazonaws.com", "GetSecretValue", True, 18, "secret"),
    ("ssm.amazonaws.com", "GetParameter", True, 18, "parameter"),
    ("iam.amazonaws.com", "GetRole", True, 16, "role"),
    ("logs.amazonaws.com", "DescribeLogGroups", True, 15, "empty"),
    ("ec2.amazonaws.com", "DescribeVolumes", True, 14, "filters"),
    ("dynamodb.amazonaws.com", "DescribeTable", True, 14, "table"),
    ("monitoring.amazonaws.com", "GetMetricData", True, 13, "empty"),
    ("elasticloadbalancing.amazonaws.com", "DescribeTargetHealth", True, 12, "empty"),
    ("autoscaling.amazonaws.com", "DescribeAutoScalingGroups", True, 11, "empty"),
    ("s3.amazonaws.com", "GetObject", True, 10, "object"),
    ("lambda.amazonaws.com", "GetFunction20150331v2", True, 9, "function"),
    ("iam.amazonaws.com", "ListAttachedRolePolicies", True, 9, "role"),
    ("ec2.amazonaws.com", "DescribeSubnets", True, 8, "filters"),
    ("ecs.amazonaws.com", "DescribeTasks", True, 8, "empty"),
    ("s3.amazonaws.com", "ListBuckets", True, 8, "empty"),
    ("ec2.amazonaws.com", "CreateTags", False, 7, "tags"),
    ("iam.amazonaws.com", "GetPolicyVersion", True, 7, "policy"),
    ("cloudtrail.amazonaws.com", "LookupEvents", True, 6, "empty"),
    ("s3.amazonaws.com", "PutObject", False, 6, "object"),
    ("ec2.amazonaws.com", "DescribeImages", True, 6, "filters"),
    ("rds.amazonaws.com", "DescribeDBInstances", True, 6, "empty"),
    ("kms.amazonaws.com", "CreateGrant", False, 5, "decrypt"),
    ("ec2.amazonaws.com", "DescribeSnapshots", True, 5, "filters"),
    ("lambda.amazonaws.com", "ListFunctions20150331", True, 5, "empty"),
    ("iam.amazonaws.com", "ListRoles", True, 5, "empty"),
    ("cloudtrail.amazonaws.com", "GetTrailStatus", True, 4, "trail"),
    ("config.amazonaws.com", "PutEvaluations", False, 4, "empty"),
    ("ssm.amazonaws.com", "DescribeInstanceInformation", True, 4, "empty"),
    ("s3.amazonaws.com", "GetBucketPolicy", True, 4, "bucket"),
    ("iam.amazonaws.com", "ListUsers", True, 3, "empty"),
    ("iam.amazonaws.com", "ListAccessKeys", True, 3, "empty"),
    ("ec2.amazonaws.com", "RunInstances", False, 3, "run"),
    ("ec2.amazonaws.com", "TerminateInstances", False, 3, "instances"),
    ("ecs.amazonaws.com", "UpdateService", False, 2, "empty"),
    ("autoscaling.amazonaws.com", "UpdateAutoScalingGroup", False, 2, "empty"),
    ("route53.amazonaws.com", "ListHostedZones", True, 2, "empty"),
    ("cloudtrail.amazonaws.com", "DescribeTrails", True, 2, "empty"),
    ("ssm.amazonaws.com", "PutParameter", False, 1.5, "parameter"),
    ("logs.amazonaws.com", "PutRetentionPolicy", False, 1, "logstream"),
    ("iam.amazonaws.com", "GetAccountAuthorizationDetails", True, 0.5, "empty"),
    ("sts.amazonaws.com", "GetSessionToken", True, 0.5, "empty"),
    ("signin.amazonaws.com", "ConsoleLogin", False, 1.0, "console"),
    ("bedrock.amazonaws.com", "InvokeModel", True, 1.0, "model"),
    ("ssm.amazonaws.com", "TerminateSession", False, 0.5, "session"),
)


def _fill_empty(g: TrafficGenerator, event: Event) -> None:
    event["requestParameters"] = None


def _fill_assume(g: TrafficGenerator, event: Event) -> None:
    account = event["recipientAccountId"]
    role = g.role()
    session = f"{role.name[:16]}-{g.token(10)}"
    event["requestParameters"] = {
        "roleArn": f"arn:aws:iam::{account}:role/{role.name}",
        "roleSessionName": session,
        "durationSeconds": 3600,
    }
    event["responseElements"] = {
        "credentials": {
            "accessKeyId": "ASIA" + g._ident(16),
            "sessionToken": g.token(180),
            "expiration": "Aug 1, 2024, 10:00:00 AM",
        },
        "assumedRoleUser": {
            "assumedRoleId": f"{role.principal_id}:{session}",
            "arn": f"arn:aws:sts::{account}:assumed-role/{role.name}/{session}",
        },
    }
    event["resources"] = [
        {"accountId": account, "type": "AWS::IAM::Role", "ARN": f"arn:aws:iam::{account}:role/{role.name}"}
    ]


def _fill_decrypt(g: TrafficGenerator, event: Event) -> None:
    key = g.key_arn(event)
    event["requestParameters"] = {
        "encryptionAlgorithm": "SYMMETRIC_DEFAULT",
        "encryptionContext": {
            "aws:lambda:FunctionArn": f"arn:aws:lambda:{event['awsRegion']}:"
            f"{event['recipientAccountId']}:function:orders-api-{g.token(6)}"
        },
    }
    event["resources"] = [{"accountId": event["recipientAccountId"], "type": "AWS::KMS::Key", "ARN": key}]


def _fill_instances(g: TrafficGenerator, event: Event) -> None:
    event["requestParameters"] = {
        "instancesSet": {"items": [{"instanceId": g.instance_id()} for _ in range(g._rng.randint(1, 4))]},
        "filterSet": {},
    }


def _fill_filters(g: TrafficGenerator, event: Event) -> None:
    event["requestParameters"] = {
        "filterSet": {"items": [{"name": "vpc-id", "valueSet": {"items": [{"value": g.hex_id("vpc-")}]}}]},
        "maxResults": 1000,
    }


def _fill_bucket(g: TrafficGenerator, event: Event) -> None:
    bucket = g.bucket()
    event["requestParameters"] = {
        "bucketName": bucket,
        "Host": f"{bucket}.s3.amazonaws.com",
        event["eventName"][3:].lower(): "",
    }
    event["additionalEventData"] = {
        "SignatureVersion": "SigV4",
        "CipherSuite": "ECDHE-RSA-AES128-GCM-SHA256",
        "bytesTransferredIn": 0,
        "AuthenticationMethod": "AuthHeader",
        "x-amz-id-2": g.token(76),
        "bytesTransferredOut": 312,
    }


def _fill_object(g: TrafficGenerator, event: Event) -> None:
    bucket = g.bucket()
    key = f"data/{g.token(8)}/part-{g._rng.randrange(10000):05d}.parquet"
    event["requestParameters"] = {
        "bucketName": bucket,
        "Host": f"{bucket}.s3.{event['awsRegion']}.amazonaws.com",
        "key": key,
    }
    event["resources"] = [
        {"type": "AWS::S3::Object", "ARN": f"arn:aws:s3:::{bucket}/{key}"},
        {"accountId": event["recipientAccountId"], "type": "AWS::S3::Bucket", "ARN": f"arn:aws:s3:::{bucket}"},
    ]
    event["eventCategory"] = "Data"
    event["managementEvent"] = False


def _fill_logstream(g: TrafficGenerator, event: Event) -> None:
    event["requestParameters"] = {
        "logGroupName": f"/aws/lambda/orders-api-{g.token(6)}",
        "logStreamName": f"2024/08/01/[$LATEST]{g.token(32)}",
    }


def _fill_ssminfo(g: TrafficGenerator, event: Event) -> None:
    event["requestParameters"] = {
        "instanceId": g.instance_id(),
        "agentVersion": "3.3.131.0",
        "agentStatus": "Active",
        "platformType": "Linux",
        "platformName": "Amazon Linux",
        "platformVersion": "2023",
        "iPAddress": f"10.0.{g._rng.randrange(256)}.{g._rng.randrange(256)}",
        "computerName": f"ip-10-0-{g._rng.randrange(256)}.ec2.internal",
    }


def _fill_secret(g: TrafficGenerator, event: Event) -> None:
    event["requestParameters"] = {
        "secretId": f"arn:aws:secretsmanager:{event['awsRegion']}:"
        f"{event['recipientAccountId']}:secret:prod/db/orders-{g.token(6)}"
    }


def _fill_parameter(g: TrafficGenerator, event: Event) -> None:
    event["requestParameters"] = {"name": f"/prod/orders/{g.token(8)}", "withDecryption": False}


def _fill_role(g: TrafficGenerator, event: Event) -> None:
    event["requestParameters"] = {"roleName": g.role().name}


def _fill_table(g: TrafficGenerator, event: Event) -> None:
    event["requestParameters"] = {"tableName": f"orders-{g.token(5)}"}
    event["resources"] = [
        {
            "accountId": event["recipientAccountId"],
            "type": "AWS::DynamoDB::Table",
            "ARN": f"arn:aws:dynamodb:{event['awsRegion']}:{event['recipientAccountId']}:table/orders",
        }
    ]


def _fill_function(g: TrafficGenerator, event: Event) -> None:
    event["requestParameters"] = {"functionName": f"orders-api-{g.token(6)}"}


def _fill_tags(g: TrafficGenerator, event: Event) -> None:
    event["requestParameters"] = {
        "resourcesSet": {"items": [{"resourceId": g.instance_id()}]},
        "tagSet": {"items": [{"key": "team", "value": "payments"}]},
    }
    event["responseElements"] = {"requestId": g._uuid(), "_return": True}


def _fill_policy(g: TrafficGenerator, event: Event) -> None:
    event["requestParameters"] = {"policyArn": "arn:aws:iam::aws:policy/ReadOnlyAccess", "versionId": "v112"}


def _fill_trail(g: TrafficGenerator, event: Event) -> None:
    event["requestParameters"] = {"name": f"arn:aws:cloudtrail:us-east-1:{event['recipientAccountId']}:trail/org-trail"}


def _fill_run(g: TrafficGenerator, event: Event) -> None:
    event["requestParameters"] = {
        "instancesSet": {"items": [{"imageId": g.hex_id("ami-"), "minCount": 1, "maxCount": 1}]},
        "instanceType": g._rng.choice(("t3.medium", "m6i.large", "c6g.xlarge", "m5.2xlarge")),
        "subnetId": g.hex_id("subnet-"),
        "monitoring": {"enabled": False},
        "disableApiTermination": False,
    }
    event["responseElements"] = {
        "requestId": g._uuid(),
        "reservationId": g.hex_id("r-"),
        "instancesSet": {"items": [{"instanceId": g.instance_id()}]},
    }


def _fill_console(g: TrafficGenerator, event: Event) -> None:
    """Benign console sign-ins: SSO roles (MFA at the IdP) or IAM users with MFA."""
    event["eventType"] = "AwsConsoleSignIn"
    event["readOnly"] = False
    event["userAgent"] = g._rng.choice(_BROWSER_AGENTS)
    event["requestParameters"] = None
    event["responseElements"] = {"ConsoleLogin": "Success"}
    identity = event["userIdentity"]
    identity.pop("accessKeyId", None)
    identity.pop("invokedBy", None)
    mfa = "Yes" if identity.get("type") == "IAMUser" else "No"
    event["additionalEventData"] = {
        "LoginTo": "https://console.aws.amazon.com/console/home",
        "MobileVersion": "No",
        "MFAUsed": mfa,
    }
    if mfa == "Yes":
        event["additionalEventData"]["MFAIdentifier"] = f"arn:aws:iam::{identity.get('accountId')}:mfa/phone"


def _fill_model(g: TrafficGenerator, event: Event) -> None:
    event["requestParameters"] = {"modelId": "anthropic.claude-3-haiku-20240307-v1:0"}


def _fill_session(g: TrafficGenerator, event: Event) -> None:
    event["requestParameters"] = {"sessionId": f"{g.user().name}-{g.token(26)}"}
    event["responseElements"] = {"sessionId": event["requestParameters"]["sessionId"]}


_FILL: dict[str, Callable[[TrafficGenerator, Event], None]] = {
    "empty": _fill_empty,
    "assume": _fill_assume,
    "decrypt": _fill_decrypt,
    "instances": _fill_instances,
    "filters": _fill_filters,
    "bucket": _fill_bucket,
    "object": _fill_object,
    "logstream": _fill_logstream,
    "ssminfo": _fill_ssminfo,
    "secret": _fill_secret,
    "parameter": _fill_parameter,
    "role": _fill_role,
    "table": _fill_table,
    "function": _fill_function,
    "tags": _fill_tags,
    "policy": _fill_policy,
    "trail": _fill_trail,
    "run": _fill_run,
    "console": _fill_console,
    "model": _fill_model,
    "session": _fill_session,
}


# --- interesting events ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Scenario:
    """A kind of security-relevant event a detection rule set is expected to alert on."""

    name: str
    weight: float
    build: Callable[[TrafficGenerator], Event]


def _write(
    g: TrafficGenerator, source: str, name: str, request: Any = None, response: Any = None, *, admin_role: bool = False
) -> Event:
    """A write made by a human: an IAM user (long-term key) or an admin SSO role."""
    principal = g.human_role() if admin_role or g._rng.random() < 0.4 else g.user()
    return g.base(source, name, g.identity(principal), False, request=request, response=response)


def _s_create_access_key(g: TrafficGenerator) -> Event:
    user = g.user().name
    return _write(
        g,
        "iam.amazonaws.com",
        "CreateAccessKey",
        {"userName": user},
        {
            "accessKey": {
                "accessKeyId": "AKIA" + g._ident(16),
                "status": "Active",
                "userName": user,
                "createDate": "Aug 1, 2024 9:12:44 AM",
            }
        },
    )


def _s_start_session(g: TrafficGenerator) -> Event:
    principal = g.user() if g._rng.random() < 0.5 else g.role()
    session_id = f"{principal.name}-{g.token(26)}"
    event = g.base(
        "ssm.amazonaws.com",
        "StartSession",
        g.identity(principal),
        False,
        request={"target": g.instance_id()},
        response={
            "sessionId": session_id,
            "tokenValue": "Value hidden due to security reasons.",
            "streamUrl": f"wss://ssmmessages.us-east-1.amazonaws.com/v1/data-channel/{session_id}"
            f"?role=publish_subscribe&cell-number={g.token(40)}",
        },
    )
    return event


def _s_stop_logging(g: TrafficGenerator) -> Event:
    return _write(g, "cloudtrail.amazonaws.com", "StopLogging", {"name": "org-trail"})


def _s_delete_trail(g: TrafficGenerator) -> Event:
    return _write(g, "cloudtrail.amazonaws.com", "DeleteTrail", {"name": "org-trail"})


def _s_event_selectors(g: TrafficGenerator) -> Event:
    selectors = [
        {
            "readWriteType": "ReadOnly",
            "includeManagementEvents": False,
            "dataResources": [],
            "excludeManagementEventSources": [],
        }
    ]
    return _write(
        g,
        "cloudtrail.amazonaws.com",
        "PutEventSelectors",
        {"trailName": "org-trail", "eventSelectors": selectors},
        {"eventSelectors": selectors},
    )


def _s_open_ssh(g: TrafficGenerator) -> Event:
    group = g.hex_id("sg-")
    return _write(
        g,
        "ec2.amazonaws.com",
        "AuthorizeSecurityGroupIngress",
        {
            "groupId": group,
            "ipPermissions": {
                "items": [
                    {
                        "ipProtocol": "tcp",
                        "fromPort": 22,
                        "toPort": 22,
                        "groups": {},
                        "ipRanges": {"items": [{"cidrIp": ANY_IPV4}]},
                    }
                ]
            },
        },
        {
            "requestId": g._uuid(),
            "_return": True,
            "securityGroupRuleSet": {
                "items": [
                    {
                        "groupId": group,
                        "isEgress": False,
                        "ipProtocol": "tcp",
                        "fromPort": 22,
                        "toPort": 22,
                        "cidrIpv4": ANY_IPV4,
                        "securityGroupRuleId": g.hex_id("sgr-"),
                    }
                ]
            },
        },
    )


def _s_bucket_policy(g: TrafficGenerator) -> Event:
    bucket = g.bucket()
    policy = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "PublicRead",
                "Effect": "Allow",
                "Principal": "*",
                "Action": "s3:GetObject",
                "Resource": f"arn:aws:s3:::{bucket}/*",
            }
        ],
    }
    event = _write(
        g,
        "s3.amazonaws.com",
        "PutBucketPolicy",
        {"bucketName": bucket, "Host": f"{bucket}.s3.amazonaws.com", "bucketPolicy": policy, "policy": ""},
    )
    return event


def _s_bucket_acl(g: TrafficGenerator) -> Event:
    bucket = g.bucket()
    grants = {
        "Grant": [
            {
                "Grantee": {"xsi:type": "Group", "URI": "http://acs.amazonaws.com/groups/global/AllUsers"},
                "Permission": "READ",
            }
        ]
    }
    return _write(
        g,
        "s3.amazonaws.com",
        "PutBucketAcl",
        {"bucketName": bucket, "acl": "", "AccessControlPolicy": {"AccessControlList": grants}},
    )


def _s_delete_public_access_block(g: TrafficGenerator) -> Event:
    bucket = g.bucket()
    return _write(
        g, "s3.amazonaws.com", "DeleteBucketPublicAccessBlock", {"bucketName": bucket, "publicAccessBlock": ""}
    )


def _console(g: TrafficGenerator, identity: Event, success: bool, mfa: str) -> Event:
    identity.pop("accessKeyId", None)
    event = g.base(
        "signin.amazonaws.com",
        "ConsoleLogin",
        identity,
        False,
        response={"ConsoleLogin": "Success" if success else "Failure"},
        user_agent=g._rng.choice(_BROWSER_AGENTS),
        event_type="AwsConsoleSignIn",
    )
    event["additionalEventData"] = {
        "LoginTo": "https://console.aws.amazon.com/console/home",
        "MobileVersion": "No",
        "MFAUsed": mfa,
    }
    if not success:
        event["errorMessage"] = "Failed authentication"
    return event


def _s_console_no_mfa(g: TrafficGenerator) -> Event:
    return _console(g, g.identity(g.user()), True, "No")


def _s_console_failed(g: TrafficGenerator) -> Event:
    return _console(g, g.identity(g.user()), False, "No")


def _s_root_console(g: TrafficGenerator) -> Event:
    root = _Principal("Root", g._rng.choice(g.accounts), "root", "", "")
    return _console(g, g.identity(root), True, g._rng.choice(("Yes", "No")))


def _s_root_api(g: TrafficGenerator) -> Event:
    root = _Principal("Root", g._rng.choice(g.accounts), "root", "", "")
    identity = g.identity(root)
    identity["accessKeyId"] = "ASIA" + g._ident(16)
    return g.base(
        "ec2.amazonaws.com", "DescribeInstances", identity, True, request={"filterSet": {}}, user_agent=_USER_AGENTS[0]
    )


def _s_create_user(g: TrafficGenerator) -> Event:
    name = f"tmp-{g.token(6)}"
    return _write(
        g,
        "iam.amazonaws.com",
        "CreateUser",
        {"userName": name},
        {
            "user": {
                "userName": name,
                "path": "/",
                "userId": "AIDA" + g._ident(17),
                "arn": f"arn:aws:iam::{g.accounts[0]}:user/{name}",
                "createDate": "Aug 1, 2024 9:12:44 AM",
            }
        },
    )


def _s_attach_admin(g: TrafficGenerator) -> Event:
    return _write(
        g,
        "iam.amazonaws.com",
        "AttachUserPolicy",
        {"userName": g.user().name, "policyArn": "arn:aws:iam::aws:policy/AdministratorAccess"},
    )


def _s_login_profile(g: TrafficGenerator) -> Event:
    name = g._rng.choice(("CreateLoginProfile", "UpdateLoginProfile"))
    return _write(g, "iam.amazonaws.com", name, {"userName": g.user().name, "passwordResetRequired": False})


def _s_update_function_code(g: TrafficGenerator) -> Event:
    function = f"orders-api-{g.token(6)}"
    return _write(
        g,
        "lambda.amazonaws.com",
        "UpdateFunctionCode20150331v2",
        {"functionName": function, "zipFile": "<sensitiveDataRemoved>", "publish": False},
        {"functionName": function, "codeSha256": g.token(43) + "=", "codeSize": 1843, "runtime": "python3.12"},
    )


def _s_lambda_public(g: TrafficGenerator) -> Event:
    return _write(
        g,
        "lambda.amazonaws.com",
        "AddPermission20150331v2",
        {
            "functionName": f"orders-api-{g.token(6)}",
            "statementId": "public",
            "action": "lambda:InvokeFunction",
            "principal": "*",
        },
    )


def _s_lambda_layer(g: TrafficGenerator) -> Event:
    return _write(
        g,
        "lambda.amazonaws.com",
        "UpdateFunctionConfiguration20150331v2",
        {
            "functionName": f"orders-api-{g.token(6)}",
            "layers": [f"arn:aws:lambda:us-east-1:{g.accounts[-1]}:layer:ext-{g.token(5)}:1"],
        },
    )


def _s_assume_role_policy(g: TrafficGenerator) -> Event:
    document = (
        '{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"AWS":'
        '"arn:aws:iam::999988887777:root"},"Action":"sts:AssumeRole"}]}'
    )
    return _write(
        g, "iam.amazonaws.com", "UpdateAssumeRolePolicy", {"roleName": g.role().name, "policyDocument": document}
    )


def _s_role_admin(g: TrafficGenerator) -> Event:
    return _write(
        g,
        "iam.amazonaws.com",
        "AttachRolePolicy",
        {"roleName": f"backdoor-{g.token(5)}", "policyArn": "arn:aws:iam::aws:policy/AdministratorAccess"},
    )


def _s_inline_policy(g: TrafficGenerator) -> Event:
    name = g._rng.choice(("PutUserPolicy", "PutRolePolicy", "CreatePolicyVersion"))
    document = '{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"*","Resource":"*"}]}'
    return _write(
        g, "iam.amazonaws.com", name, {"policyName": "inline", "policyDocument": document, "userName": g.user().name}
    )


def _s_kms(g: TrafficGenerator) -> Event:
    name = g._rng.choice(("DisableKey", "ScheduleKeyDeletion"))
    request: Event = {"keyId": g._uuid()}
    if name == "ScheduleKeyDeletion":
        request["pendingWindowInDays"] = 7
    return _write(g, "kms.amazonaws.com", name, request)


def _s_config(g: TrafficGenerator) -> Event:
    name = g._rng.choice(("StopConfigurationRecorder", "DeleteDeliveryChannel"))
    key = "configurationRecorderName" if name.startswith("Stop") else "deliveryChannelName"
    return _write(g, "config.amazonaws.com", name, {key: "default"})


def _s_flow_logs(g: TrafficGenerator) -> Event:
    return _write(
        g,
        "ec2.amazonaws.com",
        "DeleteFlowLogs",
        {"DeleteFlowLogsRequest": {"FlowLogId": {"content": g.hex_id("fl-"), "tag": 1}}},
    )


def _s_nacl(g: TrafficGenerator) -> Event:
    return _write(
        g,
        "ec2.amazonaws.com",
        g._rng.choice(("CreateNetworkAclEntry", "ReplaceNetworkAclEntry")),
        {
            "networkAclId": g.hex_id("acl-"),
            "ruleNumber": 100,
            "egress": False,
            "ruleAction": "allow",
            "icmpTypeCode": {},
            "portRange": {"from": 0, "to": 65535},
            "aclProtocol": "-1",
            "cidrBlock": ANY_IPV4,
        },
    )


def _s_gateway(g: TrafficGenerator) -> Event:
    return _write(
        g,
        "ec2.amazonaws.com",
        g._rng.choice(("CreateInternetGateway", "AttachInternetGateway")),
        {"internetGatewayId": g.hex_id("igw-"), "vpcId": g.hex_id("vpc-")},
    )


def _s_route(g: TrafficGenerator) -> Event:
    return _write(
        g,
        "ec2.amazonaws.com",
        g._rng.choice(("CreateRoute", "ReplaceRoute")),
        {"routeTableId": g.hex_id("rtb-"), "destinationCidrBlock": ANY_IPV4, "gatewayId": g.hex_id("igw-")},
    )


def _s_vpc(g: TrafficGenerator) -> Event:
    return _write(
        g,
        "ec2.amazonaws.com",
        g._rng.choice(("CreateVpcPeeringConnection", "ModifyVpcAttribute")),
        {"vpcId": g.hex_id("vpc-"), "peerOwnerId": "999988887777"},
    )


def _s_security_group(g: TrafficGenerator) -> Event:
    return _write(
        g,
        "ec2.amazonaws.com",
        g._rng.choice(("CreateSecurityGroup", "RevokeSecurityGroupIngress")),
        {"groupName": f"sg-{g.token(6)}", "groupDescription": "temp", "vpcId": g.hex_id("vpc-")},
    )


def _s_share_snapshot(g: TrafficGenerator) -> Event:
    return _write(
        g,
        "ec2.amazonaws.com",
        "ModifySnapshotAttribute",
        {
            "snapshotId": g.hex_id("snap-"),
            "attributeType": "CREATE_VOLUME_PERMISSION",
            "createVolumePermission": {"add": {"items": [{"userId": "999988887777"}]}},
        },
    )


def _s_share_ami(g: TrafficGenerator) -> Event:
    return _write(
        g,
        "ec2.amazonaws.com",
        "ModifyImageAttribute",
        {
            "imageId": g.hex_id("ami-"),
            "attributeType": "launchPermission",
            "launchPermission": {"add": {"items": [{"userId": "999988887777"}]}},
        },
    )


def _s_share_rds(g: TrafficGenerator) -> Event:
    return _write(
        g,
        "rds.amazonaws.com",
        "ModifyDBSnapshotAttribute",
        {"dBSnapshotIdentifier": f"orders-{g.token(5)}", "attributeName": "restore", "valuesToAdd": ["999988887777"]},
    )


def _s_password_data(g: TrafficGenerator) -> Event:
    event = g.base(
        "ec2.amazonaws.com", "GetPasswordData", g.identity(g.role()), True, request={"instanceId": g.instance_id()}
    )
    return event


def _s_send_command(g: TrafficGenerator) -> Event:
    return _write(
        g,
        "ssm.amazonaws.com",
        "SendCommand",
        {
            "documentName": "AWS-RunShellScript",
            "instanceIds": [g.instance_id()],
            "interactive": False,
            "parameters": "HIDDEN_DUE_TO_SECURITY_REASONS",
        },
        {"command": {"commandId": g._uuid(), "documentName": "AWS-RunShellScript", "status": "Pending"}},
    )


def _s_ssh_key(g: TrafficGenerator) -> Event:
    return _write(
        g,
        "ec2-instance-connect.amazonaws.com",
        "SendSSHPublicKey",
        {
            "instanceId": g.instance_id(),
            "instanceOSUser": "ec2-user",
            "sSHPublicKey": "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAI" + g.token(43),
        },
        {"requestId": g._uuid(), "success": True},
    )


def _s_federation_token(g: TrafficGenerator) -> Event:
    return g.base(
        "sts.amazonaws.com",
        "GetFederationToken",
        g.identity(g.user()),
        False,
        request={"name": "backup", "policy": '{"Statement":[{"Effect":"Allow","Action":"*","Resource":"*"}]}'},
    )


def _s_organizations(g: TrafficGenerator) -> Event:
    name = g._rng.choice(("LeaveOrganization", "CreateAccount", "InviteAccountToOrganization", "DetachPolicy"))
    return _write(g, "organizations.amazonaws.com", name, None, admin_role=True)


def _s_dns_logs(g: TrafficGenerator) -> Event:
    return _write(
        g,
        "route53resolver.amazonaws.com",
        "DeleteResolverQueryLogConfig",
        {"resolverQueryLogConfigId": g.hex_id("rqlc-", 15)},
    )


def _s_trust_anchor(g: TrafficGenerator) -> Event:
    return _write(
        g,
        "rolesanywhere.amazonaws.com",
        "CreateTrustAnchor",
        {
            "name": f"anchor-{g.token(5)}",
            "enabled": True,
            "source": {"sourceType": "CERTIFICATE_BUNDLE", "sourceData": {"x509CertificateData": g.token(200)}},
        },
    )


def _s_secret_by_user(g: TrafficGenerator) -> Event:
    event = g.base("secretsmanager.amazonaws.com", "GetSecretValue", g.identity(g.user()), True)
    _fill_secret(g, event)
    return event


def _s_secure_parameters(g: TrafficGenerator) -> Event:
    return g.base(
        "ssm.amazonaws.com",
        "GetParameters",
        g.identity(g.user()),
        True,
        request={"names": [f"/prod/creds/{g.token(6)}" for _ in range(5)], "withDecryption": True},
    )


def _s_gpu_instances(g: TrafficGenerator) -> Event:
    event = g.base("ec2.amazonaws.com", "RunInstances", g.identity(g.role()), False)
    _fill_run(g, event)
    event["requestParameters"]["instanceType"] = g._rng.choice(("p3.16xlarge", "p4d.24xlarge", "g5.48xlarge"))
    return event


def _s_user_data(g: TrafficGenerator) -> Event:
    return _write(
        g,
        "ec2.amazonaws.com",
        "ModifyInstanceAttribute",
        {"instanceId": g.instance_id(), "userData": "<sensitiveDataRemoved>"},
    )


def _s_model_access(g: TrafficGenerator) -> Event:
    return g.base(
        "bedrock.amazonaws.com",
        "PutFoundationModelEntitlement",
        g.identity(g.role()),
        False,
        request={"modelId": "anthropic.claude-3-sonnet-20240229-v1:0"},
        response={"status": "SUCCESS"},
    )


def _s_mfa_removed(g: TrafficGenerator) -> Event:
    user = g.user().name
    return _write(
        g,
        "iam.amazonaws.com",
        "DeactivateMFADevice",
        {"userName": user, "serialNumber": f"arn:aws:iam::{g.accounts[0]}:mfa/{user}"},
    )


def _s_access_denied_burst(g: TrafficGenerator) -> Event:
    """Enumeration with a stolen key: a denied IAM read by a user."""
    event = g.base("iam.amazonaws.com", "ListRoles", g.identity(g.user()), True)
    event["errorCode"] = "AccessDenied"
    event["errorMessage"] = "User is not authorized to perform: iam:ListRoles"
    return event


SCENARIOS: tuple[Scenario, ...] = (
    Scenario("ssm-start-session", 10, _s_start_session),
    Scenario("iam-create-access-key", 8, _s_create_access_key),
    Scenario("console-login-without-mfa", 5, _s_console_no_mfa),
    Scenario("console-login-failed", 4, _s_console_failed),
    Scenario("ec2-open-ssh-to-world", 4, _s_open_ssh),
    Scenario("ssm-send-command", 3, _s_send_command),
    Scenario("s3-public-bucket-policy", 3, _s_bucket_policy),
    Scenario("iam-create-user", 3, _s_create_user),
    Scenario("lambda-update-function-code", 3, _s_update_function_code),
    Scenario("ec2-security-group-change", 3, _s_security_group),
    Scenario("iam-access-denied-enumeration", 3, _s_access_denied_burst),
    Scenario("root-console-login", 1.5, _s_root_console),
    Scenario("root-api-call", 1, _s_root_api),
    Scenario("iam-attach-admin-user-policy", 2, _s_attach_admin),
    Scenario("iam-login-profile", 2, _s_login_profile),
    Scenario("iam-inline-policy", 2, _s_inline_policy),
    Scenario("iam-attach-admin-role-policy", 1.5, _s_role_admin),
    Scenario("ec2-route-change", 2, _s_route),
    Scenario("ec2-instance-connect", 2, _s_ssh_key),
    Scenario("secretsmanager-read-by-user", 1.5, _s_secret_by_user),
    Scenario("ssm-securestring-by-user", 1, _s_secure_parameters),
    Scenario("s3-public-acl", 1, _s_bucket_acl),
    Scenario("s3-delete-public-access-block", 1, _s_delete_public_access_block),
    Scenario("cloudtrail-stop-logging", 1, _s_stop_logging),
    Scenario("cloudtrail-delete-trail", 1, _s_delete_trail),
    Scenario("cloudtrail-event-selectors", 0.5, _s_event_selectors),
    Scenario("iam-update-assume-role-policy", 1, _s_assume_role_policy),
    Scenario("lambda-public-permission", 1, _s_lambda_public),
    Scenario("lambda-layer-added", 1, _s_lambda_layer),
    Scenario("kms-disable-or-delete-key", 1, _s_kms),
    Scenario("config-recorder-stopped", 1, _s_config),
    Scenario("vpc-flow-logs-deleted", 1, _s_flow_logs),
    Scenario("ec2-nacl-change", 1, _s_nacl),
    Scenario("ec2-gateway-change", 1, _s_gateway),
    Scenario("ec2-vpc-change", 1, _s_vpc),
    Scenario("ec2-share-snapshot", 1, _s_share_snapshot),
    Scenario("ec2-share-ami", 1, _s_share_ami),
    Scenario("rds-share-snapshot", 1, _s_share_rds),
    Scenario("ec2-get-password-data", 1, _s_password_data),
    Scenario("ec2-gpu-instances", 1, _s_gpu_instances),
    Scenario("ec2-modify-user-data", 1, _s_user_data),
    Scenario("sts-federation-token", 1, _s_federation_token),
    Scenario("iam-mfa-deactivated", 1, _s_mfa_removed),
    Scenario("bedrock-model-access", 0.5, _s_model_access),
    Scenario("organizations-change", 0.5, _s_organizations),
    Scenario("route53-query-logs-deleted", 0.3, _s_dns_logs),
    Scenario("rolesanywhere-trust-anchor", 0.3, _s_trust_anchor),
)


def seed_triggers(n: int, seed: int = 0) -> list[Event]:
    """`n` events that trigger the seed config's two rules, alternating CreateAccessKey and StartSession."""
    generator = TrafficGenerator(seed=seed, match_rate=0.0)
    return [(_s_create_access_key if i % 2 == 0 else _s_start_session)(generator) for i in range(n)]


# --- CloudWatch Logs subscription records --------------------------------------------------------------------

SUBSCRIPTION_START_MS = 1_722_502_800_000  # DEFAULT_START in milliseconds: deterministic record bytes


def _as_bytes(event: Event | bytes) -> bytes:
    return event if isinstance(event, bytes) else orjson.dumps(event)


def pack_subscription_records(
    events: Iterable[Event | bytes],
    per_record: int | tuple[int, int] = (1, 120),
    seed: int = 0,
) -> list[bytes]:
    """Pack events (dicts or JSON bytes) into gzip CloudWatch Logs subscription records, as Kinesis carries them.

    `per_record` is a fixed count or an inclusive (low, high) range drawn per record (CloudWatch Logs batches
    from one to a few hundred log events per record; most carry tens). The encoding is decode's own
    `encode_subscription_record`, so what this packs is exactly what the consumer reads.
    """
    rng = random.Random(seed)
    messages = [_as_bytes(event) for event in events]
    records: list[bytes] = []
    index = 0
    while index < len(messages):
        count = max(1, per_record if isinstance(per_record, int) else rng.randint(*per_record))
        chunk = messages[index : index + count]
        records.append(encode_subscription_record(chunk, timestamp_ms=SUBSCRIPTION_START_MS + index))
        index += count
    return records


def control_message_record() -> bytes:
    """The health-check record CloudWatch Logs sends when a subscription is created."""
    return encode_subscription_record([], message_type=CONTROL_MESSAGE, timestamp_ms=SUBSCRIPTION_START_MS)
