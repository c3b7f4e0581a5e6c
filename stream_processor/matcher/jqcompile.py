"""Compile a parsed jq program to Python closures with jq 1.8's semantics.

Each node compiles to one of three shapes, so the common rule (`select(cond) | "text \\(.x)"`) runs as a
few nested calls with no generator at all:

- ONE: exactly one output (or an error): `fn(x) -> value`
- OPT: at most one output: `fn(x) -> value | NONE`
- MANY: any number: `fn(x) -> iterator`

Evaluation order follows jq where it can change the result: the right operand of a binary operator is
the outer loop, later string interpolations are outer loops, object entries nest in source order.
Anything else raises `Unsupported` at compile time; `NeedsLibjq` at run time hands one event to libjq.
"""

from __future__ import annotations

import itertools
import math
import operator
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from stream_processor.matcher import jqbuiltins as lib
from stream_processor.matcher import jqregex
from stream_processor.matcher import jqruntime as rt
from stream_processor.matcher.jqparse import (
    ArrayCons,
    Binary,
    Bind,
    Break,
    Call,
    Comma,
    FuncDef,
    Identity,
    If,
    Index,
    Iterate,
    Label,
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
)
from stream_processor.matcher.jqregex import compile_regex
from stream_processor.matcher.jqruntime import MAX_SAFE_INT, JqError, NeedsLibjq, truthy

ONE, OPT, MANY = 0, 1, 2


class _NoOutput:
    """The sentinel for "no output" (distinct from jq's null)."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "NONE"


NONE: Any = _NoOutput()
Fn = Callable[[Any], Any]


@dataclass(frozen=True, slots=True)
class Compiled:
    kind: int
    fn: Fn

    def gen(self) -> Callable[[Any], Iterator[Any]]:
        fn = self.fn
        if self.kind == MANY:
            return fn
        if self.kind == ONE:

            def one_gen(x: Any) -> Iterator[Any]:
                yield fn(x)  # lazily: `limit(0; f)` and `try` must not run f before asked

            return one_gen

        def opt_gen(x: Any) -> Iterator[Any]:
            v = fn(x)
            if v is not NONE:
                yield v

        return opt_gen

    def first(self) -> Fn:
        """`fn(x)` returning the first output or NONE, running no further than needed."""
        if self.kind != MANY:
            return self.fn
        fn = self.fn
        return lambda x: next(fn(x), NONE)


# Variables live in cells: `E as $x | body` stores each output of E in $x's cell before running body.
# A binding site is never re-entered while one of its outputs is still being consumed (recursive
# `def`s are refused, and every call of a `def` and every use of a closure parameter compiles its own
# copy), so one cell per site is enough. The environment below is only used while compiling.
_COMPILING = threading.Lock()
_scope: dict[str, list[Any]] = {}  # variable name -> cell
_defs: dict[tuple[str, int], Any] = {}  # (name, arity) -> _UserDef | _Closure
_active: frozenset[int] = frozenset()  # ids of the defs whose bodies are being expanded
_labels: dict[str, object] = {}  # label name -> its token
_budget = [0]  # nodes left to compile: inlining `def`s must not blow the program up
_MAX_NODES = 20_000


@dataclass(slots=True)
class _UserDef:
    node: FuncDef
    defs: dict[tuple[str, int], Any]
    scope: dict[str, list[Any]]
    labels: dict[str, object]


@dataclass(frozen=True, slots=True)
class _Closure:
    """A filter argument: compiled where it is used, in the environment of the call that passed it."""

    node: Node
    defs: dict[tuple[str, int], Any]
    scope: dict[str, list[Any]]
    active: frozenset[int]
    labels: dict[str, object]


def compile_program(node: Node) -> Fn:
    """The program's first-output function: value, NONE, or raises JqError / NeedsLibjq."""
    global _scope, _defs, _active, _labels
    with _COMPILING:
        _scope, _defs, _active, _labels = {}, {}, frozenset(), {}
        _budget[0] = _MAX_NODES
        try:
            return _compile(node).first()
        finally:
            jqregex.release_probe_string()


def _in_env(
    node: Node,
    defs: dict[tuple[str, int], Any],
    scope: dict[str, list[Any]],
    active: frozenset[int],
    labels: dict[str, object],
) -> Compiled:
    global _scope, _defs, _active, _labels
    saved = (_scope, _defs, _active, _labels)
    _scope, _defs, _active, _labels = scope, defs, active, labels
    try:
        return _compile(node)
    finally:
        _scope, _defs, _active, _labels = saved


def _compile_funcdef(node: FuncDef) -> Compiled:
    global _defs
    entry = _UserDef(node, {}, _scope, _labels)
    outer = _defs
    _defs = {**outer, (node.name, len(node.params)): entry}
    entry.defs = _defs  # the body sees the def itself (a recursive call is refused when it is compiled)
    try:
        return _compile(node.rest)
    finally:
        _defs = outer


def _call_user(entry: _UserDef, call: Call) -> Compiled:
    """Inline the def's body: filter parameters become closures, `$p` parameters `p as $p | ...`."""
    if id(entry) in _active:
        raise Unsupported(f"uses the recursive `def {entry.node.name}`")
    bindings: dict[tuple[str, int], Any] = {}
    body = entry.node.body
    value_params = []
    for param, arg in zip(entry.node.params, call.args, strict=True):
        name = param[1:] if param.startswith("$") else param
        bindings[(name, 0)] = _Closure(arg, _defs, _scope, _active, _labels)
        if param.startswith("$"):
            value_params.append(param)
    for param in reversed(value_params):
        body = Bind(Call(param[1:], ()), param, body)
    return _in_env(body, {**entry.defs, **bindings}, entry.scope, _active | {id(entry)}, entry.labels)


class _Break(JqError):
    """`break $label`: jq raises it as an error (so `try` stops it too); the label's own token ends it."""

    def __init__(self, token: object) -> None:
        super().__init__({"__jq": id(token)})
        self.token = token


def _compile_label(node: Label) -> Compiled:
    global _labels
    token = object()
    outer = _labels
    _labels = {**outer, node.name: token}
    try:
        bg = _compile(node.body).gen()
    finally:
        _labels = outer

    def label(x: Any) -> Iterator[Any]:
        try:
            yield from bg(x)
        except _Break as stop:
            if stop.token is not token:
                raise

    return Compiled(MANY, label)


def _compile_break(node: Break) -> Compiled:
    token = _labels.get(node.name)
    if token is None:
        raise Unsupported(f"uses `break {node.name}` outside its label")

    def break_(x: Any) -> Any:
        raise _Break(token)

    return _one(break_)


def _compile_bind(node: Bind) -> Compiled:
    global _scope
    source = _compile(node.source)
    cell: list[Any] = [None]
    outer = _scope
    _scope = {**outer, node.name: cell}
    try:
        body = _compile(node.body)
    finally:
        _scope = outer
    sf, bf = source.fn, body.fn
    if source.kind == ONE and body.kind == ONE:

        def bind_one(x: Any) -> Any:
            cell[0] = sf(x)
            return bf(x)

        return _one(bind_one)
    if source.kind != MANY and body.kind != MANY:

        def bind_opt(x: Any) -> Any:
            v = sf(x)
            if v is NONE:
                return NONE
            cell[0] = v
            return bf(x)

        return Compiled(OPT, bind_opt)
    sg, bg = source.gen(), body.gen()

    def bind_many(x: Any) -> Iterator[Any]:
        for v in sg(x):
            cell[0] = v
            yield from bg(x)

    return Compiled(MANY, bind_many)


