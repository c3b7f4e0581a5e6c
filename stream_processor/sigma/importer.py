"""Read Sigma rule files, keep the AWS CloudTrail ones, convert each with the jq backend.

Every file read ends up in the result: converted, skipped (another log source, said with its log
source) or failed (with the reason). Nothing is dropped without a word.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path, PurePosixPath
from typing import Any

from sigma.collection import SigmaCollection
from sigma.exceptions import SigmaError
from sigma.modifiers import (
    SigmaEndswithModifier,
    SigmaRegularExpressionModifier,
    SigmaStartswithModifier,
)
from sigma.policy import SigmaPolicy
from sigma.policy.regex_engine import PythonRegexEngine
from sigma.processing.pipeline import ProcessingPipeline
from sigma.rule import SigmaDetection, SigmaDetectionItem, SigmaRule

from stream_processor.sigma import DEFAULT_LICENSE, jqexpr
from stream_processor.sigma.backend import JqBackend

RULE_SUFFIXES = (".yml", ".yaml")
# pySigma only compiles `re` values to check them (the backend refuses what is outside Sigma's subset, with
# its own reasons); Python's engine keeps RE2's log lines off the terminal.
_POLICY = SigmaPolicy(regex_engine=PythonRegexEngine())
LEVELS = {"informational": "info", "low": "low", "medium": "medium", "high": "high", "critical": "critical"}
DISABLED_STATUSES = frozenset({"deprecated", "unsupported"})
_LICENSE_NAMES = {"DRL-1.1": "Detection Rule License 1.1", "DRL 1.1": "Detection Rule License 1.1"}
_ATTACK_ID = re.compile(r"[tgsm]\d{4}(\.\d{3})?|ta\d{4}", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class ConvertedRule:
    """One Sigma rule as a rule of ours, with what its header comment shows."""

    source: str
    sigma_id: str | None
    title: str
    name: str
    jq_match: str
    description: str
    severity: str | None
    tags: tuple[str, ...]
    references: tuple[str, ...]
    false_positives: tuple[str, ...]
    enabled: bool
    status: str | None
    author: str | None
    license: str
    date: str | None
    modified: str | None
    url: str | None


@dataclass(frozen=True, slots=True)
class ImportProblem:
    """A rule (or file) that was not converted, and why; `skipped` means "not CloudTrail", not a failure."""

    source: str
    title: str | None
    reason: str
    skipped: bool = False


@dataclass(frozen=True, slots=True)
class ImportResult:
    rules: tuple[ConvertedRule, ...]
    failures: tuple[ImportProblem, ...]
    skipped: tuple[ImportProblem, ...]
    files: int


@dataclass(frozen=True, slots=True)
class ImportOptions:
    """`source_url`: the rule set's web address; each rule's link is it plus the rule's path.
    `license`: the licence of rules that name none (SigmaHQ's rules are all DRL 1.1)."""

    source_url: str | None = None
    license: str = DEFAULT_LICENSE


class SigmaPathError(ValueError):
    """A path given on the command line is missing or is not a rule file or folder."""


def rule_files(paths: Sequence[str]) -> list[tuple[Path, str]]:
    """Each rule file under `paths` (folders recursively, sorted) with the path to show for it.

    Raises:
        SigmaPathError: a path does not exist, or a file given by name is not .yml/.yaml.
    """
    found: list[tuple[Path, str]] = []
    for given in paths:
        path = Path(given).expanduser()
        if path.is_dir():
            for file in sorted(p for p in path.rglob("*") if p.suffix in RULE_SUFFIXES and p.is_file()):
                found.append((file, _shown(given, file.relative_to(path))))
        elif path.is_file():
            if path.suffix not in RULE_SUFFIXES:
                raise SigmaPathError(f"{given}: not a Sigma rule file (.yml or .yaml)")
            found.append((path, PurePosixPath(Path(given)).as_posix()))
        else:
            raise SigmaPathError(f"{given}: no such file or folder")
    return found


def _shown(given: str, relative: Path) -> str:
    return (PurePosixPath(Path(given)) / PurePosixPath(relative)).as_posix()


def import_rules(
    paths: Sequence[str],
    options: ImportOptions | None = None,
    on_file: Callable[[int, int], None] | None = None,
) -> ImportResult:
    """Convert every CloudTrail rule under `paths`; `on_file(done, total)` after each file.

    Raises:
        SigmaPathError: see `rule_files`.
    """
    options = options or ImportOptions()
    files = rule_files(paths)
    rules: list[ConvertedRule] = []
    failures: list[ImportProblem] = []
    skipped: list[ImportProblem] = []
    for done, (path, shown) in enumerate(files, start=1):
        outcomes = convert_file(path, shown, options)
        if on_file is not None:
            on_file(done, len(files))
        for outcome in outcomes:
            if isinstance(outcome, ConvertedRule):
                rules.append(outcome)
            elif outcome.skipped:
                skipped.append(outcome)
            else:
                failures.append(outcome)
    return ImportResult(tuple(_unique_names(rules)), tuple(failures), tuple(skipped), len(files))


def convert_file(path: Path, shown: str, options: ImportOptions) -> list[ConvertedRule | ImportProblem]:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        return [ImportProblem(shown, None, f"cannot be read: {error}")]
    return convert_text(text, shown, options)


def convert_text(text: str, shown: str, options: ImportOptions | None = None) -> list[ConvertedRule | ImportProblem]:
    """The rules of one Sigma YAML file (usually one), converted or with why not."""
    options = options or ImportOptions()
    try:
        collection = SigmaCollection.from_yaml(text, collect_errors=True, policy=_POLICY)
    except Exception as error:  # YAML syntax, or a document pySigma cannot even classify
        return [ImportProblem(shown, None, f"not a Sigma rule file: {_one_line(str(error))}")]
    outcomes: list[ConvertedRule | ImportProblem] = []
    reported = {_one_line(str(e)) for rule in collection.rules for e in getattr(rule, "errors", [])}
    for collection_error in getattr(collection, "errors", []):
        if _one_line(str(collection_error)) not in reported:  # the collection repeats its rules' errors
            outcomes.append(ImportProblem(shown, None, _one_line(str(collection_error))))
    for rule in collection.rules:
        if not isinstance(rule, SigmaRule):
            title = getattr(rule, "title", None)
            outcomes.append(
                ImportProblem(
                    shown, title, "correlation rules are not supported (a rule here sees one event at a time)"
                )
            )
            continue
        outcomes.append(convert_rule(rule, shown, options))
    if not outcomes:
        outcomes.append(ImportProblem(shown, None, "holds no Sigma rule"))
    return outcomes


def is_cloudtrail(rule: SigmaRule) -> bool:
    logsource = rule.logsource
    return (logsource.product or "").lower() == "aws" and (logsource.service or "").lower() == "cloudtrail"


def convert_rule(rule: SigmaRule, shown: str, options: ImportOptions) -> ConvertedRule | ImportProblem:
    title = rule.title
    if rule.errors:
        return ImportProblem(shown, title, "; ".join(_one_line(str(e)) for e in rule.errors))
    if not is_cloudtrail(rule):
        logsource = rule.logsource
        described = " ".join(
            f"{key}={value}"
            for key, value in (
                ("product", logsource.product),
                ("service", logsource.service),
                ("category", logsource.category),
            )
            if value
        )
        return ImportProblem(shown, title, f"log source is not AWS CloudTrail ({described or 'none'})", skipped=True)
    try:
        _check_modifiers(rule.detection.detections.values())
        queries = JqBackend(ProcessingPipeline()).convert_rule(rule)
    except SigmaError as error:
        return ImportProblem(shown, title, _one_line(str(error)))
    except (ValueError, TypeError, RecursionError) as error:  # pySigma's own checks outside its error tree
        return ImportProblem(shown, title, f"{type(error).__name__}: {_one_line(str(error))}")
    if not queries:
        return ImportProblem(shown, title, "the condition selects nothing to convert")
    condition = jqexpr.any_of(queries)
    status = rule.status.name.lower() if rule.status is not None else None
    license_id = rule.license or options.license
    author = _one_line(rule.author) if rule.author else None
    return ConvertedRule(
        source=shown,
        sigma_id=str(rule.id) if rule.id is not None else None,
        title=title,
        name=_one_line(title),
        jq_match=jqexpr.select(condition),
        description=_description(rule.description, author, license_id),
        severity=LEVELS.get(rule.level.name.lower()) if rule.level is not None else None,
        tags=tuple(dict.fromkeys(_tag(tag.namespace, tag.name) for tag in rule.tags)),
        references=tuple(str(r) for r in rule.references if str(r).strip()),
        false_positives=tuple(_one_line(str(f)) for f in rule.falsepositives if str(f).strip()),
        enabled=status not in DISABLED_STATUSES,
        status=status,
        author=author,
        license=license_id,
        date=_date(rule.date),
        modified=_date(rule.modified),
        url=f"{options.source_url.rstrip('/')}/{shown}" if options.source_url else None,
    )


def _check_modifiers(detections: Iterable[SigmaDetection | SigmaDetectionItem]) -> None:
    """What pySigma accepts but would change the meaning of: `re` with `startswith`/`endswith`.

    pySigma appends `.*` to the regex, which anchors it only for engines that match a regex against the
    whole value; Sigma's regexes search (PCRE), so the modifier would silently do nothing.
    """
    from sigma.exceptions import SigmaFeatureNotSupportedByBackendError

    for item in detections:
        if isinstance(item, SigmaDetection):
            _check_modifiers(item.detection_items)
            continue
        modifiers = set(item.modifiers)
        if SigmaRegularExpressionModifier in modifiers and modifiers & {SigmaStartswithModifier, SigmaEndswithModifier}:
            raise SigmaFeatureNotSupportedByBackendError(
                f"{item.field}: re with startswith/endswith (anchor the regex with ^ or $ instead)"
            )


def license_name(license_id: str) -> str:
    return _LICENSE_NAMES.get(license_id, license_id)


def _description(description: str | None, author: str | None, license_id: str) -> str:
    """The rule's description and its attribution: alerts must name the rule's author (DRL 1.1)."""
    text = _one_line(description or "")
    credit = f"Sigma rule by {author}" if author else "Sigma rule"
    credit += f", {license_name(license_id)}"
    return f"{text} ({credit})" if text else f"{credit}."


def _tag(namespace: str, name: str) -> str:
    """ATT&CK technique, group and software ids as ATT&CK writes them (T1098.001); tactics by name; other
    namespaces kept whole (cve.2021-44228)."""
    if namespace.lower() == "attack":
        return name.upper() if _ATTACK_ID.fullmatch(name) else name.lower()
    return f"{namespace}.{name}"


def _date(value: Any) -> str | None:
    if isinstance(value, dt.date):
        return value.isoformat()
    return str(value) if value else None


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def _unique_names(rules: list[ConvertedRule]) -> list[ConvertedRule]:
    """Rule names must be unique: a repeated title gets the Sigma id (or the file) after it."""
    seen: dict[str, int] = {}
    for rule in rules:
        seen[rule.name] = seen.get(rule.name, 0) + 1
    out: list[ConvertedRule] = []
    used: set[str] = set()
    for rule in rules:
        name = rule.name
        if seen[name] > 1 or name in used:
            name = f"{name} ({rule.sigma_id or rule.source})"
        used.add(name)
        out.append(replace(rule, name=name) if name != rule.name else rule)
    return out


__all__ = [
    "ConvertedRule",
    "ImportOptions",
    "ImportProblem",
    "ImportResult",
    "SigmaPathError",
    "convert_text",
    "import_rules",
    "is_cloudtrail",
    "license_name",
    "rule_files",
]
