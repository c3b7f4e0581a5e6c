"""How `match` and `replay` print the alerts they find: text for a person, JSON lines for scripts."""

from __future__ import annotations

from typing import Any

from rich.console import Console

from stream_processor.alerts.render import output_text, summarize
from stream_processor.json_out import dumps_text
from stream_processor.model import Alert


class JsonlPrinter:
    """One JSON object per alert, for scripts: rule, eventID, output (the first jq output, as JSON)."""

    def __init__(self, stream: Any) -> None:
        self.stream = stream

    def __call__(self, alert: Alert) -> None:
        record = {
            "rule": alert.rule_name,
            "eventID": alert.event.event_id,
            "eventName": alert.event.event_name,
            "position": str(alert.event.position),
            "output": alert.output,
        }
        self.stream.write(dumps_text(record) + "\n")


class TextPrinter:
    """What a person reads: who did what, where and when, and the rule's output."""

    def __init__(self, console: Console) -> None:
        self.console = console

    def __call__(self, alert: Alert) -> None:
        facts = summarize(alert)
        lines = [
            f"● {alert.rule_name}: {facts.what}",
            f"    who:   {facts.who}",
            f"    where: {facts.where}",
            f"    when:  {facts.when}   eventID: {alert.event.event_id or '-'}",
        ]
        shown = output_text(alert)
        if shown is not None:
            lines.append(f"    match: {shown}")
        self.console.print("\n".join(lines), markup=False, soft_wrap=True)