def _compile_reduce(node: Reduce) -> Compiled:
    """jq's reduce/foreach: the state is the last output of update (null when it has none)."""
    global _scope
    source, init = _compile(node.source), _compile(node.init)
    if init.kind != ONE:
        # libjq runs the reduction again per initial value with its own variable frames; where names
        # repeat its results differ from a plain loop (found by the differential test): leave it to libjq.
        raise Unsupported("uses `reduce`/`foreach` with several initial values")
    cell: list[Any] = [None]
    outer = _scope
    _scope = {**outer, node.name: cell}
    try:
        update = _compile(node.update)
        extract = _compile(node.extract) if node.extract is not None else None
    finally:
        _scope = outer
    sg, ig, ug = source.gen(), init.gen(), update.gen()
    if not node.foreach:

        def reduce(x: Any) -> Iterator[Any]:
            for state in ig(x):
                for v in sg(x):
                    cell[0] = v
                    new_state = None
                    for new_state in ug(state):  # noqa: B007 - the last output is the new state
                        pass
                    state = new_state
                yield state

        return Compiled(MANY, reduce)
    eg = extract.gen() if extract is not None else None

    def foreach(x: Any) -> Iterator[Any]:
        for start in ig(x):
            state = start
            for v in sg(x):
                cell[0] = v
                current, state = state, None
                for state in ug(current):
                    if eg is None:
                        yield state
                    else:
                        yield from eg(state)

    return Compiled(MANY, foreach)


def _compile_var(node: Var) -> Compiled:
    cell = _scope.get(node.name)
    if cell is None:
        raise Unsupported(f"uses the unbound variable `{node.name}`")
    return _one(lambda x: cell[0])


def _compile(node: Node) -> Compiled:
    handler = _HANDLERS.get(type(node))
    if handler is None:
        raise Unsupported(f"uses {type(node).__name__}")
    _budget[0] -= 1
    if _budget[0] < 0:
        raise Unsupported("too large once its `def`s are expanded")
    return handler(node)


def _one(fn: Fn) -> Compiled:
    return Compiled(ONE, fn)


# -- paths


def _const_path(node: Node) -> tuple[str, ...] | None:
    """`.a.b.c` as ("a", "b", "c") when every step is a plain, non-optional string key from `.`."""
    keys: list[str] = []
    while isinstance(node, Index):
        if node.optional or not isinstance(node.key, Literal) or type(node.key.value) is not str:
            return None
        keys.append(node.key.value)
        node = node.target
    if not isinstance(node, Identity) or not keys:
        return None
    return tuple(reversed(keys))


def _path_fn(keys: tuple[str, ...]) -> Fn:
    index = rt.index
    if len(keys) == 1:
        (a,) = keys

        def p1(x: Any) -> Any:
            if type(x) is dict:
                return x.get(a)
            return index(x, a)

        return p1
    if len(keys) == 2:
        a, b = keys

        def p2(x: Any) -> Any:
            x = x.get(a) if type(x) is dict else index(x, a)
            return x.get(b) if type(x) is dict else index(x, b)

        return p2

    def pn(x: Any) -> Any:
        for k in keys:
            x = x.get(k) if type(x) is dict else index(x, k)
        return x

    return pn


def _compile_identity(node: Identity) -> Compiled:
    return _one(lambda x: x)


def _compile_recurse(node: Recurse) -> Compiled:
    """`..` in pre-order, with an explicit stack: a value nested 100,000 deep costs no Python recursion."""

    def rec(x: Any) -> Iterator[Any]:
        stack: list[Iterator[Any]] = [iter((x,))]
        while stack:
            for v in stack[-1]:
                yield v
                t = type(v)
                if t is list:
                    stack.append(iter(v))
                    break
                if t is dict:
                    stack.append(iter(v.values()))
                    break
            else:
                stack.pop()

    return Compiled(MANY, rec)


def _compile_literal(node: Literal) -> Compiled:
    value = node.value
    return _one(lambda x: value)


def _compile_index(node: Index) -> Compiled:
    path = _const_path(node)
    if path is not None:
        return _one(_path_fn(path))
    target = _compile(node.target)
    key = _compile(node.key)
    index = rt.index
    optional = node.optional
    if target.kind != MANY and key.kind != MANY:
        tf, kf = target.fn, key.fn
        if not optional and target.kind == ONE and key.kind == ONE:
            return _one(lambda x: index(tf(x), kf(x)))

        def opt_index(x: Any) -> Any:
            k = kf(x)
            if k is NONE:
                return NONE
            t = tf(x)
            if t is NONE:
                return NONE
            if optional:
                try:
                    return index(t, k)
                except JqError:
                    return NONE
            return index(t, k)

        return Compiled(OPT, opt_index)
    tg, kg = target.gen(), key.gen()

    def many_index(x: Any) -> Iterator[Any]:
        for k in kg(x):
            for t in tg(x):
                if optional:
                    try:
                        v = index(t, k)
                    except JqError:
                        continue
                    yield v
                else:
                    yield index(t, k)

    return Compiled(MANY, many_index)


def _compile_iterate(node: Iterate) -> Compiled:
    tg = _compile(node.target).gen()
    optional = node.optional

    def iterate(x: Any) -> Iterator[Any]:
        for t in tg(x):
            tt = type(t)
            if tt is list:
                yield from t
            elif tt is dict:
                yield from t.values()
            elif not optional:
                raise rt.iterate_error(t)

    return Compiled(MANY, iterate)


# -- control


def _compile_try(node: Try) -> Compiled:
    body = _compile(node.body)
    fallback: Compiled | None = None
    if node.catch is not None:
        catch = node.catch
        if isinstance(catch, Call) and catch.name == "empty" and not catch.args:
            fallback = None
        elif isinstance(catch, Literal):
            fallback = _compile(catch)
        else:
            return _try_handler(body, _compile(catch))
    if body.kind != MANY:
        bf = body.fn
        if fallback is None:

            def try_opt(x: Any) -> Any:
                try:
                    return bf(x)
                except JqError:
                    return NONE

            return Compiled(OPT, try_opt)
        caught = fallback.fn(None)

        def try_catch(x: Any) -> Any:
            try:
                return bf(x)
            except JqError:
                return caught

        return Compiled(body.kind, try_catch)
    bg = body.gen()
    caught_value = NONE if fallback is None else fallback.fn(None)

    def try_many(x: Any) -> Iterator[Any]:
        iterator: Iterator[Any] | None = None
        while True:
            try:
                if iterator is None:
                    iterator = bg(x)  # some bodies do their work here, not lazily
                v = next(iterator)
            except StopIteration:
                return
            except JqError:
                if caught_value is not NONE:
                    yield caught_value
                return
            yield v

    return Compiled(MANY, try_many)


def _try_handler(body: Compiled, handler: Compiled) -> Compiled:
    """`try body catch handler`: the handler runs on the error's value, which must be jq's exactly."""
    bg, hg = body.gen(), handler.gen()

    def try_catch_many(x: Any) -> Iterator[Any]:
        iterator: Iterator[Any] | None = None
        while True:
            try:
                if iterator is None:
                    iterator = bg(x)
                v = next(iterator)
            except StopIteration:
                return
            except JqError as error:
                if not error.from_error:
                    raise NeedsLibjq("a `catch` reads a built-in error's message") from error
                yield from hg(error.args[0])
                return
            yield v

    return Compiled(MANY, try_catch_many)


def _compile_pipe(node: Pipe) -> Compiled:
    if isinstance(node.left, Call) and node.left.name == "select" and len(node.left.args) == 1:
        cond, right = _compile(node.left.args[0]), _compile(node.right)
        if cond.kind == ONE and right.kind != MANY:
            return _select_then(cond, right)
        left = _select((cond,))
    else:
        left, right = _compile(node.left), _compile(node.right)
    lf, rf = left.fn, right.fn
    if left.kind == ONE and right.kind == ONE:
        return _one(lambda x: rf(lf(x)))
    if left.kind != MANY and right.kind != MANY:

        def pipe_opt(x: Any) -> Any:
            v = lf(x)
            if v is NONE:
                return NONE
            return rf(v)

        return Compiled(OPT, pipe_opt)
    lg, rg = left.gen(), right.gen()

    def pipe_many(x: Any) -> Iterator[Any]:
        for v in lg(x):
            yield from rg(v)

    return Compiled(MANY, pipe_many)


