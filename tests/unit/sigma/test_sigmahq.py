"""SigmaHQ's 57 AWS CloudTrail rules (tests/data/sigmahq): all convert, all compile, the shipped example is
what the importer writes, and each converted rule decides like the reference evaluator on the corpus."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml

from stream_processor.cli import main
from stream_processor.config import load_config
from stream_processor.matcher import FastMatcher, LibjqMatcher, explain
from stream_processor.model import CloudTrailEvent, Position
from stream_processor.sigma.importer import import_rules
from tests.conftest import REPO_ROOT
from tests.unit.sigma.reference import evaluate
from tests.unit.sigma.test_differential import _corpus_events

REPO = REPO_ROOT
SIGMAHQ = REPO / "tests" / "data" / "sigmahq"
RULES = "rules/cloud/aws/cloudtrail"
COMMIT = "8eaafff1f2845a696050e05e72ba1140ee190698"
EXAMPLE = REPO / "examples" / "sigma-cloudtrail.toml"


def test_every_sigmahq_cloudtrail_rule_converts(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(SIGMAHQ)
    result = import_rules([RULES])
    assert result.files == 57
    assert [f.source for f in result.failures] == []
    assert len(result.rules) == 57 and not result.skipped


def test_the_shipped_example_is_the_import_of_sigmahq(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    # the example is regenerated, never edited: the same command gives the same bytes
    monkeypatch.chdir(SIGMAHQ)
    out = tmp_path / "sigma-cloudtrail.toml"
    url = f"https://github.com/SigmaHQ/sigma/blob/{COMMIT}"
    assert main(["import-sigma", RULES, "--source-url", url, "-o", str(out)]) == 0
    assert out.read_text() == EXAMPLE.read_text(), "regenerate examples/sigma-cloudtrail.toml (docs/sigma.md)"
    assert (REPO / "examples" / "LICENSE.Detection.Rules.md").read_text().startswith("# Detection Rule License")


def test_every_example_rule_is_compiled() -> None:
    rules = load_config(str(EXAMPLE)).rules
    paths = {name: path for name, path, _ in explain(rules)}
    assert len(paths) == 57 and set(paths.values()) == {"compiled"}, paths


@pytest.mark.corpus
def test_sigmahq_rules_decide_like_the_reference_on_the_corpus() -> None:
    events = _corpus_events()
    assert len(events) > 100
    wrapped = [CloudTrailEvent(orjson.dumps(e), e, Position("corpus", str(i))) for i, e in enumerate(events)]
    config = load_config(str(EXAMPLE))
    sources: dict[str, dict[str, Any]] = {}
    for path in sorted((SIGMAHQ / RULES).glob("*.yml")):
        rule = yaml.safe_load(path.read_text())
        sources[rule["title"]] = rule["detection"]
    assert set(sources) == {rule.name for rule in config.rules}
    expected = {(name, i) for name, found in sources.items() for i, e in enumerate(events) if evaluate(found, e)}
    assert expected, "no SigmaHQ rule matches a corpus event: the comparison would prove little"
    for matcher in (FastMatcher(config.rules), LibjqMatcher(config.rules)):
        result = matcher.match_batch(wrapped)
        assert not result.errors
        got = {(m.rule_name, int(m.event.position.sequence or 0)) for m in result.matches}
        assert got == expected, (type(matcher).__name__, sorted(got ^ expected)[:5])
