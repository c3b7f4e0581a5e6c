"""The jq each Sigma construct becomes (docs/sigma.md lists the same shapes): natural jq, one condition per
field comparison, that never raises and that the compiled matcher takes. The differential tests prove
these shapes right; this table keeps them stable for the matcher's index, which recognizes them."""

from __future__ import annotations

import pytest

from stream_processor.config import Rule
from stream_processor.matcher.fast import plan_rule
from stream_processor.sigma.importer import ConvertedRule, ImportProblem, convert_text

SHAPES = {
    "eventName: CreateUser": '(.eventName | tostring | ascii_downcase) == "createuser"',
    "eventName: [CreateUser, DeleteUser]": '(.eventName | tostring | ascii_downcase | IN("createuser", "deleteuser"))',
    "requestParameters.userName: admin": (
        '(first(.requestParameters.userName?, null) | tostring | ascii_downcase) == "admin"'
    ),
    "userIdentity.sessionContext.sessionIssuer.type: Role": (
        '(first(.userIdentity.sessionContext?.sessionIssuer?.type?, null) | tostring | ascii_downcase) == "role"'
    ),
    "userAgent|contains: S3 Browser": '(.userAgent | tostring | ascii_downcase | contains("s3 browser"))',
    "eventName|startswith: Describe": '(.eventName | tostring | ascii_downcase | startswith("describe"))',
    "eventName|endswith: Policy": '(.eventName | tostring | ascii_downcase | endswith("policy"))',
    "eventName: 'Put*Policy'": (
        '(.eventName | tostring | ascii_downcase | (endswith("\\n") | not) and test("^put(?:.|\\n)*policy$"))'
    ),
    "eventName: 'Describe*s'": (
        '(.eventName | tostring | ascii_downcase | (endswith("\\n") | not) and test("^describe(?:.|\\n)*s$"))'
    ),
    "eventName: 'Get*'": '(.eventName | tostring | ascii_downcase | startswith("get"))',
    "eventName: 'a*b*'": '(.eventName | tostring | ascii_downcase | test("^a(?:.|\\n)*b(?:.|\\n)*"))',
    "eventName: 'Get?'": '((.eventName | tostring | ascii_downcase) + "\\u0000" | test("^get(?:.|\\n)\\u0000$"))',
    "eventName: 'Get\\*'": '(.eventName | tostring | ascii_downcase) == "get*"',
    "errorCode: '*'": ".errorCode != null",
    "errorCode: null": ".errorCode == null",
    "errorCode: 'null'": '.errorCode != null and (.errorCode | tostring | ascii_downcase) == "null"',
    "errorCode|startswith: 'n'": '.errorCode != null and (.errorCode | tostring | ascii_downcase | startswith("n"))',
    "eventName|cased: CreateUser": '(.eventName | tostring) == "CreateUser"',
    "userAgent|contains|all: [aws-cli, boto]": (
        '(.userAgent | tostring | ascii_downcase | contains("aws-cli")) and '
        '(.userAgent | tostring | ascii_downcase | contains("boto"))'
    ),
    "requestParameters.policyArn|exists: true": '(.requestParameters | type == "object" and has("policyArn"))',
    "errorCode|exists: false": '(has("errorCode") | not)',
    "requestParameters.maxResults: 50": '(first(.requestParameters.maxResults?, null) | tostring) == "50"',
    "responseElements.publiclyAccessible: true": (
        '(first(.responseElements.publiclyAccessible?, null) | tostring | ascii_downcase) == "true"'
    ),
    "userIdentity.arn|re: '.+:assumed-role/aws:.+'": (
        '(first(.userIdentity.arn?, null) | tostring | test(".+:assumed-role/aws:.+"))'
    ),
    "userAgent|re|i: '^aws-cli/\\d+'": '(.userAgent | tostring | ascii_downcase | test("^aws-cli/[0-9]+"))',
    "userAgent|re|s: 'a.b'": '(.userAgent | tostring | test("a(?:.|\\n)b"))',
    "userAgent|re|m: '^a$'": '(.userAgent | tostring | test("(?:^|\\n)a(?:$|\\n)"))',
    "sourceIPAddress|cidr: 192.168.0.0/16": (
        '(.sourceIPAddress | tostring | (endswith("\\n") | not) and test("^192\\\\.168\\\\.(?:[0-9]|[1-9][0-9]|1[0-9]'
        '[0-9]|2[0-4][0-9]|25[0-5])\\\\.(?:[0-9]|[1-9][0-9]|1[0-9][0-9]|2[0-4][0-9]|25[0-5])$"))'
    ),
    "userIdentity.userName|fieldref: requestParameters.userName": (
        "first(.userIdentity.userName?, null) != null and first(.requestParameters.userName?, null) != null and "
        "(first(.userIdentity.userName?, null) | tostring | ascii_downcase) == "
        "(first(.requestParameters.userName?, null) | tostring | ascii_downcase)"
    ),
    "userIdentity.arn|fieldref|endswith: requestParameters.userName": (
        "first(.userIdentity.arn?, null) != null and first(.requestParameters.userName?, null) != null and "
        "((first(.requestParameters.userName?, null) | tostring | ascii_downcase) as $other | "
        "first(.userIdentity.arn?, null) | tostring | ascii_downcase | endswith($other))"
    ),
    "requestParameters.durationSeconds|gt: 3600": (
        '(first(.requestParameters.durationSeconds?, null) | type == "number" and . > 3600)'
    ),
    "eventSource|neq: iam.amazonaws.com": '((.eventSource | tostring | ascii_downcase) == "iam.amazonaws.com" | not)',
    "requestParameters.userData|base64: 'curl '": (
        '(first(.requestParameters.userData?, null) | tostring | ascii_downcase) == "y3vybca="'
    ),
    "requestParameters.x-amz-id|contains: a": (
        '(first(.requestParameters["x-amz-id"]?, null) | tostring | ascii_downcase | contains("a"))'
    ),
}