def _select_then(cond: Compiled, right: Compiled) -> Compiled:
    """`select(c) | r`, the shape of most rules, as one call (`c` has one output, `r` at most one)."""
    cf, rf = cond.fn, right.fn

    def select_then(x: Any) -> Any:
        c = cf(x)
        if c is None or c is False:
            return NONE
        return rf(x)

    return Compiled(OPT, select_then)


def _compile_comma(node: Comma) -> Compiled:
    lg, rg = _compile(node.left).gen(), _compile(node.right).gen()

    def comma(x: Any) -> Iterator[Any]:
        yield from lg(x)
        yield from rg(x)

    return Compiled(MANY, comma)


def _all_of(fns: tuple[Callable[[Any], Any], ...]) -> Compiled:
    """A chain of `and` over single-output operands: one call, stopping at the first falsy one."""

    def all_of(x: Any) -> bool:
        for fn in fns:
            a = fn(x)
            if a is None or a is False:
                return False
        return True

    return _one(all_of)


def _compile_if(node: If) -> Compiled:
    cond, then, other = _compile(node.cond), _compile(node.then), _compile(node.otherwise)
    if cond.kind != MANY and then.kind != MANY and other.kind != MANY:
        cf, tf, of = cond.fn, then.fn, other.fn
        if cond.kind == ONE and then.kind == ONE and other.kind == ONE:
            return _one(lambda x: tf(x) if truthy(cf(x)) else of(x))

        def if_opt(x: Any) -> Any:
            c = cf(x)
            if c is NONE:
                return NONE
            return tf(x) if truthy(c) else of(x)

        return Compiled(OPT, if_opt)
    cg, tg, og = cond.gen(), then.gen(), other.gen()

    def if_many(x: Any) -> Iterator[Any]:
        for c in cg(x):
            yield from (tg(x) if truthy(c) else og(x))

    return Compiled(MANY, if_many)


# -- operators

_COMPARE: dict[str, Callable[[Any, Any], bool]] = {
    "==": rt.equal,
    "!=": lambda a, b: not rt.equal(a, b),
    "<": lambda a, b: rt.compare(a, b) < 0,
    "<=": lambda a, b: rt.compare(a, b) <= 0,
    ">": lambda a, b: rt.compare(a, b) > 0,
    ">=": lambda a, b: rt.compare(a, b) >= 0,
}


def _compile_binary(node: Binary) -> Compiled:
    op = node.op
    if op in _COMPARE:
        return _compile_comparison(node)
    if op in ("and", "or"):
        return _compile_logic(node)
    if op == "//":
        return _compile_alternative(node)
    if op == "+":
        return _compile_operator(node, lib.add_values)
    if op == "-":
        return _compile_operator(node, lambda a, b: lib.int_arithmetic(a, b, operator.sub))
    if op == "*":
        return _compile_operator(node, lambda a, b: lib.int_arithmetic(a, b, operator.mul))
    raise Unsupported(f"uses arithmetic `{op}`")


def _compile_operator(node: Binary, fn: Callable[[Any, Any], Any]) -> Compiled:
    """A binary operator with jq's loop order: the right operand is the outer loop."""
    left, right = _compile(node.left), _compile(node.right)
    if left.kind == ONE and right.kind == ONE:
        lf, rf = left.fn, right.fn

        def op_one(x: Any) -> Any:
            b = rf(x)
            return fn(lf(x), b)

        return _one(op_one)
    lg, rg = left.gen(), right.gen()

    def op_many(x: Any) -> Iterator[Any]:
        for b in rg(x):
            for a in lg(x):
                yield fn(a, b)

    return Compiled(MANY, op_many)


def _compile_comparison(node: Binary) -> Compiled:
    op = node.op
    left, right = _compile(node.left), _compile(node.right)
    cmp = _COMPARE[op]
    if op in ("==", "!=") and left.kind == ONE and isinstance(node.right, Literal) and type(node.right.value) is str:
        # A string constant equals only an equal string: Python's == on str is exactly jq's here.
        lf, const = left.fn, node.right.value
        path = _const_path(node.left)
        if op == "==" and path is not None and len(path) == 1:
            (k,) = path
            index = rt.index

            def field_eq(x: Any) -> bool:
                if type(x) is dict:
                    return bool(x.get(k) == const)
                return bool(index(x, k) == const)

            return _one(field_eq)
        if op == "==" and path is not None and len(path) == 2:
            k1, k2 = path
            index = rt.index

            def field2_eq(x: Any) -> bool:
                x = x.get(k1) if type(x) is dict else index(x, k1)
                if type(x) is dict:
                    return bool(x.get(k2) == const)
                return bool(index(x, k2) == const)

            return _one(field2_eq)
        if op == "==":
            return _one(lambda x: lf(x) == const)
        return _one(lambda x: lf(x) != const)
    if left.kind == ONE and right.kind == ONE:
        lf, rf = left.fn, right.fn

        def cmp_one(x: Any) -> bool:
            b = rf(x)
            return cmp(lf(x), b)

        return _one(cmp_one)
    if left.kind != MANY and right.kind != MANY:
        lf, rf = left.fn, right.fn

        def cmp_opt(x: Any) -> Any:
            b = rf(x)
            if b is NONE:
                return NONE
            a = lf(x)
            if a is NONE:
                return NONE
            return cmp(a, b)

        return Compiled(OPT, cmp_opt)
    lg, rg = left.gen(), right.gen()

    def cmp_many(x: Any) -> Iterator[Any]:
        for b in rg(x):
            for a in lg(x):
                yield cmp(a, b)

    return Compiled(MANY, cmp_many)


def _and_chain(node: Node) -> list[Node]:
    """`a and b and c` (jq nests it to the left) as [a, b, c]; a parenthesized `and` on the right stays one."""
    if isinstance(node, Binary) and node.op == "and":
        return [*_and_chain(node.left), node.right]
    return [node]


def _compile_logic(node: Binary) -> Compiled:
    if node.op == "or":
        return _logic(False, _compile(node.left), _compile(node.right))
    parts = [_compile(operand) for operand in _and_chain(node)]
    if all(part.kind == ONE for part in parts):
        return _all_of(tuple(part.fn for part in parts))
    chain = parts[0]
    for part in parts[1:]:  # the tree as jq nests it: ((a and b) and c)
        chain = _logic(True, chain, part)
    return chain


def _logic(is_and: bool, left: Compiled, right: Compiled) -> Compiled:
    lf, rf = left.fn, right.fn
    if left.kind == ONE and right.kind == ONE:
        if is_and:

            def and_one(x: Any) -> bool:
                a = lf(x)
                if a is None or a is False:
                    return False
                b = rf(x)
                return b is not None and b is not False

            return _one(and_one)

        def or_one(x: Any) -> bool:
            a = lf(x)
            if a is not None and a is not False:
                return True
            b = rf(x)
            return b is not None and b is not False

        return _one(or_one)
    if left.kind != MANY and right.kind != MANY:

        def logic_opt(x: Any) -> Any:
            a = lf(x)
            if a is NONE:
                return NONE
            if truthy(a) != is_and:
                return not is_and
            b = rf(x)
            if b is NONE:
                return NONE
            return truthy(b)

        return Compiled(OPT, logic_opt)
    lg, rg = left.gen(), right.gen()

    def logic_many(x: Any) -> Iterator[Any]:
        for a in lg(x):
            if truthy(a) != is_and:
                yield not is_and
            else:
                for b in rg(x):
                    yield truthy(b)

    return Compiled(MANY, logic_many)


