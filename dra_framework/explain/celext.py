"""CEL features kube-scheduler's DRA environment has beyond what cel-python evaluates itself:
the ``cel.bind`` macro (cel-go ext.Bindings), the ``sets`` library (``sets.contains``,
``sets.equivalent``, ``sets.intersects``; cel-go ext.Sets), and the compile-time check for
undeclared references (an unknown variable or function is a compile error in cel-go, where
cel-python only fails when it evaluates it), and optional chaining (``.?``, ``[?...]``) with the
parser of celopt.py.
"""
from __future__ import annotations

from typing import Any, Callable, Iterable, cast

import lark
from celpy import InterpretedRunner, celtypes
from celpy.evaluation import CELEvalError, Evaluator

from . import celopt

#: cel-go's standard functions and macros that cel-python also has, beyond FUNCTIONS
STANDARD = {"has", "size", "int", "uint", "double", "string", "bytes", "bool", "type", "dyn", "duration",
            "timestamp", "matches", "contains", "startsWith", "endsWith", "all", "exists", "exists_one", "map",
            "filter", "getDate", "getDayOfMonth", "getDayOfWeek", "getDayOfYear", "getFullYear", "getHours",
            "getMilliseconds", "getMinutes", "getMonth", "getSeconds"}
_MACROS = {"all", "exists", "exists_one", "map", "filter"}
SETS = ("contains", "equivalent", "intersects")
_OPT = {"member_dot_opt", "member_index_opt"}
_NAMESPACES = {"cel": {"bind"}, "sets": set(SETS), "optional": set(celopt.NAMESPACE)}


def _has_opt(tree: lark.Tree) -> bool:
    """``tree`` holds a ``.?`` or ``[?`` (then a plain selection on it may meet an optional)."""
    return any(t.data in _OPT for t in tree.iter_subtrees())


def _namespace(member: lark.Tree) -> str | None:
    """``cel`` for the member tree of ``cel.bind(...)``: a bare identifier, else None."""
    if member.data == "member" and len(member.children) == 1:
        prim = member.children[0]
        if isinstance(prim, lark.Tree) and prim.data == "primary" and len(prim.children) == 1:
            ident = prim.children[0]
            if isinstance(ident, lark.Tree) and ident.data == "ident":
                return str(ident.children[0])
    return None


def _list(x: Any) -> list[Any]:
    if not isinstance(x, celtypes.ListType):
        raise TypeError("no such overload")
    return list(x)


def _sets(name: str, eq: Callable[[Any, Any], Any]) -> Callable[[Any, Any], celtypes.BoolType]:
    def contains(a: list[Any], b: list[Any]) -> bool:
        return all(any(bool(eq(x, y)) for x in a) for y in b)

    def f(a: Any, b: Any) -> celtypes.BoolType:
        xs, ys = _list(a), _list(b)
        if name == "contains":
            return celtypes.BoolType(contains(xs, ys))
        if name == "equivalent":
            return celtypes.BoolType(contains(xs, ys) and contains(ys, xs))
        return celtypes.BoolType(any(bool(eq(x, y)) for x in xs for y in ys))
    return f


