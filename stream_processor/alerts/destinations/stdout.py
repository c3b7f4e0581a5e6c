"""`stdout`: one JSON line per alert, for dry runs, pipes and scripts."""

from __future__ import annotations

import sys
from typing import TextIO

from stream_processor.alerts.destinations.base import Destination, register
from stream_processor.alerts.render import stdout_record
from stream_processor.errors import PermanentDeliveryError
from stream_processor.json_out import dumps_text
from stream_processor.model import Alert


@register
class StdoutDestination(Destination):
    """Prints `{"rule", "description", "eventID", "eventName", "output", "event"}` per alert, one per line."""

    TYPE = "stdout"

    stream: TextIO | None = None
    """Where to write; None means the `sys.stdout` of the moment (so redirection and capture work)."""

    def _send(self, alert: Alert) -> None:
        line = dumps_text(stdout_record(alert)) + "\n"
        stream = self.stream or sys.stdout
        try:
            stream.write(line)
            stream.flush()
        except BrokenPipeError:  # the reader went away: writing again will not help
            raise PermanentDeliveryError(f"stdout destination {self.id!r}: the reader closed the pipe") from None
