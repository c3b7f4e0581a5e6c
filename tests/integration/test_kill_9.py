"""Nothing lost under kill -9: the real consumer (KCL daemon on kinesis-local and moto), a processor or the whole
worker killed mid-batch, again and again (FAULT_RUNS, default 2, per kind).

Its own file so that pytest-xdist (one file per process) runs it beside test_nothing_lost.py, not after it.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import time
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest

from stream_processor.dedupe import SQLiteDedupeStore, Status, dedupe_key
from stream_processor.local.processes import cmdline, descendants
from stream_processor.local.stack import LocalStack
from tests.integration.test_kcl_consumer import (  # noqa: F401 - fixtures are used by name
    WAIT_SECONDS,
    Worker,
    _kcl_jars,
    start_worker,
    unique,
    wait_for,
)
from tests.integration.test_nothing_lost import (  # noqa: F401 - fixtures are used by name
    FAULT_RUNS,
    Key,
    Put,
    TimedReceiver,
    checkpoints,
    config_path,
    delivered,
    post_key,
    put_events,
    receiver,
    triggers_and_noise,
)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(900)]


# --- 5. kill -9 mid-batch -------------------------------------------------------------------------------------




def record_processors(worker: Worker) -> list[int]:
    return [pid for pid in descendants(worker.process.pid) if "stream_processor.kcl.processor" in cmdline(pid)]


def java_daemon(worker: Worker) -> int:
    [pid] = [pid for pid in descendants(worker.process.pid) if "MultiLangDaemon" in cmdline(pid)]
    return pid


def gone(pids: Sequence[int]) -> bool:
    return not any(Path(f"/proc/{pid}").exists() and "stream_processor" in cmdline(pid) for pid in pids)


def release_dead_leader_lock(stack: LocalStack, application: str, worker_id: str) -> None:
    """What the ~2 min expiry of a SIGKILLed worker's KCL 3 leader lock would do, at once (see kcl-local.md)."""
    dynamodb = stack.client("dynamodb")
    with contextlib.suppress(dynamodb.exceptions.ConditionalCheckFailedException):
        dynamodb.delete_item(
            TableName=f"{application}-CoordinatorState",
            Key={"key": {"S": "Leader"}},
            ConditionExpression="ownerName = :me",
            ExpressionAttributeValues={":me": {"S": worker_id}},
        )


SLOW_ANSWER = 1.0  # each Slack answer takes this long, so a batch of alerts takes seconds: a kill lands mid-batch
SCHEDULING_SLACK = 5.0  # from Slack's answer to the ledger's confirmation, on a busy machine


@pytest.mark.parametrize("target", ["record-processor", "whole-worker"])
def test_kill_9_mid_batch_loses_nothing_and_repeats_only_a_post_in_flight(
    target: str,
    local_stack: LocalStack,
    new_stream: Callable[[int], str],
    receiver: TimedReceiver,  # noqa: F811 - the fixture imported above
    start_worker: Any,  # noqa: F811 - the fixture imported above
    tmp_path: Path,
) -> None:
    """kill -9 is the one place exactly-once is impossible: a post Slack accepted whose answer the killed
    process never read (or read, but died before confirming it in the ledger) is claimed-not-confirmed, and
    the replay sends it again. So what is guaranteed, and asserted, is: every alert arrives and ends confirmed
    in the ledger; an alert is repeated only for a kill at which a copy of it was in flight (reached Slack
    within one answer time of the kill); and each kill adds at most one copy per record processor that died
    (each sends one post at a time). Killing one processor makes its daemon exit, and the daemon's other
    processors die with it, so they count too. A replay resends the unconfirmed alert first, so the next kill
    may catch that same alert in flight again: one alert can arrive more than twice over several kills."""
    stream, application = new_stream(2), unique("app")
    ledger = tmp_path / "ledger.sqlite3"  # shared by every incarnation, like a host's default ledger
    put = Put()
    duplicates_allowed: Counter[Key] = Counter()
    in_flight_limit = 0
    worker = start_worker(stream, application, f"{target}-0", dedupe_db=ledger)
    for run in range(FAULT_RUNS):
        # GIVEN a batch of 12 alerts (on both shards) that Slack answers slowly
        receiver.fail_next(status=200, delay=SLOW_ANSWER, times=1000)
        batch = put_events(local_stack, stream, triggers_and_noise(12, 24, seed=500 + run), per_record=2)
        put.positions.update(batch.positions)
        put.last_sequence.update(batch.last_sequence)  # later records: higher sequence numbers

        # WHEN the first alert of this batch reaches Slack, one record processor (or the whole worker) is killed
        new = frozenset(batch.positions)
        wait_for("a post of the new batch", lambda n=new: any(post_key(p) in n for p in receiver.received), [worker])
        processors = record_processors(worker)
        if target == "record-processor":
            killed = [processors[0]]
            os.kill(killed[0], signal.SIGKILL)
        else:
            killed = processors
            daemon = java_daemon(worker)
            os.kill(worker.process.pid, signal.SIGKILL)
            os.killpg(daemon, signal.SIGKILL)  # the daemon's own process group: java and its processors
        killed_at = time.monotonic()
        assert killed, "no record processor to kill"
        worker.process.wait(WAIT_SECONDS)  # a dead processor takes its daemon (and consume) down with it
        wait_for("every record processor gone", lambda processors=processors: gone(processors), [])
        all_gone_at = time.monotonic()
        in_flight_limit += len(processors)
        # Posts that reached Slack from one answer time (plus scheduling slack) before the kill until the last
        # processor was gone may have been in flight: accepted by Slack, not confirmed in the ledger. The slack
        # is generous: on a loaded 2-core machine reading the answer and writing the ledger took over a second.
        for arrived, post in receiver.timed():
            key = post_key(post)
            if key is not None and killed_at - SLOW_ANSWER - SCHEDULING_SLACK <= arrived <= all_gone_at:
                duplicates_allowed[key] += 1
        release_dead_leader_lock(local_stack, application, worker.name)

        # ... and the worker is started again
        worker = start_worker(stream, application, f"{target}-{run + 1}", dedupe_db=ledger)

    # THEN after the last restart everything is delivered and checkpointed
    wait_for("every alert", lambda: set(delivered(receiver.received)) >= set(put.expected), [worker])
    wait_for("the checkpoints", lambda: checkpoints(local_stack, application) == put.last_sequence, [worker])
    assert worker.stop() == 0
    got = delivered(receiver.received)
    twice = got - put.expected
    print(f"[kill {target} x{FAULT_RUNS}] {len(put.expected)} alerts, repeated: {dict(twice)}", file=sys.stderr)
    assert set(got) == set(put.expected)  # nothing lost, nothing unexpected
    # What Slack answered 2xx, the processors confirmed: no claim is left unconfirmed after the last restart
    store = SQLiteDedupeStore(ledger)
    statuses = {
        getattr(store.get(dedupe_key(rule, event_id, "Slack Audit")), "status", None) for rule, event_id in put.expected
    }
    store.close()
    assert statuses == {Status.COMPLETED}
    for key, extra in twice.items():
        assert extra <= duplicates_allowed[key], f"{key} repeated but was not in flight at a kill"
    assert sum(twice.values()) <= in_flight_limit
