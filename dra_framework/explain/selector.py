"""Compiling and evaluating DRA CEL selectors on devices, clause by clause.

``Selector(expression)`` compiles once; ``matches(device)`` returns True/False or raises
:class:`~dra_framework.explain.celenv.CelError` with the scheduler's wording
(``no such key: <name>. consider using CEL optional chaining ...``, k8s.io/dynamic-resource-allocation
``cel/errors.go``). ``explain(device)`` splits a top-level ``a && b && c`` into its clauses and
names the first that is false (or fails), with the attribute and capacity values it read.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import celpy
import lark
from celpy import celtypes
from celpy.evaluation import CELEvalError

from .celenv import FUNCTIONS, MAX_EXPRESSION_LENGTH, CelError, Quantity, Semver, eq, parse_semver
from .celext import result_type, runner, undeclared
from .celopt import FUNCTIONS as OPTIONAL_FUNCTIONS, parser
from .model import Device

_ENV = celpy.Environment(runner_class=runner(eq))
_ENV.cel_parser = parser()
_FUNCTIONS: dict[str, Any] = {**FUNCTIONS, **OPTIONAL_FUNCTIONS}
_NO_SUCH_KEY_HINT = (". consider using CEL optional chaining (.? followed by orValue()) or guarding the "
                     "check with has() for optional fields")
_REF = re.compile(r'device\.(attributes|capacity)\[\??\s*"([^"]*)"\s*\]\s*(?:\.\??\s*([A-Za-z_][A-Za-z0-9_]*)|'
                  r'\[\??\s*"([^"]*)"\s*\])?')


class _DomainMap(celtypes.MapType):
    """``device.attributes`` / ``device.capacity``: an unknown domain is an empty map."""

    def __getitem__(self, key: Any) -> Any:
        try:
            return super().__getitem__(key)
        except KeyError:
            return celtypes.MapType({})


def _attr_value(a: dict[str, Any]) -> Any:
    if "int" in a:
        return celtypes.IntType(int(a["int"]))
    if "bool" in a:
        return celtypes.BoolType(bool(a["bool"]))
    if "string" in a:
        return celtypes.StringType(a["string"])
    if "version" in a:
        return parse_semver(a["version"])
    for key, conv in (("ints", lambda v: celtypes.IntType(int(v))), ("bools", lambda v: celtypes.BoolType(bool(v))),
                      ("strings", celtypes.StringType), ("versions", parse_semver)):
        if key in a:
            return celtypes.ListType([conv(v) for v in a[key]])  # type: ignore[misc]
    raise ValueError("unsupported attribute value")


def split_name(name: str, driver: str) -> tuple[str, str]:
    """``dom/id`` → (dom, id); ``id`` → (driver, id) (``parseQualifiedName``)."""
    dom, sep, ident = name.partition("/")
    return (dom, ident) if sep else (driver, name)


def activation(device: Device) -> dict[str, Any]:
    """The ``device`` variable for ``device``. Raises CelError for an unparsable version attribute."""
    cached = device.cel_cache
    if cached is not None:
        return cached
    attrs: dict[Any, Any] = {}
    for name, a in device.attributes.items():
        dom, ident = split_name(name, device.driver)
        try:
            value = _attr_value(a)
        except ValueError as exc:
            raise CelError("runtime", f"attribute {name}: parse semantic version: {exc}") from exc
        attrs.setdefault(celtypes.StringType(dom), {})[celtypes.StringType(ident)] = value
    caps: dict[Any, Any] = {}
    for name, c in device.capacity.items():
        dom, ident = split_name(name, device.driver)
        caps.setdefault(celtypes.StringType(dom), {})[celtypes.StringType(ident)] = Quantity(str(c.get("value")))
    var = celtypes.MapType({
        celtypes.StringType("driver"): celtypes.StringType(device.driver),
        celtypes.StringType("allowMultipleAllocations"): celtypes.BoolType(bool(device.allow_multiple)),
        celtypes.StringType("attributes"): _DomainMap({k: celtypes.MapType(v) for k, v in attrs.items()}),
        celtypes.StringType("capacity"): _DomainMap({k: celtypes.MapType(v) for k, v in caps.items()}),
    })
    device.cel_cache = {"device": var}
    return device.cel_cache


def _error_text(err: CELEvalError) -> str:
    """celpy's error → the wording of cel-go as the scheduler reports it."""
    msg = str(err.args[0]) if err.args else str(err)
    m = re.match(r"no such member in mapping: '(.*)'", msg)
    if m:
        return f"no such key: {m.group(1)}{_NO_SUCH_KEY_HINT}"
    if msg == "no such key" and len(err.args) > 2 and err.args[2]:
        return f"no such key: {err.args[2][0]}{_NO_SUCH_KEY_HINT}"
    if msg.startswith("undeclared reference"):
        return msg.split(" (in activation", 1)[0]
    if "no matching overload" in msg or msg == "no such overload":
        return "no such overload"
    if msg == "return error for overflow":
        detail = err.args[2][0] if len(err.args) > 2 and err.args[2] else "overflow"
        return str(detail) if "overflow" not in str(detail) else "return error for overflow"
    return msg


@dataclass
class Clause:
    text: str
    program: Any


@dataclass
class Verdict:
    """Why a selector did not match: the clause (source text), its result or error, values read."""

    clause: str
    error: str = ""
    values: list[str] = field(default_factory=list)


#: cel-go's ConvertToNative(bool) errors per result type (common/types)
_NOT_BOOL = {"int": "unsupported type conversion from 'int' to bool", "uint": "unsupported type conversion from 'uint' to bool",
             "string": "unsupported native conversion from string to 'bool'",
             "double": "type conversion error from Double to 'bool'", "list": "type conversion error from list to 'bool'"}


