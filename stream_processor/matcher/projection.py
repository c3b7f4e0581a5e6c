"""The part of an event a rule can observe, so libjq parses that instead of the whole event.

libjq parses JSON at about 40 MB/s: a 1.5 KB CloudTrail event costs it ~40 µs before a rule even starts,
four times the budget of a rule forced onto libjq. Most rules read a handful of fields (`.eventName`,
`.requestParameters.bucketName`), so the worker is fed just those, cut from the parsed event: a projection.

The analysis is sound by construction: the event is followed through the program as paths from its root
(`.a.b` on the event is the path a.b), and every other use of a value (a comparison, a builtin, a
string, iteration, `keys`, ...) asks for the whole value at its path. What the analysis does not know (an
AST node it has no rule for, a program the parser cannot read) asks for the whole event. Shapes stay exact:
where a path is indexed, the projection keeps its value whole unless it is an object, so `.a.b` on a string
`.a` fails exactly as on the event.

The rule's output may be the event itself (`select(...)`): the worker tells "the output is the input" apart
(matcher/libjq_worker.py), and the matcher substitutes the real event when the rule may output the event,
the projection otherwise (an object the rule built, equal to it). Where an output could be either, the
analysis asks for the whole event.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from stream_processor.matcher.jqparse import (
    ArrayCons,
    Binary,
    Bind,
    Call,
    Comma,
    Identity,
    If,
    Index,
    Iterate,
    Literal,
    Negate,
    Node,
    ObjectCons,
    Pipe,
    Recurse,
    Reduce,
    StringInterp,
    Try,
    Unsupported,
    Var,
    parse,
)

Trie = dict[str, "Trie | None"]
"""Field name -> what is read below it; None: the whole value."""

_SCALAR = "scalar"  # a value that is neither an object nor an array
_VALUE = "value"  # anything else computed (its sources already asked for)
_Abstract = tuple[str, ...] | str  # a path of the event (a tuple of keys), or _SCALAR / _VALUE

# Builtins whose output does not depend on their input.
_CONSTANT = frozenset({"true", "false", "null", "infinite", "nan", "now", "builtins", "input_line_number"})
# Builtins that never output an object or an array.
_SCALAR_BUILTINS = frozenset(
    {
        "length", "utf8bytelength", "not", "type", "test", "startswith", "endswith", "contains", "inside", "has",
        "in", "IN", "any", "all", "ascii_downcase", "ascii_upcase", "tostring", "tonumber", "tojson", "ltrimstr",
        "rtrimstr", "trim", "ltrim", "rtrim", "join", "isvalid", "isinfinite", "isnan", "isnormal", "index",
        "rindex", "floor", "ceil", "round", "sqrt", "fabs", "abs", "fromdate", "todate", "fromdateiso8601",
        "todateiso8601", "mktime", "strftime", "strflocaltime", "ascii", "implode", "significand", "logb",
        "gamma", "exp", "exp10", "exp2", "log", "log10", "log2", "pow", "true", "false", "null", "infinite",
        "nan", "now", "input_line_number", "isempty", "error",
    }
)  # fmt: skip


class _Whole(Exception):
    """The analysis cannot bound what the program reads: feed it the whole event."""


def projection_of(program: str) -> Trie | None:
    """What `program` reads of the event, or None when it may observe all of it."""
    return analyse(program)[0]


def analyse(program: str) -> tuple[Trie | None, bool]:
    """What `program` reads of the event (None: all of it), and whether its output may be the event itself.

    On a projection, an output equal to the projection is the event when the program may output the event
    (then it outputs nothing else that could be an object equal to the projection); otherwise it is a value
    built from what was read, equal to the projection.
    """
    analysis = _Analysis()
    try:
        ast = parse(program)
        return analysis.run(ast), analysis.root_out
    except (Unsupported, _Whole, RecursionError):
        return None, True


def merge(tries: list[Trie | None]) -> Trie | None:
    """What several programs read together (None: the whole event)."""
    merged: Trie = {}
    for trie in tries:
        if trie is None:
            return None
        _merge_into(merged, trie)
    return merged


def _merge_into(target: Trie, source: Trie) -> None:
    for key, sub in source.items():
        if key not in target:
            target[key] = None if sub is None else _copy(sub)
        elif target[key] is None:
            continue
        elif sub is None:
            target[key] = None
        else:
            existing = target[key]
            assert existing is not None
            _merge_into(existing, sub)


def _copy(trie: Trie) -> Trie:
    return {key: None if sub is None else _copy(sub) for key, sub in trie.items()}


def project(value: Any, trie: Trie) -> Any:
    """The projection of `value`: objects keep only the keys read below them; anything else stays whole."""
    if type(value) is not dict:
        return value
    out = {}
    for key, sub in trie.items():
        if key in value:
            child = value[key]
            out[key] = child if sub is None else project(child, sub)
    return out


def projector(trie: Trie) -> Callable[[Any], Any]:
    """`project` with the trie built in: one closure per level, no walk over the trie per event."""
    wholes = tuple(key for key, sub in trie.items() if sub is None)
    nested = tuple((key, projector(sub)) for key, sub in trie.items() if sub is not None)

    def cut(value: Any) -> Any:
        if type(value) is not dict:
            return value
        out = {}
        for key in wholes:
            if key in value:
                out[key] = value[key]
        for key, inner in nested:
            if key in value:
                out[key] = inner(value[key])
        return out

    return cut


class _Analysis:
    def __init__(self) -> None:
        self.read: list[tuple[str, ...]] = []  # whole values read
        self.shapes: list[tuple[str, ...]] = []  # values indexed by key: their type matters
        self.root_out = True

    def run(self, node: Node) -> Trie:
        outputs = self.eval(node, frozenset({()}), {})
        root_out = self.root_out = () in outputs
        for output in outputs:
            if isinstance(output, tuple) and output:
                self.use(output)
        if root_out and _VALUE in outputs:
            raise _Whole("the output may be the event or an object built to look like its projection")
        if () in self.read:
            raise _Whole("the program reads the event as a whole")
        trie: Trie = {}
        for path in self.shapes:
            node_ = trie
            for key in path:
                sub = node_.setdefault(key, {})
                if sub is None:
                    break
                node_ = sub
        for path in sorted(self.read, key=len):
            node_ = trie
            for key in path[:-1]:
                sub = node_.setdefault(key, {})
                if sub is None:
                    break
                node_ = sub
            else:
                node_[path[-1]] = None
        return trie

    def use(self, value: _Abstract) -> None:
        if isinstance(value, tuple):
            self.read.append(value)

    def use_all(self, values: frozenset[_Abstract]) -> None:
        for value in values:
            self.use(value)

    def eval(
        self, node: Node, inputs: frozenset[_Abstract], env: dict[str, frozenset[_Abstract]]
    ) -> frozenset[_Abstract]:
        """The abstract outputs of `node` on `inputs`; records what it reads."""
        if isinstance(node, Identity):
            return inputs
        if isinstance(node, Literal):
            return frozenset({_VALUE if isinstance(node.value, list | dict) else _SCALAR})
        if isinstance(node, Index):
            targets = self.eval(node.target, inputs, env)
            if isinstance(node.key, Literal) and type(node.key.value) is str:
                key = node.key.value
                out: set[_Abstract] = set()
                for target in targets:
                    if isinstance(target, tuple):
                        self.shapes.append(target)
                        out.add((*target, key))
                    else:
                        out.add(_VALUE)
                return frozenset(out)
            self.use_all(targets)
            self.use_all(self.eval(node.key, inputs, env))
            return frozenset({_VALUE})
        if isinstance(node, Pipe):
            return self.eval(node.right, self.eval(node.left, inputs, env), env)
        if isinstance(node, Comma):
            return self.eval(node.left, inputs, env) | self.eval(node.right, inputs, env)
        if isinstance(node, Try):
            body = self.eval(node.body, inputs, env)
            handler = self.eval(node.catch, frozenset({_VALUE}), env) if node.catch is not None else frozenset()
            return body | handler
        if isinstance(node, If):
            self.use_all(self.eval(node.cond, inputs, env))
            return self.eval(node.then, inputs, env) | self.eval(node.otherwise, inputs, env)
        if isinstance(node, Binary):
            left, right = self.eval(node.left, inputs, env), self.eval(node.right, inputs, env)
            self.use_all(left)
            if node.op == "//":
                return left | right  # the left side's values pass through (read whole above)
            self.use_all(right)
            scalar = node.op in ("and", "or", "==", "!=", "<", "<=", ">", ">=")
            return frozenset({_SCALAR if scalar else _VALUE})
        if isinstance(node, Negate):
            self.use_all(self.eval(node.operand, inputs, env))
            return frozenset({_SCALAR})
        if isinstance(node, Var):
            return env.get(node.name, frozenset({_VALUE}))
        if isinstance(node, Bind):
            bound = self.eval(node.source, inputs, env)
            return self.eval(node.body, inputs, {**env, node.name: bound})
        if isinstance(node, Call):
            return self.call(node, inputs, env)
        if isinstance(node, StringInterp):
            for part in node.parts:
                if not isinstance(part, str):
                    self.use_all(self.eval(part, inputs, env))
            return frozenset({_SCALAR})
        if isinstance(node, Recurse | Iterate):
            self.use_all(inputs if isinstance(node, Recurse) else self.eval(node.target, inputs, env))
            return frozenset({_VALUE})
        if isinstance(node, ArrayCons):
            if node.body is not None:
                self.use_all(self.eval(node.body, inputs, env))
            return frozenset({_VALUE})
        if isinstance(node, ObjectCons):
            for entry_key, entry_value in node.entries:
                self.use_all(self.eval(entry_key, inputs, env))
                self.use_all(self.eval(entry_value, inputs, env))
            return frozenset({_VALUE})
        if isinstance(node, Reduce):
            self.use_all(self.eval(node.source, inputs, env))
            self.use_all(self.eval(node.init, inputs, env))
            inner = {**env, node.name: frozenset({_VALUE})}
            self.use_all(self.eval(node.update, frozenset({_VALUE}), inner))
            if node.extract is not None:
                self.use_all(self.eval(node.extract, frozenset({_VALUE}), inner))
            return frozenset({_VALUE})
        raise _Whole(f"no rule for {type(node).__name__}")

    def call(
        self, node: Call, inputs: frozenset[_Abstract], env: dict[str, frozenset[_Abstract]]
    ) -> frozenset[_Abstract]:
        name, args = node.name, node.args
        if name == "empty" and not args:
            return frozenset()
        if name in _CONSTANT and not args:
            return frozenset({_SCALAR})
        if name == "select" and len(args) == 1:
            self.use_all(self.eval(args[0], inputs, env))
            return inputs
        if name in ("first", "last") and len(args) == 1:
            return self.eval(args[0], inputs, env)
        if name in ("limit", "nth") and len(args) == 2:
            self.use_all(self.eval(args[0], inputs, env))
            return self.eval(args[1], inputs, env)
        # Anything else reads its input whole, and whatever its arguments give (they run on the input or on
        # what is derived from it, which is then read whole too).
        self.use_all(inputs)
        for arg in args:
            self.use_all(self.eval(arg, inputs, env))
        return frozenset({_SCALAR if name in _SCALAR_BUILTINS else _VALUE})
