"""Optional values for DRA CEL selectors (cel-go ``ext`` optional library, which the scheduler's
DRA environment enables): ``x.?name`` and ``x[?key]`` give ``optional.of(x.name)`` when ``x`` is
a map with that key, else ``optional.none()``; on an optional they chain (``x.?a.?b``, and
``x.?a.b`` selects inside it). ``orValue``, ``hasValue``, ``value``, ``or``;
``optional.of``, ``optional.none``, ``optional.ofNonZeroValue``.

cel-python's grammar has no ``.?`` or ``[?``; :func:`parser` is cel-python's parser with those
two rules added to its grammar (celpy/cel.lark), and :mod:`celext`'s evaluator handles them.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Callable

import celpy
import lark
from celpy import celtypes
from celpy.celparser import CELParser


class Optional:
    """A CEL ``optional_type`` value: ``Optional(None)`` is ``optional.none()``."""

    __slots__ = ("value",)

    def __init__(self, value: Any = None):
        self.value = value

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Optional) and self.value == other.value

    def __hash__(self) -> int:
        return hash(("optional", self.value))

    def __repr__(self) -> str:
        return "optional.none()" if self.value is None else f"optional.of({self.value!r})"


def select(container: Any, key: Any) -> Optional:
    """``container.?key`` / ``container[?key]`` on a present value."""
    if isinstance(container, celtypes.MapType):
        return Optional(container[key]) if key in container else Optional()
    if isinstance(container, celtypes.ListType) and isinstance(key, celtypes.IntType):
        return Optional(container[int(key)]) if 0 <= int(key) < len(container) else Optional()
    raise TypeError("no such overload")


def _opt(x: Any) -> Optional:
    if not isinstance(x, Optional):
        raise TypeError("no such overload")
    return x


def _zero(x: Any) -> bool:
    return x is None or (not isinstance(x, bool) and isinstance(x, (int, float, str, bytes, list, dict)) and not x) \
        or (isinstance(x, celtypes.BoolType) and not bool(x))


def _value(x: Any) -> Any:
    o = _opt(x)
    if o.value is None:
        raise ValueError("optional.none() dereference")
    return o.value


#: methods and ``optional.*`` functions, for FUNCTIONS
FUNCTIONS: dict[str, Callable[..., Any]] = {
    "orValue": lambda x, d: d if _opt(x).value is None else x.value,
    "hasValue": lambda x: celtypes.BoolType(_opt(x).value is not None),
    "value": _value,
    "or": lambda x, y: x if _opt(x).value is not None else _opt(y),
}
NAMESPACE: dict[str, Callable[..., Any]] = {"of": lambda v: Optional(v), "none": lambda: Optional(),
             "ofNonZeroValue": lambda v: Optional() if _zero(v) else Optional(v)}

_RULES = '''
member_dot_opt   : member ".?" IDENT
member_index_opt : member "[" "?" expr "]"
'''


class _Parser(CELParser):
    """cel-python's parser (its grammar, options and error messages) plus ``.?`` and ``[?``."""

    PARSER: lark.Lark | None = None

    def __init__(self, tree_class: type = lark.Tree) -> None:
        if _Parser.PARSER is None:
            grammar = (Path(celpy.__file__).parent / "cel.lark").read_text()
            if "member_object | primary" not in grammar:
                raise RuntimeError("cel-python's grammar changed: explain's optional rules need an update")
            grammar = grammar.replace("member         : member_dot | member_dot_arg | member_index | member_object",
                                      "member         : member_dot | member_dot_arg | member_index | member_object "
                                      "| member_dot_opt | member_index_opt", 1) + _RULES
            _Parser.PARSER = lark.Lark(grammar, parser="lalr", start="expr", debug=True, g_regex_flags=re.M,
                                       lexer_callbacks={"IDENT": self.ambiguous_literals}, propagate_positions=True,
                                       maybe_placeholders=False, priority="invert", tree_class=tree_class)

    def parse(self, text: str) -> lark.Tree:
        self.text = text
        try:
            return _Parser.PARSER.parse(text)  # type: ignore[union-attr]
        except (lark.exceptions.UnexpectedToken, lark.exceptions.UnexpectedCharacters) as ex:
            raise celpy.CELParseError(ex.get_context(text), *ex.args, line=ex.line, column=ex.column) from None


def parser() -> CELParser:
    return _Parser()