class Selector:
    """One compiled CEL selector. Raises CelError("compile") for a syntax error, an undeclared
    reference, a result that is plainly not a bool, or an expression longer than 10 KiB
    (DeviceSelector validation). ``legacy``: type names as the 1.34 scheduler's cel-go writes them."""

    def __init__(self, expression: str, legacy: bool = False):
        self.expression = expression
        if len(expression) > MAX_EXPRESSION_LENGTH:
            raise CelError("compile", f"expression is {len(expression)} characters long, at most "
                                      f"{MAX_EXPRESSION_LENGTH} are allowed")
        try:
            self.ast = _ENV.compile(expression)
        except celpy.CELParseError as exc:
            raise CelError("compile", "compilation failed: " + " ".join(str(exc).split())) from exc
        why = undeclared(self.ast, expression, _FUNCTIONS)
        if why:
            raise CelError("compile", f"compilation failed: {why}")
        rtype = result_type(self.ast, legacy)
        if rtype not in ("bool", "dyn"):
            raise CelError("compile", f"must evaluate to bool or the unknown type, not {rtype}")
        self.program = _ENV.program(self.ast, functions=_FUNCTIONS)
        self._clauses: list[Clause] | None = None

    def evaluate(self, device: Device) -> Any:
        try:
            result = self.program.evaluate(activation(device))
        except CELEvalError as exc:
            raise CelError("runtime", _error_text(exc)) from exc
        except (TypeError, ValueError, KeyError, IndexError, ArithmeticError, re.error) as exc:
            raise CelError("runtime", str(exc) or type(exc).__name__) from exc
        if isinstance(result, CELEvalError):
            raise CelError("runtime", _error_text(result))
        return result

    def matches(self, device: Device) -> bool:
        result = self.evaluate(device)
        if not isinstance(result, celtypes.BoolType):
            name = _type_name(result)
            why = _NOT_BOOL.get(name)
            raise CelError("runtime", f"CEL result of type {name} could not be converted to bool" + (f": {why}" if why else ""))
        return bool(result)

    def clauses(self) -> list[Clause]:
        """Top-level ``&&`` operands in source order (one clause when there is no ``&&``)."""
        if self._clauses is None:
            node: lark.Tree = self.ast
            while isinstance(node, lark.Tree) and node.data in ("expr", "conditionalor") and len(node.children) == 1:
                node = node.children[0]
            parts: list[lark.Tree] = []
            while isinstance(node, lark.Tree) and node.data == "conditionaland" and len(node.children) == 2:
                parts.insert(0, node.children[1])
                node = node.children[0]
            parts.insert(0, node)
            out = []
            for p in parts:
                text = self.expression[p.meta.start_pos:p.meta.end_pos] if len(parts) > 1 else self.expression
                try:
                    out.append(Clause(text.strip(), _ENV.program(_ENV.compile(text), functions=_FUNCTIONS)))
                except celpy.CELParseError:
                    out = [Clause(self.expression, self.program)]
                    break
            self._clauses = out
        return self._clauses

    def explain(self, device: Device) -> Verdict:
        """The first false clause, else the first failing one (``a && b`` is false when either is
        false, even if the other fails)."""
        failed: Verdict | None = None
        for c in self.clauses():
            values = referenced_values(c.text, device)
            try:
                r = c.program.evaluate(activation(device))
                if isinstance(r, CELEvalError):
                    raise r
            except CELEvalError as exc:
                failed = failed or Verdict(c.text, _error_text(exc), values)
                continue
            except CelError as exc:
                failed = failed or Verdict(c.text, str(exc), values)
                continue
            except (TypeError, ValueError, KeyError, IndexError, ArithmeticError, re.error) as exc:
                failed = failed or Verdict(c.text, str(exc) or type(exc).__name__, values)
                continue
            if isinstance(r, celtypes.BoolType) and not r:
                return Verdict(c.text, "", values)
        return failed or Verdict(self.expression, "", referenced_values(self.expression, device))


def _type_name(v: Any) -> str:
    if isinstance(v, celtypes.StringType):
        return "string"
    if isinstance(v, celtypes.IntType):
        return "int"
    if isinstance(v, Quantity):
        return "kubernetes.Quantity"
    if isinstance(v, Semver):
        return "kubernetes.Semver"
    return type(v).__name__.replace("Type", "").lower()


def referenced_values(text: str, device: Device) -> list[str]:
    """``device.attributes["dom"].name = value`` (or ``not set``) for every attribute, capacity
    and ``device.driver`` reference in ``text``, in order, without repeats."""
    out: list[str] = []
    if "device.driver" in text:
        out.append(f'device.driver = "{device.driver}"')
    for m in _REF.finditer(text):
        kind, dom, ident = m.group(1), m.group(2), m.group(3) or m.group(4)
        if not ident:
            continue
        src = device.attributes if kind == "attributes" else device.capacity
        found = None
        for name, v in src.items():
            if split_name(name, device.driver) == (dom, ident):
                found = v
        ref = f'device.{kind}["{dom}"].{ident}'
        line = f"{ref} = {_show(found, kind)}" if found is not None else f"{ref}: not set"
        if line not in out:
            out.append(line)
    return out


def _show(v: dict[str, Any], kind: str) -> str:
    if kind == "capacity":
        return f'quantity("{v.get("value")}")'
    for k in ("string", "version"):
        if k in v:
            return f'"{v[k]}"' if k == "string" else f'semver("{v[k]}")'
    for k in ("int", "bool"):
        if k in v:
            return str(v[k]).lower() if k == "bool" else str(v[k])
    for k in ("ints", "bools", "strings", "versions"):
        if k in v:
            return str(v[k])
    return str(v)
