"""Hot reload on a running worker (the real KCL daemon on kinesis-local and moto): a good change is applied
without restart, a broken one is refused with a logged error, and alerts keep flowing under the last good rules."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from stream_processor.local.receiver import SlackReceiver
from stream_processor.local.stack import LocalStack

# The KCL consumer's own fixtures and helpers: workers run `consume` as separate processes.
from tests.integration.test_kcl_consumer import (  # noqa: F401 - fixtures are used by name
    Inbox,
    Produced,
    config_path,
    inbox,
    posted_ids,
    produce,
    receiver,
    start_worker,
    unique,
    wait_for,
)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(400)]

NEW_RULE = """
[[rule]]
name = "Seed triggers, second channel"
jq_match = 'select(.eventName == "CreateAccessKey" or .eventName == "StartSession")'
destinations = ["Slack New"]

[[destination]]
id = "Slack New"
type = "slack_webhook"
webhook_url = "{base}/new"
"""
BROKEN_RULE = """
[[rule]]
name = "Half written"
jq_match = 'select(.eventName == '
destinations = ["Not defined yet"]
"""


def test_a_running_worker_applies_a_good_change_and_refuses_a_broken_one(
    local_stack: LocalStack,
    new_stream: Callable[[int], str],
    receiver: SlackReceiver,  # noqa: F811 - the fixtures imported above
    inbox: Inbox,  # noqa: F811
    start_worker: Any,  # noqa: F811
    config_path: Path,  # noqa: F811
) -> None:
    # GIVEN a worker checking its rule file every second, with alerts flowing
    stream, application = new_stream(2), unique("app")
    first = produce(local_stack, stream, background=60, triggers=4, seed=81)
    worker = start_worker(stream, application, extra=["--reload-interval", "1"])
    wait_for("the first batch", lambda: inbox.count() >= len(first.event_ids), [worker])
    original = config_path.read_text()

    # WHEN a rule (and its destination) is added to the file
    base = f"http://127.0.0.1:{receiver.port}"
    config_path.write_text(original + NEW_RULE.format(base=base))
    wait_for("both shard processes to reload", lambda: worker.log().count("config reloaded from") >= 2, [worker])
    second = produce(local_stack, stream, background=60, triggers=4, seed=82)

    # THEN the new rule's alerts appear for the new events (and only for them), the old rules keep working
    wait_for("the new rule's alerts", lambda: sum(posted_ids(receiver, "/new").values()) >= 4, [worker])
    everything = Produced()
    everything.add(first)
    everything.add(second)
    wait_for("every event of both batches", lambda: inbox.count() >= len(everything.event_ids), [worker])
    assert posted_ids(receiver, "/new") == Counter(second.trigger_ids)

    # WHEN the file is replaced by a broken one
    config_path.write_text(original + NEW_RULE.format(base=base) + BROKEN_RULE)
    wait_for("the rejection", lambda: "config reload rejected" in worker.log(), [worker])
    third = produce(local_stack, stream, background=60, triggers=4, seed=83)
    everything.add(third)

    # THEN the worker says why, keeps running on the last good rules, and nothing is lost
    wait_for("every event of all three batches", lambda: inbox.count() >= len(everything.event_ids), [worker])
    wait_for(
        "the new rule's alerts for the third batch",
        lambda: posted_ids(receiver, "/new") == Counter(second.trigger_ids + third.trigger_ids),
        [worker],
    )
    log = worker.log()
    assert 'rule #5 "Half written": jq_match does not compile' in log
    assert '"Not defined yet" is not defined' in log
    assert worker.process.poll() is None
    assert worker.stop() == 0
    assert inbox.ids() == Counter(everything.event_ids)
    assert posted_ids(receiver, "/audit") == Counter(everything.trigger_ids)
