"""A pySigma backend whose queries are jq conditions over one CloudTrail event.

pySigma parses the rule, applies the modifiers and builds the condition tree (`1 of selection_*`,
`all of them`, lists as OR, `|all` as AND, ...); this backend writes each node as jq (`jqexpr`). What it
cannot write exactly raises `SigmaFeatureNotSupportedByBackendError`, which the importer reports with the
rule's file: nothing is approximated.
"""

from __future__ import annotations

import re
from typing import Any, ClassVar, NoReturn, TypeVar

from sigma.conditions import (
    ConditionAND,
    ConditionFieldEqualsValueExpression,
    ConditionNOT,
    ConditionOR,
    ConditionValueExpression,
)
from sigma.conversion.base import Backend
from sigma.conversion.state import ConversionState
from sigma.exceptions import SigmaFeatureNotSupportedByBackendError
from sigma.rule import SigmaRule
from sigma.types import (
    SigmaBool,
    SigmaCasedString,
    SigmaCIDRExpression,
    SigmaCompareExpression,
    SigmaExists,
    SigmaFieldReference,
    SigmaNumber,
    SigmaRegularExpression,
    SigmaRegularExpressionFlag,
    SigmaString,
    SigmaType,
    SpecialChars,
)

from stream_processor.sigma import jqexpr
from stream_processor.sigma.jqexpr import Field, Jq
from stream_processor.sigma.patterns import (
    QUESTION,
    STAR,
    PatternError,
    RegexOptions,
    Wildcard,
    WildcardChar,
    ipv4_network_regex,
    translate_regex,
)

V = TypeVar("V", bound=SigmaType)


def unsupported(message: str) -> NoReturn:
    raise SigmaFeatureNotSupportedByBackendError(message)


def field_of(cond: ConditionFieldEqualsValueExpression) -> Field:
    try:
        return Field.parse(cond.field)
    except ValueError as error:
        unsupported(str(error))


def wildcard_of(value: SigmaString) -> Wildcard:
    parts: list[str | WildcardChar] = []
    for part in value.s:
        if isinstance(part, str):
            parts.append(part)
        elif part is SpecialChars.WILDCARD_MULTI:
            parts.append(STAR)
        elif part is SpecialChars.WILDCARD_SINGLE:
            parts.append(QUESTION)
        else:
            unsupported(f"placeholder %{getattr(part, 'name', part)}% (expand): a processing pipeline must fill it")
    if any(isinstance(p, str) and any(0xD800 <= ord(c) <= 0xDFFF for c in p) for p in parts):
        unsupported("a value holds a lone surrogate character")
    return Wildcard(tuple(parts))


def value_of(cond: ConditionFieldEqualsValueExpression, kind: type[V]) -> V:
    """The condition's value, as the type pySigma's dispatch already chose for it."""
    value = cond.value
    if not isinstance(value, kind):  # pragma: no cover - pySigma dispatches on this very type
        raise TypeError(f"expected {kind.__name__}, got {type(value).__name__}")
    return value


def number_text(value: SigmaNumber) -> str:
    """An integer as its text (Sigma compares values as text); a float has no single text form."""
    if isinstance(value.number, float):
        unsupported(f"the number {value.number!r} is compared as text, and a float has several (1.5, 1.50): quote it")
    return str(value.number)