class DraEvaluator(Evaluator):
    """cel-python's interpreter plus ``cel.bind`` and ``sets.*``."""

    eq: Callable[[Any, Any], Any] = staticmethod(lambda a, b: celtypes.BoolType(a == b))

    def sub_evaluator(self, ast: lark.Tree) -> Evaluator:
        return type(self)(ast, activation=self.activation)

    def member_dot_arg(self, tree: lark.Tree) -> Any:
        member, name = tree.children[0], str(tree.children[1])
        ns = _namespace(member) if isinstance(member, lark.Tree) else None
        args = list(tree.children[2].children) if len(tree.children) > 2 and tree.children[2] is not None else []
        if ns == "cel" and name == "bind" and len(args) == 3:
            var = next(args[0].find_data("ident")).children[0]
            value = self.visit(args[1])
            if isinstance(value, CELEvalError):
                return value
            return self.sub_evaluator(args[2]).evaluate({str(var): value})
        if ns == "sets" and name in SETS and len(args) == 2:
            values = [self.visit(a) for a in args]
            err = next((v for v in values if isinstance(v, CELEvalError)), None)
            if err is not None:
                return err
            try:
                return _sets(name, self.eq)(*values)
            except TypeError as exc:
                return CELEvalError("no such overload", TypeError, exc.args, tree=tree)
        if ns == "optional" and name in celopt.NAMESPACE:
            values = [self.visit(a) for a in args]
            err = next((v for v in values if isinstance(v, CELEvalError)), None)
            return err if err is not None else celopt.NAMESPACE[name](*values)
        return super().member_dot_arg(tree)

    def _opt_select(self, tree: lark.Tree, member: Any, key: Any, optional: bool) -> Any:
        if isinstance(member, CELEvalError):
            return member
        if isinstance(member, celopt.Optional):
            if member.value is None:
                return member
            if not optional:  # x.?a.b: select inside the optional
                try:
                    return celopt.Optional(member.value[key])
                except KeyError:
                    return CELEvalError(f"no such key: {key}", KeyError, None, tree=tree)
                except TypeError:
                    return CELEvalError("no such overload", TypeError, None, tree=tree)
            member = member.value
        try:
            return celopt.select(member, key)
        except TypeError:
            return CELEvalError("no such overload", TypeError, None, tree=tree)

    def member_dot_opt(self, tree: lark.Tree) -> Any:
        return self._opt_select(tree, self.visit(tree.children[0]), celtypes.StringType(str(tree.children[1])), True)

    def member_index_opt(self, tree: lark.Tree) -> Any:
        key = self.visit(tree.children[1])
        if isinstance(key, CELEvalError):
            return key
        return self._opt_select(tree, self.visit(tree.children[0]), key, True)

    def member_dot(self, tree: lark.Tree) -> Any:
        member_tree = tree.children[0]
        if isinstance(member_tree, lark.Tree) and _has_opt(member_tree):
            member = self.visit(member_tree)
            if isinstance(member, celopt.Optional):
                return self._opt_select(tree, member, celtypes.StringType(str(tree.children[1])), False)
        return super().member_dot(tree)

    def member_index(self, tree: lark.Tree) -> Any:
        member_tree = tree.children[0]
        if isinstance(member_tree, lark.Tree) and _has_opt(member_tree):
            member = self.visit(member_tree)
            if isinstance(member, celopt.Optional):
                key = self.visit(tree.children[1])
                return key if isinstance(key, CELEvalError) else self._opt_select(tree, member, key, False)
        return super().member_index(tree)


def runner(eq: Callable[[Any, Any], Any]) -> type[InterpretedRunner]:
    """An InterpretedRunner on :class:`DraEvaluator` whose sets compare with ``eq``."""
    ev = type("Evaluator", (DraEvaluator,), {"eq": staticmethod(eq)})

    class Runner(InterpretedRunner):
        def evaluate(self, context: Any) -> Any:
            return ev(ast=self.ast, activation=self.new_activation()).evaluate(context)
    return Runner


