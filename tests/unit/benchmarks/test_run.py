"""The benchmark's baselines are fair: the jq CLI program decides like the matcher, and a tiny run completes."""

from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import orjson
import pytest

from stream_processor.config import load_config
from stream_processor.local.traffic import TrafficGenerator
from stream_processor.matcher import LibjqMatcher
from stream_processor.model import CloudTrailEvent, Position
from tests.conftest import REPO_ROOT

REPO = REPO_ROOT


def _bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_run", REPO / "benchmarks" / "run.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses resolve annotations through sys.modules
    spec.loader.exec_module(module)
    return module


@pytest.mark.skipif(shutil.which("jq") is None, reason="no jq binary on PATH")
def test_jq_cli_program_matches_the_same_events_as_libjq(tmp_path: Path) -> None:
    rules = load_config(str(REPO / "examples" / "rules60.toml")).rules
    events = TrafficGenerator(seed=41, match_rate=0.3).generate(300)
    events.append({"eventVersion": "1.09", "eventName": "StopLogging", "eventSource": "cloudtrail.amazonaws.com",
                   "userIdentity": "not an object"})
    jsonl = tmp_path / "events.jsonl"
    jsonl.write_bytes(b"\n".join(orjson.dumps(event) for event in events) + b"\n")
    program = _bench().jq_cli_program(rules)
    completed = subprocess.run(["jq", "-c", program, str(jsonl)], capture_output=True, check=True)
    cli = sorted(tuple(json.loads(line)) for line in completed.stdout.splitlines())
    wrapped = [CloudTrailEvent(orjson.dumps(e), e, Position("t", str(i))) for i, e in enumerate(events)]
    per_event: dict[int, list[int]] = {}
    index_of = {rule.name: index for index, rule in enumerate(rules)}
    for match in LibjqMatcher(rules).match_batch(wrapped).matches:
        per_event.setdefault(int(match.event.position.sequence or 0), []).append(index_of[match.rule_name])
    assert cli == sorted(tuple(indexes) for indexes in per_event.values())
    assert len(cli) > 50


def test_a_tiny_benchmark_run_writes_every_entry(tmp_path: Path) -> None:
    output = tmp_path / "latest.json"
    completed = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "run.py"), "--events", "400", "--libjq-events", "50",
         "--file-events", "2000", "--repeats", "1", "--cli-repeats", "1", "--rulesets", "seed,rules60",
         "--output", str(output)],
        capture_output=True, text=True, check=False, timeout=120,
    )
    assert completed.returncode == 0, completed.stderr[-2000:]
    entries = json.loads(output.read_text())
    paths = {(entry["path"], entry["ruleset"]) for entry in entries}
    assert ("decode", "none") in paths
    assert ("file: match", "rules60") in paths
    for ruleset in ("seed", "rules60"):
        assert {("decode+fast", ruleset), ("decode+libjq", ruleset), ("jq-cli", ruleset)} <= paths
    for entry in entries:
        assert {"path", "ruleset", "events", "seconds", "events_per_s"} <= entry.keys()
        if entry["path"] != "jq-cli" or shutil.which("jq"):
            assert entry["events_per_s"] > 0, entry
    assert "decode+fast" in completed.stdout