def _compile_alternative(node: Binary) -> Compiled:
    """`a // b` (jq 1.8): the truthy outputs of a, errors included; b's outputs if a had none."""
    left, right = _compile(node.left), _compile(node.right)
    if left.kind != MANY and right.kind != MANY:
        lf, rf = left.fn, right.fn

        def alt(x: Any) -> Any:
            a = lf(x)
            if a is not NONE and a is not None and a is not False:
                return a
            return rf(x)

        return Compiled(ONE if right.kind == ONE else OPT, alt)
    lg, rg = left.gen(), right.gen()

    def alt_many(x: Any) -> Iterator[Any]:
        found = False
        for a in lg(x):
            if truthy(a):
                found = True
                yield a
        if not found:
            yield from rg(x)

    return Compiled(MANY, alt_many)


def _compile_negate(node: Negate) -> Compiled:
    operand = node.operand
    if isinstance(operand, Literal) and type(operand.value) is int and operand.value != 0:
        value = -operand.value
        return _one(lambda x: value)
    return _with_arg(lambda x, v: _negate(v))((_compile(operand),))


def _negate(v: Any) -> Any:
    t = type(v)
    if t is int or t is float:
        if v == 0:
            raise NeedsLibjq("negative zero")  # jq prints -0, Python's int has none
        return -v
    raise JqError(f"{rt.type_name(v)} ({rt.error_text(v)}) cannot be negated")


# -- construction


def _compile_string(node: StringInterp) -> Compiled:
    pieces: list[str | Compiled] = [p if isinstance(p, str) else _compile(p) for p in node.parts]
    tostring = rt.tostring
    if all(isinstance(p, str) or p.kind == ONE for p in pieces):
        fns: list[str | Fn] = [p if isinstance(p, str) else p.fn for p in pieces]
        if len(fns) == 2 and isinstance(fns[0], str) and not isinstance(fns[1], str):
            prefix, f1 = fns[0], fns[1]
            return _one(lambda x: prefix + tostring(f1(x)))
        order = [i for i in range(len(fns) - 1, -1, -1) if not isinstance(fns[i], str)]

        def interp_one(x: Any) -> str:
            out = list(fns)
            for i in order:  # later interpolations are evaluated first (jq's loop order)
                f = fns[i]
                assert not isinstance(f, str)
                out[i] = tostring(f(x))
            return "".join(out)  # type: ignore[arg-type]

        return _one(interp_one)
    gens: list[str | Callable[[Any], Iterator[Any]]] = [p if isinstance(p, str) else p.gen() for p in pieces]

    def interp_many(x: Any) -> Iterator[Any]:
        def fill(i: int, suffix: str) -> Iterator[str]:
            if i < 0:
                yield suffix
                return
            g = gens[i]
            if isinstance(g, str):
                yield from fill(i - 1, g + suffix)
                return
            for v in g(x):
                yield from fill(i - 1, tostring(v) + suffix)

        yield from fill(len(gens) - 1, "")

    return Compiled(MANY, interp_many)


def _compile_array(node: ArrayCons) -> Compiled:
    if node.body is None:
        return _one(lambda x: [])
    body = _compile(node.body)
    bg = body.gen()
    if body.kind == ONE:
        bf = body.fn
        return _one(lambda x: [bf(x)])
    return _one(lambda x: list(bg(x)))


def _compile_object(node: ObjectCons) -> Compiled:
    entries = [(_compile(k), _compile(v)) for k, v in node.entries]
    if all(k.kind == ONE and v.kind == ONE for k, v in entries):
        fns = [(k.fn, v.fn) for k, v in entries]

        def obj_one(x: Any) -> dict[str, Any]:
            out: dict[str, Any] = {}
            for kf, vf in fns:
                k = kf(x)
                v = vf(x)
                if type(k) is not str:
                    raise rt.object_key_error(k)
                out[k] = v
            return out

        return _one(obj_one)
    gens = [(k.gen(), v.gen()) for k, v in entries]

    def obj_many(x: Any) -> Iterator[Any]:
        def fill(i: int, acc: dict[str, Any]) -> Iterator[dict[str, Any]]:
            if i == len(gens):
                yield acc
                return
            kg, vg = gens[i]
            for k in kg(x):
                for v in vg(x):
                    if type(k) is not str:
                        raise rt.object_key_error(k)
                    extended = dict(acc)
                    extended[k] = v
                    yield from fill(i + 1, extended)

        yield from fill(0, {})

    return Compiled(MANY, obj_many)


# -- builtins


def _unary(fn: Callable[[Any], Any]) -> Callable[[tuple[Compiled, ...]], Compiled]:
    return lambda args: _one(fn)


def _select_type(names: tuple[str, ...]) -> Callable[[tuple[Compiled, ...]], Compiled]:
    type_name = rt.type_name

    def build(args: tuple[Compiled, ...]) -> Compiled:
        return Compiled(OPT, lambda x: x if type_name(x) in names else NONE)

    return build


def _with_arg(fn: Callable[[Any, Any], Any]) -> Callable[[tuple[Compiled, ...]], Compiled]:
    """A C builtin (or `$param` definition) with one argument: one call per output of the argument."""

    def build(args: tuple[Compiled, ...]) -> Compiled:
        (arg,) = args
        if arg.kind == ONE:
            af = arg.fn
            return _one(lambda x: fn(x, af(x)))
        ag = arg.gen()

        def each(x: Any) -> Iterator[Any]:
            for a in ag(x):
                yield fn(x, a)

        return Compiled(MANY, each)

    return build


def _error0(args: tuple[Compiled, ...]) -> Compiled:
    def raise_input(x: Any) -> Any:
        raise JqError(x, from_error=True)

    return _one(raise_input)


def _error1(args: tuple[Compiled, ...]) -> Compiled:
    first = args[0].first()

    def raise_message(x: Any) -> Any:
        m = first(x)
        if m is NONE:
            return NONE
        raise JqError(m, from_error=True)

    return Compiled(OPT, raise_message)


def _select(args: tuple[Compiled, ...]) -> Compiled:
    (cond,) = args
    cf = cond.fn
    if cond.kind == ONE:

        def select_one(x: Any) -> Any:
            c = cf(x)
            return NONE if c is None or c is False else x

        return Compiled(OPT, select_one)
    if cond.kind == OPT:

        def select_opt(x: Any) -> Any:
            c = cf(x)
            return x if c is not NONE and truthy(c) else NONE

        return Compiled(OPT, select_opt)
    cg = cond.gen()

    def select_many(x: Any) -> Iterator[Any]:
        for c in cg(x):
            if truthy(c):
                yield x

    return Compiled(MANY, select_many)


def _iter_values(x: Any) -> Iterator[Any]:
    t = type(x)
    if t is list:
        return iter(x)
    if t is dict:
        return iter(x.values())
    raise rt.iterate_error(x)


def _any_all(is_any: bool, generator: Callable[[Any], Iterator[Any]] | None, condition: Compiled | None) -> Compiled:
    """jq 1.8: any(g; c) = isempty(g | c or empty) | not; all(g; c) = isempty(g | c and empty)."""
    cg = condition.gen() if condition is not None else None

    def any_all(x: Any) -> bool:
        values = generator(x) if generator is not None else _iter_values(x)
        for v in values:
            outputs = cg(v) if cg is not None else (v,)
            for c in outputs:
                if truthy(c) == is_any:
                    return is_any
        return not is_any

    return _one(any_all)


def _any0(args: tuple[Compiled, ...]) -> Compiled:
    return _any_all(True, None, None)


def _all0(args: tuple[Compiled, ...]) -> Compiled:
    return _any_all(False, None, None)


def _any1(args: tuple[Compiled, ...]) -> Compiled:
    return _any_all(True, None, args[0])


def _all1(args: tuple[Compiled, ...]) -> Compiled:
    return _any_all(False, None, args[0])


def _any2(args: tuple[Compiled, ...]) -> Compiled:
    return _any_all(True, args[0].gen(), args[1])


def _all2(args: tuple[Compiled, ...]) -> Compiled:
    return _any_all(False, args[0].gen(), args[1])


def _in1(args: tuple[Compiled, ...]) -> Compiled:
    """IN(s) = any(s == .; .)"""
    sg = args[0].gen()
    equal = rt.equal

    def in1(x: Any) -> bool:
        return any(equal(v, x) for v in sg(x))

    return _one(in1)