def _convert(item: str, condition: str = "selection") -> ConvertedRule | ImportProblem:
    text = (
        "title: t\nlogsource: {product: aws, service: cloudtrail}\n"
        f"detection:\n  selection:\n    {item}\n  filter:\n    eventName: x\n  condition: {condition}\n"
    )
    outcomes = convert_text(text, "t.yml")
    assert len(outcomes) == 1
    return outcomes[0]


@pytest.mark.parametrize(("item", "jq"), list(SHAPES.items()), ids=list(SHAPES))
def test_each_construct_has_its_shape(item: str, jq: str) -> None:
    converted = _convert(item)
    assert isinstance(converted, ConvertedRule), converted
    assert converted.jq_match == f"select({jq})"
    assert plan_rule(Rule(name="t", jq_match=converted.jq_match)).path == "compiled"


def test_conditions_join_with_and_or_not() -> None:
    converted = _convert("eventName: a", "selection and not filter or 1 of sel*")
    assert isinstance(converted, ConvertedRule)
    assert converted.jq_match == (
        'select(((.eventName | tostring | ascii_downcase) == "a" and ((.eventName | tostring | ascii_downcase) == "x"'
        ' | not)) or (.eventName | tostring | ascii_downcase) == "a")'
    )


@pytest.mark.parametrize(
    ("item", "reason"),
    [
        ("sourceIPAddress|cidr: '2001:db8::/32'", "IPv6 network"),
        ("userAgent|re: 'a(?=b)'", "group extension"),
        ("userAgent|re|startswith: 'ab'", "re with startswith/endswith"),
        ("userAgent|expand: '%admins%'", "placeholder %admins%"),
        ("eventTime|minute: 5", "time modifiers"),
        ("requestParameters.ratio: 1.5", "float"),
        ("'|all': [a, b]", "keyword search"),
        ("eventName..x: a", "empty part"),
    ],
    ids=lambda value: value,
)
def test_what_cannot_be_exact_is_refused_with_a_reason(item: str, reason: str) -> None:
    refused = _convert(item)
    assert isinstance(refused, ImportProblem) and not refused.skipped
    assert reason in refused.reason
