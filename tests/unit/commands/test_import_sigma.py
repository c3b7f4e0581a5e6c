"""`stream-processor import-sigma`: what a user sees, what it writes, its exit status, and that the rule
file it writes works with `validate --explain`, `test-rules` and the engine."""

from __future__ import annotations

import sys
import textwrap
import tomllib
from pathlib import Path

import pytest

from stream_processor.cli import main
from stream_processor.config import load_config

CLOUDTRAIL = """\
title: Console Login Without MFA
id: 11111111-2222-4333-8444-555555555555
status: test
description: A console login without MFA.
references:
    - https://example.com/mfa
author: Jane Doe (@jane)
date: 2024-01-02
tags:
    - attack.initial-access
    - attack.t1078.004
    - cve.2021-0001
logsource:
    product: aws
    service: cloudtrail
detection:
    selection:
        eventName: ConsoleLogin
        additionalEventData.MFAUsed: 'No'
    filter:
        userIdentity.type: AssumedRole
    condition: selection and not filter
falsepositives:
    - Break-glass accounts
level: high
"""


def _rule(title: str, detection: str, status: str = "test", product: str = "aws") -> str:
    lines = [f"title: {title}", f"status: {status}", "author: Someone", "logsource:", f"    product: {product}"]
    lines += ["    service: cloudtrail", "detection:"]
    lines += ["    " + line for line in detection.splitlines()]
    return "\n".join([*lines, "level: low", ""])


@pytest.fixture
def rules(tmp_path: Path) -> Path:
    folder = tmp_path / "sigma" / "rules"
    folder.mkdir(parents=True)
    (folder / "login.yml").write_text(CLOUDTRAIL)
    (folder / "old.yaml").write_text(
        _rule("Old rule", "selection:\n    eventName: StopLogging\ncondition: selection", status="deprecated")
    )
    (folder / "windows.yml").write_text(
        _rule("Windows rule", "selection:\n    Image: x\ncondition: selection", product="windows")
    )
    (folder / "notes.txt").write_text("not a rule")
    return folder