def _in_strings(names: frozenset[str]) -> Compiled:
    """IN("a", "b", ...): jq's equality with a string is Python's, and true only for a string."""

    def in_strings(x: Any) -> bool:
        return type(x) is str and x in names

    return _one(in_strings)


def string_literals(node: Node) -> list[str] | None:
    """The strings of `"a"` or `"a", "b", ...`; None for anything else."""
    if isinstance(node, Literal) and type(node.value) is str:
        return [node.value]
    if isinstance(node, Comma):
        left, right = string_literals(node.left), string_literals(node.right)
        if left is None or right is None:
            return None
        return left + right
    return None


def _in2(args: tuple[Compiled, ...]) -> Compiled:
    """IN(src; s) = any(src == s; .): s is the outer loop."""
    srcg, sg = args[0].gen(), args[1].gen()
    equal = rt.equal

    def in2(x: Any) -> bool:
        for b in sg(x):
            for a in srcg(x):
                if equal(a, b):
                    return True
        return False

    return _one(in2)


def _map(args: tuple[Compiled, ...]) -> Compiled:
    fg = args[0].gen()
    return _one(lambda x: [v for item in _iter_values(x) for v in fg(item)])


def _first1(args: tuple[Compiled, ...]) -> Compiled:
    return Compiled(OPT, args[0].first())


def _last1(args: tuple[Compiled, ...]) -> Compiled:
    """last(f): the last output of f; no output when f has none (jq 1.8's bytecoded last/1)."""
    fg = args[0].gen()

    def last(x: Any) -> Any:
        value = NONE
        for value in fg(x):  # noqa: B007 - the loop keeps the last output
            pass
        return value

    return Compiled(OPT, last)


def _count_arg(count: Compiled, body: Compiled, run: Callable[[Any, Any], Iterator[Any]]) -> Compiled:
    """`limit($n; f)`-style builtins: one run per output of `$n` (jq's `$param` sugar), in order."""
    cg = count.gen()
    bg = body.gen()

    def each(x: Any) -> Iterator[Any]:
        for n in cg(x):
            if type(n) is not int and type(n) is not float:
                raise NeedsLibjq("a non-numeric count")
            yield from run(n, bg(x))

    return Compiled(MANY, each)


def _limit_run(n: Any, outputs: Iterator[Any]) -> Iterator[Any]:
    """def limit($n; f): emits an output, then stops once $n - count <= 0 (so ceil($n) outputs)."""
    if n < 0:
        raise JqError("limit doesn't support negative count")
    if n == 0:
        return
    for count, v in enumerate(outputs, 1):
        yield v
        if n - count <= 0:
            return


def _skip_run(n: Any, outputs: Iterator[Any]) -> Iterator[Any]:
    """def skip($n; f): the k-th output (from 1) is emitted when $n - k < 0."""
    if n < 0:
        raise JqError("skip doesn't support negative count")
    for k, v in enumerate(outputs, 1):
        if n - k < 0:
            yield v


def _nth_run(n: Any, outputs: Iterator[Any]) -> Iterator[Any]:
    if n < 0:
        raise JqError("nth doesn't support negative indices")
    for v in _skip_run(n, outputs):
        yield v
        return


def _limit(args: tuple[Compiled, ...]) -> Compiled:
    return _count_arg(args[0], args[1], _limit_run)


def _skip(args: tuple[Compiled, ...]) -> Compiled:
    return _count_arg(args[0], args[1], _skip_run)


def _nth2(args: tuple[Compiled, ...]) -> Compiled:
    return _count_arg(args[0], args[1], _nth_run)


def _range(args: tuple[Compiled, ...]) -> Compiled:
    """range($from; $upto), integers only (a float range computes doubles jq prints its own way)."""
    if len(args) == 1:
        args = (_one(lambda x: 0), args[0])
    lo_g, hi_g = args[0].gen(), args[1].gen()

    def each(x: Any) -> Iterator[Any]:
        for lo in lo_g(x):
            for hi in hi_g(x):
                if type(lo) is not int or type(hi) not in (int, float):
                    raise NeedsLibjq("range over non-integers")
                if hi - lo > 10_000_000:
                    raise NeedsLibjq("a very long range")
                yield from range(lo, math.ceil(hi) if type(hi) is float else hi)

    return Compiled(MANY, each)