class JqBackend(Backend):
    """Sigma detections as jq conditions; `convert_rule` returns one `Jq` per Sigma condition."""

    name: ClassVar[str] = "jq (stream-processor)"
    formats: ClassVar[dict[str, str]] = {"default": "a jq condition per Sigma condition"}
    convert_or_as_in: ClassVar[bool] = True

    # -- boolean structure

    def convert_condition_or(self, cond: ConditionOR, state: ConversionState) -> Jq:
        return jqexpr.any_of([self.convert_condition(arg, state) for arg in cond.args])

    def convert_condition_and(self, cond: ConditionAND, state: ConversionState) -> Jq:
        return jqexpr.all_of([self.convert_condition(arg, state) for arg in cond.args])

    def convert_condition_not(self, cond: ConditionNOT, state: ConversionState) -> Jq:
        return jqexpr.negate(self.convert_condition(cond.args[0], state))

    def decide_convert_condition_as_in_expression(
        self, cond: ConditionOR | ConditionAND, state: ConversionState
    ) -> bool:
        """A list of plain values for one field (no wildcards, all cased or all not): one `IN(...)`."""
        if not isinstance(cond, ConditionOR) or len(cond.args) < 2:
            return False
        args = [arg for arg in cond.args if isinstance(arg, ConditionFieldEqualsValueExpression)]
        if len(args) != len(cond.args):
            return False
        if len({arg.field for arg in args}) != 1:
            return False
        kinds = set()
        for arg in args:
            value = arg.value
            if isinstance(value, SigmaNumber) and isinstance(value.number, int) and not isinstance(value.number, bool):
                continue
            if not isinstance(value, SigmaString) or value.contains_special():
                return False
            kinds.add(isinstance(value, SigmaCasedString))
        return len(kinds) <= 1

    def convert_condition_as_in_expression(self, cond: ConditionOR | ConditionAND, state: ConversionState) -> Jq:
        args = [arg for arg in cond.args if isinstance(arg, ConditionFieldEqualsValueExpression)]
        cased = any(isinstance(arg.value, SigmaCasedString) for arg in args)
        texts = [
            number_text(arg.value)
            if isinstance(arg.value, SigmaNumber)
            else str(wildcard_of(value_of(arg, SigmaString)).plain)
            for arg in args
        ]
        return jqexpr.equals(field_of(args[0]), jqexpr.lowered(texts, cased), cased)

    # -- one field against one value

    def convert_condition_field_eq_val_str(self, cond: ConditionFieldEqualsValueExpression, state: Any) -> Jq:
        return jqexpr.wildcard(field_of(cond), wildcard_of(value_of(cond, SigmaString)), cased=False)

    def convert_condition_field_eq_val_str_case_sensitive(
        self, cond: ConditionFieldEqualsValueExpression, state: Any
    ) -> Jq:
        return jqexpr.wildcard(field_of(cond), wildcard_of(value_of(cond, SigmaString)), cased=True)

    def convert_condition_field_eq_val_num(self, cond: ConditionFieldEqualsValueExpression, state: Any) -> Jq:
        return jqexpr.equals(field_of(cond), [number_text(value_of(cond, SigmaNumber))], cased=True)

    def convert_condition_field_eq_val_bool(self, cond: ConditionFieldEqualsValueExpression, state: Any) -> Jq:
        value = value_of(cond, SigmaBool)
        return jqexpr.equals(field_of(cond), ["true" if value.boolean else "false"], cased=False)

    def convert_condition_field_eq_val_null(self, cond: ConditionFieldEqualsValueExpression, state: Any) -> Jq:
        return jqexpr.is_null(field_of(cond))

    def convert_condition_field_eq_val_exists(self, cond: ConditionFieldEqualsValueExpression, state: Any) -> Jq:
        value = value_of(cond, SigmaExists)
        test = jqexpr.exists(field_of(cond))
        return test if value.exists else jqexpr.negate(test)

    def convert_condition_field_exists(self, cond: ConditionFieldEqualsValueExpression, state: Any) -> Jq:
        return jqexpr.exists(field_of(cond))

    def convert_condition_field_not_exists(self, cond: ConditionFieldEqualsValueExpression, state: Any) -> Jq:
        return jqexpr.negate(jqexpr.exists(field_of(cond)))

    def convert_condition_field_eq_val_re(self, cond: ConditionFieldEqualsValueExpression, state: Any) -> Jq:
        value = value_of(cond, SigmaRegularExpression)
        if value.regexp.contains_placeholder():
            unsupported("placeholder in a regular expression (expand): a processing pipeline must fill it")
        flags = value.flags
        options = RegexOptions(
            ignore_case=SigmaRegularExpressionFlag.IGNORECASE in flags,
            multiline=SigmaRegularExpressionFlag.MULTILINE in flags,
            dotall=SigmaRegularExpressionFlag.DOTALL in flags,
        )
        try:
            pattern = translate_regex(str(value.regexp), options)
        except PatternError as error:
            unsupported(f"regex {str(value.regexp)!r} of {cond.field}: {error}")
        matches_null = re.search(pattern, "null") is not None
        return jqexpr.regex(field_of(cond), pattern, options.ignore_case, matches_null)

    def convert_condition_field_eq_val_cidr(self, cond: ConditionFieldEqualsValueExpression, state: Any) -> Jq:
        value = value_of(cond, SigmaCIDRExpression)
        try:
            return jqexpr.network(field_of(cond), ipv4_network_regex(value.cidr))
        except PatternError as error:
            unsupported(f"cidr of {cond.field}: {error}")

    def convert_condition_field_compare_op_val(self, cond: ConditionFieldEqualsValueExpression, state: Any) -> Jq:
        value = value_of(cond, SigmaCompareExpression)
        operator = value.op.name
        if operator not in jqexpr.COMPARISONS:
            unsupported(f"numeric comparison {operator}")
        return jqexpr.compare(field_of(cond), operator, value.number.number)

    def convert_condition_field_eq_field(self, cond: ConditionFieldEqualsValueExpression, state: Any) -> Jq:
        value = value_of(cond, SigmaFieldReference)
        try:
            other = Field.parse(value.field)
        except ValueError as error:
            unsupported(f"fieldref: {error}")
        return jqexpr.field_reference(field_of(cond), other, False, value.starts_with, value.ends_with)

    def convert_condition_field_eq_val_timestamp_part(self, cond: Any, state: Any) -> NoReturn:
        unsupported("time modifiers (minute, hour, day, week, month, year): CloudTrail's eventTime is text")

    def convert_condition_field_eq_query_expr(self, cond: Any, state: Any) -> NoReturn:
        unsupported("query expressions from a processing pipeline")

    # -- values without a field (keyword search)

    def convert_condition_val(self, cond: ConditionValueExpression, state: ConversionState) -> NoReturn:
        unsupported("keyword search (a value without a field): CloudTrail events are structured, name the field")

    def convert_condition_val_str(self, cond: Any, state: Any) -> NoReturn:
        self.convert_condition_val(cond, state)

    def convert_condition_val_num(self, cond: Any, state: Any) -> NoReturn:
        self.convert_condition_val(cond, state)

    def convert_condition_val_re(self, cond: Any, state: Any) -> NoReturn:
        self.convert_condition_val(cond, state)

    def convert_condition_query_expr(self, cond: Any, state: Any) -> NoReturn:
        self.convert_condition_val(cond, state)

    # -- correlation rules: they need state across events, which a rule here never has

    def _correlation(self, *args: Any, **kwargs: Any) -> NoReturn:
        unsupported("correlation rules (a rule here sees one event at a time)")

    convert_correlation_event_count_rule = _correlation
    convert_correlation_value_count_rule = _correlation
    convert_correlation_temporal_rule = _correlation
    convert_correlation_temporal_ordered_rule = _correlation
    convert_correlation_extended_temporal_rule = _correlation
    convert_correlation_extended_temporal_ordered_rule = _correlation
    convert_correlation_value_sum_rule = _correlation
    convert_correlation_value_avg_rule = _correlation
    convert_correlation_value_percentile_rule = _correlation
    convert_correlation_value_median_rule = _correlation

    # -- the result

    def finalize_query_default(self, rule: SigmaRule, query: Jq, index: int, state: ConversionState) -> Jq:
        return query
