"""A program's own `def`s inlined, for the index's analysis: `def is_root: ...; select(is_root)` is read as
`select(...)`, so a rule written with helper functions is indexed like one written without.

Only the analysis reads the result (the compiled path and libjq run the program as written). jq's scoping is
kept by renaming: every variable and label bound in the program gets a name of its own (`$x#3`), so a body
moved to its call site cannot capture, or be captured by, the variables there. A filter argument is the
caller's expression, already inlined in the caller's scope; a `$name` parameter binds its argument's
outputs, as jq reads `def f($a): body` as `def f(a): a as $a | body`.

A recursive `def` cannot be inlined, nor a program that grows past `MAX_NODES`: `CannotInline`.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Final

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
    Var,
)

MAX_NODES: Final = 20_000
"""Inlining copies a body per call: `def a: b, b; def b: c, c; ...` doubles at each level."""


class CannotInline(Exception):
    """A recursive `def`, or a program too large once inlined; `reason` says which."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(eq=False)
class _Definition:
    """A `def` where it was made: what its body sees (functions, variables, labels)."""

    name: str
    params: tuple[str, ...]
    body: Node
    functions: Mapping[tuple[str, int], _Definition | _Argument] = field(default_factory=dict)
    variables: Mapping[str, str] = field(default_factory=dict)
    labels: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class _Argument:
    """A filter parameter inside an inlined body: the caller's expression, already inlined."""

    node: Node


@dataclass(frozen=True)
class _Scope:
    functions: Mapping[tuple[str, int], _Definition | _Argument]
    variables: Mapping[str, str]
    labels: Mapping[str, str]


def has_definitions(node: Node) -> bool:
    """Whether the program defines a function anywhere (only then is inlining worth a walk)."""
    return any(isinstance(part, FuncDef) for part in _walk(node))


def inline_definitions(program: Node) -> Node:
    """`program` with each call of one of its own functions replaced by the function's body.

    Raises:
        CannotInline: a function calls itself, or the program grows past MAX_NODES.
    """
    return _Inliner().node(program, _Scope({}, {}, {}))


class _Inliner:
    def __init__(self) -> None:
        self._fresh = itertools.count(1)
        self._active: list[_Definition] = []
        self._size = 0

    def _name(self, name: str) -> str:
        return f"{name}#{next(self._fresh)}"  # `#` is in no jq name: never one the program wrote

    def node(self, node: Node, scope: _Scope) -> Node:
        self._size += 1
        if self._size > MAX_NODES:
            raise CannotInline(f"it grows past {MAX_NODES} nodes when its functions are inlined")
        if isinstance(node, FuncDef):
            definition = _Definition(node.name, node.params, node.body)
            functions = {**scope.functions, (node.name, len(node.params)): definition}
            definition.functions, definition.variables, definition.labels = functions, scope.variables, scope.labels
            return self.node(node.rest, _Scope(functions, scope.variables, scope.labels))
        if isinstance(node, Call):
            return self._call(node, scope)
        if isinstance(node, Var):
            return Var(scope.variables.get(node.name, node.name))
        if isinstance(node, Bind):
            name = self._name(node.name)
            inner = _Scope(scope.functions, {**scope.variables, node.name: name}, scope.labels)
            return Bind(self.node(node.source, scope), name, self.node(node.body, inner))
        if isinstance(node, Reduce):
            name = self._name(node.name)
            inner = _Scope(scope.functions, {**scope.variables, node.name: name}, scope.labels)
            extract = None if node.extract is None else self.node(node.extract, inner)
            return Reduce(
                self.node(node.source, scope),
                name,
                self.node(node.init, scope),
                self.node(node.update, inner),
                node.foreach,
                extract,
            )
        if isinstance(node, Label):
            name = self._name(node.name)
            inner = _Scope(scope.functions, scope.variables, {**scope.labels, node.name: name})
            return Label(name, self.node(node.body, inner))
        if isinstance(node, Break):
            return Break(scope.labels.get(node.name, node.name))
        return self._children(node, scope)

    def _call(self, node: Call, scope: _Scope) -> Node:
        found = scope.functions.get((node.name, len(node.args)))
        args = tuple(self.node(arg, scope) for arg in node.args)
        if found is None:  # a builtin
            return Call(node.name, args)
        if isinstance(found, _Argument):
            return found.node
        if any(active is found for active in self._active):
            raise CannotInline(f"`{found.name}/{len(found.params)}` calls itself")
        functions = dict(found.functions)
        variables = dict(found.variables)
        bindings: list[tuple[Node, str]] = []
        for param, arg in zip(found.params, args, strict=True):
            if param.startswith("$"):  # `$a`: the variable, and `a` as a filter giving its value
                name = self._name(param)
                variables[param] = name
                functions[(param[1:], 0)] = _Argument(Var(name))
                bindings.append((arg, name))
            else:
                functions[(param, 0)] = _Argument(arg)
        self._active.append(found)
        try:
            body = self.node(found.body, _Scope(functions, variables, found.labels))
        finally:
            self._active.pop()
        for arg, name in reversed(bindings):
            body = Bind(arg, name, body)
        return body

    def _children(self, node: Node, scope: _Scope) -> Node:
        """The same node over its inlined children (nodes that bind nothing)."""
        if isinstance(node, Identity | Recurse | Literal):
            return node
        if isinstance(node, Index):
            return Index(self.node(node.target, scope), self.node(node.key, scope), node.optional)
        if isinstance(node, Iterate):
            return Iterate(self.node(node.target, scope), node.optional)
        if isinstance(node, Try):
            catch = None if node.catch is None else self.node(node.catch, scope)
            return Try(self.node(node.body, scope), catch)
        if isinstance(node, Pipe):
            return Pipe(self.node(node.left, scope), self.node(node.right, scope))
        if isinstance(node, Comma):
            return Comma(self.node(node.left, scope), self.node(node.right, scope))
        if isinstance(node, Binary):
            return Binary(node.op, self.node(node.left, scope), self.node(node.right, scope))
        if isinstance(node, Negate):
            return Negate(self.node(node.operand, scope))
        if isinstance(node, If):
            return If(self.node(node.cond, scope), self.node(node.then, scope), self.node(node.otherwise, scope))
        if isinstance(node, StringInterp):
            return StringInterp(tuple(p if isinstance(p, str) else self.node(p, scope) for p in node.parts))
        if isinstance(node, ArrayCons):
            return ArrayCons(None if node.body is None else self.node(node.body, scope))
        if isinstance(node, ObjectCons):
            return ObjectCons(tuple((self.node(k, scope), self.node(v, scope)) for k, v in node.entries))
        raise CannotInline(f"`{type(node).__name__}` is not read by the inliner")


def _walk(node: Node) -> Iterator[Node]:
    stack: list[Node] = [node]
    while stack:
        current = stack.pop()
        yield current
        for name in getattr(current, "__slots__", ()):
            value = getattr(current, name)
            if isinstance(value, Node):
                stack.append(value)
            elif isinstance(value, tuple):
                for item in value:
                    if isinstance(item, Node):
                        stack.append(item)
                    elif isinstance(item, tuple):
                        stack.extend(part for part in item if isinstance(part, Node))