def _range3(args: tuple[Compiled, ...]) -> Compiled:
    """range($init; $upto; $by) over integers: `$init | while(. < $upto; . + $by)` (or `>` for a negative step)."""
    ig, ug, bg = (a.gen() for a in args)

    def each(x: Any) -> Iterator[Any]:
        for init in ig(x):  # `$init`, `$upto`, `$by`: the first parameter is the outer loop
            for upto in ug(x):
                for by in bg(x):
                    if any(type(v) is not int for v in (init, upto, by)):
                        raise NeedsLibjq("range over non-integers")
                    if by != 0 and abs((upto - init) // by) > 10_000_000:
                        raise NeedsLibjq("a very long range")
                    if by != 0:
                        yield from range(init, upto, by)

    return Compiled(MANY, each)


def _combinations_of(rows: Any) -> Iterator[list[Any]]:
    """def combinations: if length == 0 then [] else .[0][] as $x | (.[1:] | combinations) as $y | [$x] + $y end"""
    if rt.length(rows) == 0:
        yield []
        return
    if type(rows) is not list:
        rt.index(rows, 0)  # raises jq's "Cannot index ... with number"
        raise NeedsLibjq("combinations of a non-array")
    for first in lib.iter_values(rows[0]):
        for rest in _combinations_of(rows[1:]):
            yield [first, *rest]


def _combinations(args: tuple[Compiled, ...]) -> Compiled:
    if not args:
        return Compiled(MANY, _guard_depth(_combinations_of))
    ng = args[0].gen()

    def each(x: Any) -> Iterator[Any]:
        for n in ng(x):
            if type(n) is not int:
                raise NeedsLibjq("combinations of a non-integer count")
            yield from _guard_depth(_combinations_of)([x] * max(n, 0))

    return Compiled(MANY, each)


def _guard_depth(gen: Callable[[Any], Iterator[Any]]) -> Callable[[Any], Iterator[Any]]:
    def guarded(x: Any) -> Iterator[Any]:
        try:
            yield from gen(x)
        except RecursionError as error:
            raise NeedsLibjq(rt.TOO_DEEP) from error

    return guarded


def _keys_of(f: Compiled) -> Callable[[Any], list[Any]]:
    """map([f]): the sort key of each element (input iterated like `.[]`)."""
    fg = f.gen()
    return lambda x: [list(fg(item)) for item in lib.iter_values(x)]


def _by(impl: Callable[[Any, list[Any]], Any]) -> Callable[[tuple[Compiled, ...]], Compiled]:
    def build(args: tuple[Compiled, ...]) -> Compiled:
        keys_of = _keys_of(args[0])
        return _one(lambda x: impl(x, keys_of(x)))

    return build


def _minmax_by(is_min: bool) -> Callable[[tuple[Compiled, ...]], Compiled]:
    return _by(lambda x, keys: lib.minmax_by(x, keys, is_min))


def _with_entries(args: tuple[Compiled, ...]) -> Compiled:
    fg = args[0].gen()
    return _one(lambda x: lib.from_entries([v for entry in rt.to_entries(x) for v in fg(entry)]))


def _add1(args: tuple[Compiled, ...]) -> Compiled:
    fg = args[0].gen()
    add = lib.add_values

    def add1(x: Any) -> Any:
        acc = None
        for v in fg(x):
            acc = add(acc, v)
        return acc

    return _one(add1)


def _add0(x: Any) -> Any:
    acc = None
    add = lib.add_values
    for v in lib.iter_values(x):
        acc = add(acc, v)
    return acc


def _recurse(args: tuple[Compiled, ...]) -> Compiled:
    """def recurse(f): def r: ., (f | r); r -- and recurse(f; cond) with `select(cond)` after f; no recursion."""
    fg = args[0].gen()
    cg = args[1].gen() if len(args) == 2 else None

    def children(v: Any) -> Iterator[Any]:
        if cg is None:
            yield from fg(v)
            return
        for child in fg(v):
            for c in cg(child):
                if truthy(c):
                    yield child

    def rec(x: Any) -> Iterator[Any]:
        stack: list[Iterator[Any]] = [iter((x,))]
        while stack:
            for v in stack[-1]:
                yield v
                stack.append(children(v))
                break
            else:
                stack.pop()

    return Compiled(MANY, rec)


def _first_or_none(outputs: Iterator[Any]) -> Any:
    return next(outputs, NONE)


def _map_values(args: tuple[Compiled, ...]) -> Compiled:
    """def map_values(f): .[] |= f -- each value becomes f's first output, or goes if f has none."""
    fg = args[0].gen()
    return _one(lambda x: _update_each(x, fg))


def _update_each(x: Any, fg: Callable[[Any], Iterator[Any]]) -> Any:
    t = type(x)
    if t is list:
        return [v for v in (_first_or_none(fg(item)) for item in x) if v is not NONE]
    if t is dict:
        out = {}
        for k, item in x.items():
            v = _first_or_none(fg(item))
            if v is not NONE:
                out[k] = v
        return out
    raise rt.iterate_error(x)


def _walk(args: tuple[Compiled, ...]) -> Compiled:
    """def walk(f): def w: if object then map_values(w) elif array then map(w) else . end | f; w"""
    fg = args[0].gen()

    def w(v: Any) -> Iterator[Any]:
        t = type(v)
        if t is dict:
            v = _update_each(v, w)
        elif t is list:
            v = [out for item in v for out in w(item)]
        yield from fg(v)

    def walk(x: Any) -> Iterator[Any]:
        try:
            yield from w(x)
        except RecursionError as error:
            raise NeedsLibjq(rt.TOO_DEEP) from error

    return Compiled(MANY, walk)


def _transpose(x: Any) -> Any:
    """def transpose: [range(0; map(length)|max // 0) as $i | [.[][$i]]]"""
    rows = lib.iter_values(x)
    lengths = [rt.length(r) for r in rows]
    longest = lib.minmax_by(lengths, lengths, False)
    n = longest if truthy(longest) else 0
    if type(n) is not int:
        raise NeedsLibjq("transpose of rows with a fractional length")
    return [[rt.index(r, i) for r in rows] for i in range(n)]


def _index_by(args: tuple[Compiled, ...]) -> Compiled:
    """INDEX(stream; f): reduce stream as $row ({}; .[$row|f|tostring] = $row); INDEX(f): INDEX(.[]; f)."""
    if len(args) == 1:
        sg: Callable[[Any], Iterator[Any]] = lambda x: iter(lib.iter_values(x))  # noqa: E731
        fg = args[0].gen()
    else:
        sg, fg = args[0].gen(), args[1].gen()

    def index_by(x: Any) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for row in sg(x):
            for k in fg(row):
                out[rt.tostring(k)] = row
        return out

    return _one(index_by)


def _bsearch(x: Any, target: Any) -> int:
    if type(x) is not list:
        raise JqError(f"{rt.type_name(x)} ({rt.error_text(x)}) cannot be searched from")
    lo, hi = 0, len(x)
    while lo < hi:
        mid = lo + (hi - lo) // 2
        r = rt.compare(target, x[mid])
        if r == 0:
            return mid
        if r < 0:
            hi = mid
        else:
            lo = mid + 1
    return -1 - lo


def _paths0(args: tuple[Compiled, ...]) -> Compiled:
    return Compiled(MANY, lambda x: (path for path, _ in lib.paths(x) if path))


def _paths1(args: tuple[Compiled, ...]) -> Compiled:
    """def paths(f): path(..|select(f)) | select(length > 0): one path per truthy output of f."""
    fg = args[0].gen()

    def each(x: Any) -> Iterator[Any]:
        for path, v in lib.paths(x):
            for c in fg(v):
                if truthy(c) and path:
                    yield path

    return Compiled(MANY, each)


def _format(args: tuple[Compiled, ...]) -> Compiled:
    def fmt(x: Any, name: Any) -> Any:
        if type(name) is not str:
            raise JqError(f"{rt.type_name(name)} ({rt.error_text(name)}) is not a valid format")
        run = lib.FORMATS.get(name)
        if run is None:
            raise JqError(f"{name} is not a valid format")
        return run(x)

    return _with_arg(fmt)(args)


def _to_date(x: Any) -> Any:
    return lib.strftime(x, "%Y-%m-%dT%H:%M:%SZ")


def _from_date(x: Any) -> Any:
    return lib.mktime(lib.strptime(x, "%Y-%m-%dT%H:%M:%SZ"))


def _rounding(fn: Callable[[float], int]) -> Callable[[Any], Any]:
    def run(x: Any) -> Any:
        if type(x) is int and -MAX_SAFE_INT <= x <= MAX_SAFE_INT:
            return x
        if type(x) is float and math.isfinite(x) and abs(x) < MAX_SAFE_INT:
            return fn(x)
        if type(x) not in (int, float):
            raise JqError(f"{rt.type_name(x)} ({rt.error_text(x)}) number required")
        raise NeedsLibjq("rounding a huge or non-finite number")

    return run


def _round_half_away(x: float) -> int:
    """C's round(): halves away from zero (x - floor(x) is exact for these magnitudes)."""
    magnitude = abs(x)
    whole = math.floor(magnitude)
    rounded = whole + 1 if magnitude - whole >= 0.5 else whole
    return rounded if x >= 0 else -rounded


def _isempty(args: tuple[Compiled, ...]) -> Compiled:
    first = args[0].first()
    return _one(lambda x: first(x) is NONE)


def _inside(args: tuple[Compiled, ...]) -> Compiled:
    return _with_arg(lambda x, a: rt.contains(a, x))(args)


def _in_keys(args: tuple[Compiled, ...]) -> Compiled:
    return _with_arg(lambda x, a: rt.has(a, x))(args)


def _empty(args: tuple[Compiled, ...]) -> Compiled:
    return Compiled(OPT, lambda x: NONE)


def _literal(value: Any) -> Callable[[tuple[Compiled, ...]], Compiled]:
    return lambda args: _one(lambda x: value)


def _type(x: Any) -> str:
    return rt.type_name(x)


_BUILTINS: dict[tuple[str, int], Callable[[tuple[Compiled, ...]], Compiled]] = {
    ("empty", 0): _empty,
    ("true", 0): _literal(True),
    ("false", 0): _literal(False),
    ("null", 0): _literal(None),
    ("not", 0): _unary(lambda x: not truthy(x)),
    ("error", 0): _error0,
    ("error", 1): _error1,
    ("select", 1): _select,
    ("length", 0): _unary(rt.length),
    ("utf8bytelength", 0): _unary(rt.utf8bytelength),
    ("type", 0): _unary(_type),
    ("keys", 0): _unary(lambda x: rt.keys(x, True)),
    ("keys_unsorted", 0): _unary(lambda x: rt.keys(x, False)),
    ("to_entries", 0): _unary(rt.to_entries),
    ("tostring", 0): _unary(rt.tostring),
    ("tojson", 0): _unary(rt.tojson),
    ("tonumber", 0): _unary(lib.tonumber),
    ("ascii_downcase", 0): _unary(rt.ascii_downcase),
    ("ascii_upcase", 0): _unary(rt.ascii_upcase),
    ("add", 0): _unary(_add0),
    ("first", 0): _unary(lambda x: rt.index(x, 0)),
    ("last", 0): _unary(lambda x: rt.index(x, -1)),
    ("values", 0): lambda args: Compiled(OPT, lambda x: x if x is not None else NONE),
    ("nulls", 0): lambda args: Compiled(OPT, lambda x: x if x is None else NONE),
    ("booleans", 0): _select_type(("boolean",)),
    ("numbers", 0): _select_type(("number",)),
    ("strings", 0): _select_type(("string",)),
    ("arrays", 0): _select_type(("array",)),
    ("objects", 0): _select_type(("object",)),
    ("iterables", 0): _select_type(("array", "object")),
    ("scalars", 0): _select_type(("null", "boolean", "number", "string")),
    ("has", 1): _with_arg(rt.has),
    ("in", 1): _in_keys,
    ("contains", 1): _with_arg(rt.contains),
    ("inside", 1): _inside,
    ("startswith", 1): _with_arg(rt.startswith),
    ("endswith", 1): _with_arg(rt.endswith),
    ("ltrimstr", 1): _with_arg(rt.ltrimstr),
    ("rtrimstr", 1): _with_arg(rt.rtrimstr),
    ("split", 1): _with_arg(rt.split),
    ("join", 1): _with_arg(rt.join),
    ("map", 1): _map,
    ("first", 1): _first1,
    ("isempty", 1): _isempty,
    ("last", 1): _last1,
    ("limit", 2): _limit,
    ("skip", 2): _skip,
    ("nth", 2): _nth2,
    ("nth", 1): _with_arg(rt.index),
    ("range", 1): _range,
    ("range", 2): _range,
    ("indices", 1): _with_arg(lib.indices),
    ("index", 1): _with_arg(lib.index_of),
    ("rindex", 1): _with_arg(lib.rindex_of),
    ("explode", 0): _unary(lib.explode),
    ("implode", 0): _unary(lib.implode),
    ("trim", 0): _unary(lib.trim),
    ("ltrim", 0): _unary(lib.ltrim),
    ("rtrim", 0): _unary(lib.rtrim),
    ("trimstr", 1): _with_arg(lib.trimstr),
    ("toboolean", 0): _unary(lib.toboolean),
    ("fromjson", 0): _unary(lib.fromjson),
    ("abs", 0): _unary(lib.abs_value),
    ("infinite", 0): _literal(math.inf),
    ("nan", 0): _literal(math.nan),
    ("isinfinite", 0): _unary(lib.isinfinite),
    ("isnan", 0): _unary(lib.isnan),
    ("isnormal", 0): _unary(lib.isnormal),
    ("isfinite", 0): _unary(lib.isfinite),
    ("normals", 0): lambda args: Compiled(OPT, lambda x: x if lib.isnormal(x) else NONE),
    ("finites", 0): lambda args: Compiled(OPT, lambda x: x if lib.isfinite(x) else NONE),
    ("floor", 0): _unary(_rounding(math.floor)),
    ("ceil", 0): _unary(_rounding(math.ceil)),
    ("round", 0): _unary(_rounding(_round_half_away)),
    ("trunc", 0): _unary(_rounding(math.trunc)),
    ("range", 3): _range3,
    ("combinations", 0): _combinations,
    ("combinations", 1): _combinations,
    ("sort", 0): _unary(lib.sort),
    ("unique", 0): _unary(lib.unique),
    ("min", 0): _unary(lambda x: lib.minmax_by(x, x, True)),
    ("max", 0): _unary(lambda x: lib.minmax_by(x, x, False)),
    ("sort_by", 1): _by(lib.sort_by_keys),
    ("group_by", 1): _by(lib.group_by_keys),
    ("unique_by", 1): _by(lib.unique_by_keys),
    ("min_by", 1): _minmax_by(True),
    ("max_by", 1): _minmax_by(False),
    ("reverse", 0): _unary(lib.reverse),
    ("flatten", 0): _unary(lambda x: lib.flatten_all(x, -1)),
    ("flatten", 1): _with_arg(lib.flatten),
    ("from_entries", 0): _unary(lib.from_entries),
    ("with_entries", 1): _with_entries,
    ("add", 1): _add1,
    ("getpath", 1): _with_arg(lib.getpath),
    ("paths", 0): _paths0,
    ("recurse", 0): lambda args: _compile_recurse(Recurse()),
    ("recurse", 1): _recurse,
    ("recurse", 2): _recurse,
    ("map_values", 1): _map_values,
    ("walk", 1): _walk,
    ("transpose", 0): _unary(_transpose),
    ("INDEX", 1): _index_by,
    ("INDEX", 2): _index_by,
    ("bsearch", 1): _with_arg(_bsearch),
    ("have_decnum", 0): _literal(True),
    ("have_literal_numbers", 0): _literal(True),
    ("paths", 1): _paths1,
    ("format", 1): _format,
    ("mktime", 0): _unary(lib.mktime),
    ("gmtime", 0): _unary(lib.gmtime),
    ("strftime", 1): _with_arg(lib.strftime),
    ("strptime", 1): _with_arg(lib.strptime),
    ("todateiso8601", 0): _unary(_to_date),
    ("todate", 0): _unary(_to_date),
    ("fromdateiso8601", 0): _unary(_from_date),
    ("fromdate", 0): _unary(_from_date),
    ("any", 0): _any0,
    ("all", 0): _all0,
    ("any", 1): _any1,
    ("all", 1): _all1,
    ("any", 2): _any2,
    ("all", 2): _all2,
    ("IN", 1): _in1,
    ("IN", 2): _in2,
}


def _compile_call(node: Call) -> Compiled:
    name, arity = node.name, len(node.args)
    user = _defs.get((name, arity))
    if isinstance(user, _Closure):
        return _in_env(user.node, user.defs, user.scope, user.active, user.labels)
    if isinstance(user, _UserDef):
        return _call_user(user, node)
    if (name, arity) in _REGEX_CALLS:
        return _compile_regex_call(node)
    if (name, arity) == ("path", 1):
        return _path1(node)
    if name == "IN" and arity == 1 and (names := string_literals(node.args[0])) is not None:
        return _in_strings(frozenset(names))
    build = _BUILTINS.get((name, arity))
    if build is None:
        raise Unsupported(f"uses `{name}/{arity}`")
    return build(tuple(_compile(arg) for arg in node.args))


# -- path(f): the paths a path expression visits, for the expressions jq accepts in path position

PathGen = Callable[[Any], Iterator[tuple[list[Any], Any]]]


def _compile_path(node: Node) -> PathGen:
    """(path, value) pairs of `node` as a path expression; what jq may treat otherwise is Unsupported."""
    if isinstance(node, Identity):
        return lambda x: iter((([], x),))
    if isinstance(node, Recurse):
        return lambda x: iter(lib.paths(x))
    if isinstance(node, Pipe):
        left, right = _compile_path(node.left), _compile_path(node.right)

        def pipe(x: Any) -> Iterator[tuple[list[Any], Any]]:
            for p, v in left(x):
                for q, w in right(v):
                    yield p + q, w

        return pipe
    if isinstance(node, Comma):
        first, second = _compile_path(node.left), _compile_path(node.right)
        return lambda x: itertools.chain(first(x), second(x))
    if isinstance(node, Index):
        return _path_index(node)
    if isinstance(node, Iterate):
        return _path_iterate(node)
    if isinstance(node, If):
        cg = _compile(node.cond).gen()
        then, other = _compile_path(node.then), _compile_path(node.otherwise)

        def if_path(x: Any) -> Iterator[tuple[list[Any], Any]]:
            for c in cg(x):
                yield from (then(x) if truthy(c) else other(x))

        return if_path
    if isinstance(node, Try) and node.catch is None:
        body = _compile_path(node.body)

        def try_path(x: Any) -> Iterator[tuple[list[Any], Any]]:
            try:
                yield from body(x)
            except JqError:
                return

        return try_path
    if isinstance(node, Call):
        return _path_call(node)
    raise Unsupported(f"uses `path` over {type(node).__name__}")


def _path_call(node: Call) -> PathGen:
    name, args = node.name, node.args
    if (name, len(args)) in _defs:
        raise Unsupported("uses `path` over a `def`")
    if name == "empty" and not args:
        return lambda x: iter(())
    if name in ("select", "recurse") and len(args) <= 1:
        if name == "recurse" and not args:
            return lambda x: iter(lib.paths(x))
        if name == "select":
            cg = _compile(args[0]).gen()
            return lambda x: (([], x) for c in cg(x) if truthy(c))
    if not args and name in _TYPE_SELECTORS:
        keep = _BUILTINS[(name, 0)](()).fn
        return lambda x: iter((([], x),)) if keep(x) is not NONE else iter(())
    if name == "first" and len(args) == 1:
        inner = _compile_path(args[0])
        return lambda x: itertools.islice(inner(x), 1)
    if name == "getpath" and len(args) == 1:
        pg = _compile(args[0]).gen()

        def getpath(x: Any) -> Iterator[tuple[list[Any], Any]]:
            for p in pg(x):
                value = lib.getpath(x, p)
                yield list(p), value

        return getpath
    raise Unsupported(f"uses `path` over `{name}/{len(args)}`")


_TYPE_SELECTORS = frozenset(
    {"values", "nulls", "booleans", "numbers", "strings", "arrays", "objects", "iterables", "scalars"}
)


def _path_index(node: Index) -> PathGen:
    target = _compile_path(node.target)
    kg = _compile(node.key).gen()
    optional = node.optional
    index = rt.index

    def index_path(x: Any) -> Iterator[tuple[list[Any], Any]]:
        for k in kg(x):
            if type(k) is not str and type(k) is not int:
                raise NeedsLibjq("a path through a non-string, non-integer key")
            for p, v in target(x):
                try:
                    value = index(v, k)
                except JqError:
                    if optional:
                        continue
                    raise
                yield [*p, k], value

    return index_path


def _path_iterate(node: Iterate) -> PathGen:
    target = _compile_path(node.target)
    optional = node.optional

    def iterate_path(x: Any) -> Iterator[tuple[list[Any], Any]]:
        for p, v in target(x):
            t = type(v)
            if t is list:
                yield from (([*p, i], item) for i, item in enumerate(v))
            elif t is dict:
                yield from (([*p, k], item) for k, item in v.items())
            elif not optional:
                raise rt.iterate_error(v)

    return iterate_path


def _path1(node: Call) -> Compiled:
    paths = _compile_path(node.args[0])
    return Compiled(MANY, lambda x: (p for p, _ in paths(x)))


# -- regexes: the pattern and flags must be constants (a computed regex goes to libjq)

_REGEX_CALLS = frozenset(
    {
        ("test", 1), ("test", 2), ("match", 1), ("match", 2), ("capture", 1), ("capture", 2), ("scan", 1),
        ("scan", 2), ("splits", 1), ("splits", 2), ("split", 2), ("sub", 2), ("sub", 3), ("gsub", 2), ("gsub", 3),
    }
)  # fmt: skip
_NOT_CONSTANT = object()


def constant_value(node: Node) -> Any:
    """The value of a constant expression (literals, arrays and objects of literals), or _NOT_CONSTANT."""
    if isinstance(node, Literal):
        return node.value
    if isinstance(node, Call) and not node.args and node.name in ("null", "true", "false"):
        return {"null": None, "true": True, "false": False}[node.name]
    if isinstance(node, ArrayCons):
        if node.body is None:
            return []
        items: list[Any] = []
        stack = [node.body]
        while stack:
            part = stack.pop()
            if isinstance(part, Comma):
                stack += [part.right, part.left]
                continue
            value = constant_value(part)
            if value is _NOT_CONSTANT:
                return _NOT_CONSTANT
            items.append(value)
        return items
    return _NOT_CONSTANT


def _regex_args(node: Call) -> tuple[str, str | None]:
    """(pattern, flags) as jq's definitions hand them to `_match_impl`."""
    name, args = node.name, node.args
    if name in ("sub", "gsub"):
        pattern = constant_value(args[0])
        flags = constant_value(args[2]) if len(args) == 3 else ""
    else:
        pattern = constant_value(args[0])
        flags = constant_value(args[1]) if len(args) == 2 else None
        if len(args) == 1 and name in ("test", "match", "capture") and type(pattern) is list:
            if not pattern:
                raise Unsupported(f"uses `{name}` with an empty array")
            pattern, flags = pattern[0], (pattern[1] if len(pattern) > 1 else None)
    if type(pattern) is not str:
        raise Unsupported(f"uses `{name}` with a computed or non-string regex")
    if flags is not None and type(flags) is not str:
        raise Unsupported(f"uses `{name}` with computed or non-string flags")
    if name == "scan":
        flags = "g" + (flags or "")
    elif name in ("splits", "split", "gsub"):
        flags = (flags or "") + "g"
    return pattern, flags


def _compile_regex_call(node: Call) -> Compiled:
    pattern, flags = _regex_args(node)
    regex = compile_regex(pattern, flags)
    name = node.name
    regex_error = jqregex.regex_error
    if name == "test":
        test = regex.test

        def run_test(x: Any) -> bool:
            if type(x) is not str:
                raise regex_error(x)
            return test(x)

        return _one(run_test)
    matches = regex.matches
    if name == "match":

        def run_match(x: Any) -> Iterator[Any]:
            if type(x) is not str:
                raise regex_error(x)
            return iter(matches(x))

        return Compiled(MANY, run_match)
    if name == "capture":

        def run_capture(x: Any) -> Iterator[Any]:
            if type(x) is not str:
                raise regex_error(x)
            for m in matches(x):
                yield {c["name"]: c["string"] for c in m["captures"] if c["name"] is not None}

        return Compiled(MANY, run_capture)
    if name == "scan":

        def run_scan(x: Any) -> Iterator[Any]:
            if type(x) is not str:
                raise regex_error(x)
            for m in matches(x):
                yield [c["string"] for c in m["captures"]] if m["captures"] else m["string"]

        return Compiled(MANY, run_scan)
    if name in ("splits", "split"):
        spans = regex.spans

        def pieces(x: Any) -> list[str]:
            if type(x) is not str:
                raise regex_error(x)
            out, start = [], 0
            for found in spans(x):
                b, e = found[0]
                out.append(x[start:b])
                start = e
            out.append(x[start:])
            return out

        if name == "split":
            return _one(pieces)
        return Compiled(MANY, lambda x: iter(pieces(x)))
    replacement = _compile(node.args[1]).gen()
    plus = rt.plus

    def run_sub(x: Any) -> Iterator[Any]:
        if type(x) is not str:
            raise regex_error(x)
        result: list[Any] = []
        previous = 0
        for m in matches(x):
            gap = x[previous : m["offset"]]
            captured = {c["name"]: c["string"] for c in m["captures"] if c["name"] is not None}
            for ix, insert in enumerate(list(replacement(captured))):
                if ix < len(result):
                    result[ix] = plus(result[ix], plus(gap, insert))
                else:
                    result.extend([None] * (ix - len(result)))
                    result.append(plus(None, plus(gap, insert)))
            previous = m["offset"] + m["length"]
        tail = x[previous:]
        found = False
        for r in result:
            out = plus(r, tail)
            if truthy(out):
                found = True
                yield out
        if not found:
            yield x

    return Compiled(MANY, run_sub)


_HANDLERS: dict[type, Callable[[Any], Compiled]] = {
    Identity: _compile_identity,
    Recurse: _compile_recurse,
    Literal: _compile_literal,
    Index: _compile_index,
    Iterate: _compile_iterate,
    Try: _compile_try,
    Pipe: _compile_pipe,
    Comma: _compile_comma,
    If: _compile_if,
    Binary: _compile_binary,
    Negate: _compile_negate,
    StringInterp: _compile_string,
    ArrayCons: _compile_array,
    ObjectCons: _compile_object,
    Call: _compile_call,
    Bind: _compile_bind,
    Var: _compile_var,
    Reduce: _compile_reduce,
    FuncDef: _compile_funcdef,
    Label: _compile_label,
    Break: _compile_break,
}