def _import(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(["import-sigma", *args])
    out, err = capsys.readouterr()
    return code, out, err


def test_a_folder_becomes_a_rule_file_that_loads(
    rules: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "sigma.toml"
    code, _, err = _import(capsys, str(rules), "-o", str(out))
    assert code == 0, err
    assert "2 of 2 AWS CloudTrail rule(s) converted (3 file(s) read)" in err
    assert "skipped 1 rule(s) for other log sources (product=windows service=cloudtrail: 1)" in err
    config = load_config(str(out))
    login = config.rule("Console Login Without MFA")
    assert login.severity == "high"
    assert login.tags == ("initial-access", "T1078.004", "cve.2021-0001")
    assert login.references == ("https://example.com/mfa",)
    assert login.false_positives == ("Break-glass accounts",)
    assert (
        login.description == "A console login without MFA. (Sigma rule by Jane Doe (@jane), Detection Rule License 1.1)"
    )
    assert login.destinations == ("stdout",) and config.destination("stdout").type == "stdout"
    assert login.enabled and not config.rule("Old rule").enabled  # deprecated: loaded, never matched
    text = out.read_text()
    assert "# Sigma rule 11111111-2222-4333-8444-555555555555 from " in text
    assert "author: Jane Doe (@jane); licence: Detection Rule License 1.1; status: test; date: 2024-01-02" in text
    assert "https://github.com/SigmaHQ/Detection-Rule-License" in text
    assert text == _again(rules, tmp_path, capsys)  # no timestamps: the same rules give the same file


def _again(rules: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> str:
    again = tmp_path / "again.toml"
    assert main(["import-sigma", str(rules), "-o", str(again)]) == 0
    capsys.readouterr()
    return again.read_text().replace(str(again), "")


def test_a_rule_that_cannot_be_converted_is_named_with_its_reason(
    rules: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (rules / "ipv6.yml").write_text(
        _rule("IPv6 callers", "selection:\n    sourceIPAddress|cidr: '2001:db8::/32'\ncondition: selection")
    )
    (rules / "broken.yml").write_text("title: [unclosed\n")
    out = tmp_path / "sigma.toml"
    code, _, err = _import(capsys, str(rules), "-o", str(out))
    assert code == 1
    assert "2 of 4 AWS CloudTrail rule(s) converted" in err
    assert "ipv6.yml" in err and "IPv6 network 2001:db8::/32" in err
    assert "broken.yml" in err and "not a Sigma rule file" in err
    text = out.read_text()  # the rules that did convert are written, the others listed in the file too
    assert "# Not converted:" in text and "ipv6.yml (IPv6 callers): cidr of sourceIPAddress: IPv6 network" in text
    assert len(load_config(str(out)).rules) == 2


def test_destinations_given_are_used_and_left_to_the_file_they_join(
    rules: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = _import(capsys, str(rules), "--destination", "Slack Audit", "--destination", "PagerDuty")
    assert code == 0
    document = tomllib.loads(out)
    assert "destination" not in document
    assert all(rule["destinations"] == ["Slack Audit", "PagerDuty"] for rule in document["rule"])
    base = tmp_path / "tattletail.toml"
    base.write_text(
        '[[destination]]\nid = "Slack Audit"\ntype = "stdout"\n\n[[destination]]\nid = "PagerDuty"\ntype = "stdout"\n'
    )
    merged = tmp_path / "all.toml"
    merged.write_text(base.read_text() + out)  # what docs/sigma.md suggests: cat tattletail.toml sigma.toml
    assert len(load_config(str(merged)).rules) == 2


def test_usage_errors_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = _import(capsys, str(tmp_path / "missing"))
    assert code == 2 and "no such file or folder" in err
    (tmp_path / "rule.txt").write_text(CLOUDTRAIL)
    code, _, err = _import(capsys, str(tmp_path / "rule.txt"))
    assert code == 2 and "not a Sigma rule file (.yml or .yaml)" in err


def test_no_cloudtrail_rule_is_a_failure_and_writes_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "w.yml").write_text(_rule("W", "selection:\n    Image: x\ncondition: selection", product="windows"))
    out = tmp_path / "out.toml"
    code, _, err = _import(capsys, str(tmp_path), "-o", str(out))
    assert code == 1 and "nothing written" in err and not out.exists()


def test_repeated_titles_get_unique_names(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for name in ("a", "b"):
        (tmp_path / f"{name}.yml").write_text(_rule("Same", f"selection:\n    eventName: {name}\ncondition: selection"))
    code, out, _ = _import(capsys, str(tmp_path))
    assert code == 0
    names = [rule["name"] for rule in tomllib.loads(out)["rule"]]
    assert len(set(names)) == 2 and all(name.startswith("Same (") for name in names)


def test_without_pysigma_the_command_says_how_to_install_it(
    rules: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, "stream_processor.sigma.importer", None)
    code, _, err = _import(capsys, str(rules))
    assert code == 2 and "pip install 'stream-processor[sigma]'" in err


def test_validate_explain_shows_every_imported_rule_compiled(
    rules: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "sigma.toml"
    assert main(["import-sigma", str(rules), "-o", str(out)]) == 0
    capsys.readouterr()
    assert main(["validate", "--explain", str(out)]) == 0
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("  rule #")]
    assert len(lines) == 2 and all(": compiled" in line for line in lines), lines


def test_test_rules_runs_the_examples_of_an_imported_file(
    rules: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "sigma.toml"
    assert main(["import-sigma", str(rules), "-o", str(out)]) == 0
    tests = tmp_path / "sigma.tests.toml"  # beside the imported file: read by test-rules on its own
    tests.write_text(
        textwrap.dedent(
            """\
            [[rule]]
            name = "Console Login Without MFA"
            [[rule.test]]
            event = { eventName = "ConsoleLogin", additionalEventData.MFAUsed = "No", userIdentity.type = "IAMUser" }
            expect = "match"
            [[rule.test]]
            expect = "no_match"
            [rule.test.event]
            eventName = "consolelogin"
            additionalEventData.MFAUsed = "no"
            userIdentity.type = "Assumedrole"
            [[rule.test]]
            event = '{"eventName": "ConsoleLogin", "additionalEventData": null}'
            expect = "no_match"

            [[rule]]
            name = "Old rule"
            [[rule.test]]
            event = { eventName = "StopLogging" }
            expect = "match"
            """
        )
    )
    capsys.readouterr()
    assert main(["test-rules", str(out)]) == 0, capsys.readouterr()
    assert "4 of 4 tests passed" in capsys.readouterr().out
    tests.write_text(tests.read_text().replace('expect = "no_match"', 'expect = "match"', 1))
    assert main(["test-rules", str(out)]) == 1  # a wrong expectation fails: the tests really ran
