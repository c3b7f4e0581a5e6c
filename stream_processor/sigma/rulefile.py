"""Write converted Sigma rules as a rule file (tattletail's `[[rule]]` plus our extensions).

The file carries what the Detection Rule License asks of a shared copy: the authors, a link or path to
each rule and the licence; each rule's description names its author, so every alert does too. The
output is deterministic (no timestamps): importing the same rules twice gives the same file.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from stream_processor.sigma import STDOUT_DESTINATION
from stream_processor.sigma.importer import ConvertedRule, ImportResult, license_name

DRL_URL = "https://github.com/SigmaHQ/Detection-Rule-License"


def toml_string(text: str) -> str:
    """A TOML basic string (TOML's escapes are JSON's, plus DEL, which TOML wants escaped)."""
    return json.dumps(text, ensure_ascii=False).replace("\x7f", "\\u007f")


def toml_program(program: str) -> str:
    """A jq program as a TOML literal string ('...', no escaping to undo) when it can be one."""
    if "'" not in program and all(c == "\t" or (c >= " " and c != "\x7f") for c in program):
        return f"'{program}'"
    return toml_string(program)


def _toml_list(items: Sequence[str]) -> str:
    return "[" + ", ".join(toml_string(item) for item in items) + "]"


def _comment(text: str) -> str:
    return " ".join(text.split())


def render_rule_file(
    result: ImportResult,
    destinations: Sequence[str] = (),
    generator: str = "stream-processor import-sigma",
) -> str:
    """The rule file for `result`: every converted rule, and the rules that were not, as comments.

    Without `destinations`, one `stdout` destination is defined and every rule sends to it, so the file
    is valid and usable as is (`stream-processor match -c FILE`). With them, rules send to those ids,
    which the file you add the rules to must define.
    """
    licenses = sorted({rule.license for rule in result.rules}) or ["DRL-1.1"]
    lines = [
        f"# Sigma detections for AWS CloudTrail, converted to jq rules by `{generator}`.",
        f"# {len(result.rules)} rule(s) converted from {result.files} file(s)"
        + (f"; {len(result.failures)} could not be (listed at the end)." if result.failures else "."),
        "#",
        "# The rules are their authors' work (each rule below names them, and so does its description, which",
        "# every alert shows). They are licensed under: " + ", ".join(license_name(x) for x in licenses) + ".",
        f"# The Detection Rule License 1.1: {DRL_URL}",
        "# When you share this file, keep these notices, the authors and the links to the rules.",
        "# How values are matched and what each Sigma modifier becomes: docs/sigma.md.",
    ]
    if destinations:
        lines += [
            "#",
            "# Rules send to " + ", ".join(destinations) + ": add them to a rule file that defines these",
            "# destinations (e.g. `cat tattletail.toml sigma.toml > all.toml`).",
        ]
    for rule in result.rules:
        lines.append("")
        lines.extend(_rule_lines(rule, destinations or (STDOUT_DESTINATION,)))
    if not destinations:
        lines += ["", "[[destination]]", f"id = {toml_string(STDOUT_DESTINATION)}", 'type = "stdout"']
    if result.failures:
        lines += ["", "# Not converted:"]
        lines += [
            f"#   {_comment(f.source)}" + (f" ({_comment(f.title)})" if f.title else "") + f": {_comment(f.reason)}"
            for f in result.failures
        ]
    return "\n".join(lines) + "\n"


def _rule_lines(rule: ConvertedRule, destinations: Sequence[str]) -> list[str]:
    head = f"# Sigma rule {rule.sigma_id} " if rule.sigma_id else "# Sigma rule "
    lines = [head + f"from {_comment(rule.source)}"]
    if rule.url:
        lines.append(f"#   {_comment(rule.url)}")
    about = [f"author: {rule.author}" if rule.author else "author: not named", f"licence: {license_name(rule.license)}"]
    if rule.status:
        about.append(f"status: {rule.status}")
    if rule.date:
        about.append(f"date: {rule.date}")
    if rule.modified:
        about.append(f"modified: {rule.modified}")
    lines.append("#   " + _comment("; ".join(about)))
    lines += [
        "[[rule]]",
        f"name = {toml_string(rule.name)}",
        f"jq_match = {toml_program(rule.jq_match)}",
        f"description = {toml_string(rule.description)}",
        f"destinations = {_toml_list(destinations)}",
    ]
    if rule.severity:
        lines.append(f"severity = {toml_string(rule.severity)}")
    if rule.tags:
        lines.append(f"tags = {_toml_list(rule.tags)}")
    if rule.references:
        lines.append(f"references = {_toml_list(rule.references)}")
    if rule.false_positives:
        lines.append(f"false_positives = {_toml_list(rule.false_positives)}")
    if not rule.enabled:
        lines.append(f"enabled = false  # status: {rule.status}")
    return lines