def _refs(ast: lark.Tree, functions: Iterable[str]) -> list[tuple[int, int, str]]:
    """(line, column, name) of every reference cel-go's checker would call undeclared: a variable
    other than ``device`` (or a macro's or ``cel.bind``'s own), or a function it does not know.
    Columns as cel-go reports them: an identifier's first character, a call's ``(``."""
    known = set(functions) | STANDARD
    bound = {"device"}
    for node in ast.iter_subtrees():
        if node.data == "member_dot_arg" and len(node.children) > 2 and node.children[2] is not None:
            if str(node.children[1]) in _MACROS | {"bind"}:
                bound.update(str(t.children[0]) for t in node.children[2].children[0].find_data("ident"))
    out = []
    for node in ast.iter_subtrees():
        if node.data == "member_dot_arg":
            tok: Any = node.children[1]
            ns = _namespace(node.children[0])
            name = str(tok)
            ok = name in _NAMESPACES[ns] if ns in _NAMESPACES else name in known
            if not ok:
                out.append((tok.line, tok.column + len(name), name))
                if ns in _NAMESPACES:
                    ident: Any = node.children[0].children[0].children[0].children[0]
                    out.append((ident.line, ident.column, ns))
        elif node.data == "ident_arg" and str(node.children[0]) not in known:
            tok = cast(Any, node.children[0])
            out.append((tok.line, tok.column + len(str(tok)), str(tok)))
        elif node.data == "ident" and str(node.children[0]) not in bound | set(_NAMESPACES):
            tok = cast(Any, node.children[0])
            out.append((tok.line, tok.column, str(tok)))
    return sorted(set(out))


def undeclared(ast: lark.Tree, expression: str, functions: Iterable[str]) -> str | None:
    """cel-go's compile error for undeclared references, or None: ``ERROR: <input>:L:C: undeclared
    reference to 'x' (in container '')`` and the line with a caret under the place, per reference."""
    lines = expression.split("\n")
    errs = []
    for line, col, name in _refs(ast, functions):
        src = lines[line - 1] if 0 < line <= len(lines) else ""
        errs.append(f"ERROR: <input>:{line}:{col}: undeclared reference to '{name}' (in container '')\n"
                    f" | {src}\n | {'.' * (col - 1)}^")
    return "\n".join(errs) or None


_STRING_METHODS = {"lowerAscii", "upperAscii", "charAt", "replace", "substring", "trim", "join", "find", "string"}


def result_type(ast: lark.Tree, legacy: bool = False) -> str:
    """The static type cel-go gives the whole expression where it is plain (a literal,
    ``device.driver``, a string function, a list or map), else ``dyn``. ``legacy``: the cel-go of
    1.34 names a dynamic element of a list or map literal ``google.protobuf.Any``."""
    node = ast
    while node.data in ("expr", "conditionalor", "conditionaland", "relation", "addition", "multiplication",
                        "unary", "member", "primary", "paren_expr") and len(node.children) == 1 \
            and isinstance(node.children[0], lark.Tree):
        node = node.children[0]
    if node.data == "literal":
        kind = cast(lark.Token, node.children[0]).type
        return {"STRING_LIT": "string", "MLSTRING_LIT": "string", "INT_LIT": "int", "UINT_LIT": "uint",
                "FLOAT_LIT": "double", "BYTES_LIT": "bytes", "BOOL_LIT": "bool", "NULL_LIT": "null_type"}.get(kind, "dyn")
    if node.data == "list_lit":
        items = {_elem(e, legacy) for e in node.children[0].children} if node.children and node.children[0] else set()
        return f"list({items.pop() if len(items) == 1 else 'dyn'})"
    if node.data == "map_lit":
        inits = list(node.children[0].children) if node.children and node.children[0] else []
        ks, vs = {_elem(e, legacy) for e in inits[0::2]}, {_elem(e, legacy) for e in inits[1::2]}
        return f"map({ks.pop() if len(ks) == 1 else 'dyn'}, {vs.pop() if len(vs) == 1 else 'dyn'})"
    if node.data == "member_dot" and str(node.children[1]) in ("driver", "allowMultipleAllocations") \
            and _namespace(node.children[0]) == "device":
        return "string" if str(node.children[1]) == "driver" else "bool"
    if node.data == "member_dot_arg" and str(node.children[1]) in _STRING_METHODS:
        return "string"
    if node.data == "ident_arg" and str(node.children[0]) in ("size", "int"):
        return "int"
    return "dyn"


def _elem(node: lark.Tree, legacy: bool) -> str:
    t = result_type(node, legacy)
    return "google.protobuf.Any" if legacy and t == "dyn" else t
