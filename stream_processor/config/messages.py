"""How validation talks: labels, quoting, "did you mean", type names; never a value that could be a secret.

Every problem the validator reports is built from these, so each reads the same way: the file, the rule or
destination, what is wrong, and what to write instead.
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Iterable, Sequence
from datetime import date, datetime, time
from typing import Any

LABEL_LIMIT = 80
"""Characters of a user's string shown in a message (a rule name, an unknown key)."""


def is_name(value: Any) -> bool:
    return isinstance(value, str) and bool(value.strip())


def distinct_names(values: Iterable[Any]) -> list[str]:
    """The usable names among `values`, each once, in file order."""
    return list(dict.fromkeys(value for value in values if is_name(value)))


def rule_label(index: int, name: str | None) -> str:
    return f"rule #{index} {quote(name)}" if name is not None else f"rule #{index} (no name)"


def destination_label(index: int, destination_id: str | None) -> str:
    return f"destination #{index} {quote(destination_id)}" if destination_id is not None else f"destination #{index}"


def quote(text: str) -> str:
    """A user's string in double quotes on one line, escaped and capped."""
    if len(text) > LABEL_LIMIT:
        text = text[: LABEL_LIMIT - 1] + "…"
    return json.dumps(text, ensure_ascii=False)


def one_line(text: str) -> str:
    return " ".join(text.split())


def closest(word: str, candidates: Iterable[str]) -> str | None:
    """The candidate `word` most likely misspells (same letters in another case first), or None."""
    options = list(candidates)
    folded = [c for c in options if c.casefold() == word.casefold()]
    close = folded or difflib.get_close_matches(word, options, n=1, cutoff=0.6)
    return close[0] if close else None


def did_you_mean(word: str, candidates: Iterable[str]) -> str:
    close = closest(word, candidates)
    return f": did you mean {quote(close)}?" if close is not None else ""


def unknown_key(key: str, valid: Sequence[str]) -> str:
    hint = did_you_mean(key, valid)
    if hint:
        return f"unknown key {quote(key)}{hint}"
    return f"unknown key {quote(key)}: remove it (valid keys: {', '.join(valid)})"


def unknown_destination(destination_id: str, defined: Sequence[str]) -> str:
    message = f"destination {quote(destination_id)} is not defined"
    hint = did_you_mean(destination_id, defined)
    if hint:
        return message + hint
    if defined:
        return f"{message}: use one of {', '.join(quote(d) for d in defined)} or add a [[destination]] with that id"
    return f"{message}: add a [[destination]] with that id"


def example_value(key: str) -> str:
    examples = {
        "webhook_url": '"https://hooks.slack.com/services/..."',
        "sns_arn": '"arn:aws:sns:REGION:ACCOUNT:TOPIC"',
        "to_emails": '["security@example.com"]',
        "from_email": '"alerts@example.com"',
        "url": '"https://receiver.example.com/hooks/cloudtrail"',
        "hmac_secret": '"ssm:/stream-processor/webhook-hmac"',
        "routing_key": '"ssm:/stream-processor/pagerduty-routing-key"',
        "events_url": '"https://events.pagerduty.com/v2/enqueue"',
    }
    return examples.get(key, '"..."')


def json_kind(value: Any) -> str:
    """A JSON type name for a parsed JSON value."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    return "an array" if isinstance(value, list) else "an object"


def non_json_path(value: Any, path: str) -> str | None:
    """The path of the first TOML date/time inside `value` (JSON cannot hold one), or None."""
    if isinstance(value, datetime | date | time):
        return path
    if isinstance(value, dict):
        for key, item in value.items():
            found = non_json_path(item, f"{path}.{key}")
            if found is not None:
                return found
    if isinstance(value, list):
        for position, item in enumerate(value):
            found = non_json_path(item, f"{path}[{position}]")
            if found is not None:
                return found
    return None


def kind(value: Any) -> str:
    """A TOML type name for a value, never the value itself."""
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a float"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, datetime | date | time):
        return "a date/time"
    return type(value).__name__
