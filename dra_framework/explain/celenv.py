"""CEL for DRA device selectors, on cel-python (``celpy``).

The environment is the one kube-scheduler evaluates ``DeviceClass`` and ``ResourceClaim``
selectors in (k8s.io/dynamic-resource-allocation/cel ``compile.go``): one variable ``device``
with ``driver``, ``allowMultipleAllocations``, ``attributes`` and ``capacity``; the two maps are
keyed by domain (names without a domain are under the driver name), an unknown domain gives an
empty map, an unknown name inside a domain is the runtime error ``no such key: <name>``.
Functions of the Kubernetes CEL libraries (k8s.io/apiserver/pkg/cel/library) that selectors
use: ``quantity``/``isQuantity`` with ``compareTo``, ``isGreaterThan``, ``isLessThan``, ``add``,
``sub``, ``sign``, ``isInteger``, ``asInteger``, ``asApproximateFloat``; ``semver``/``isSemver``
(optionally normalizing) with ``compareTo``, ``isGreaterThan``, ``isLessThan``, ``major``,
``minor``, ``patch``; the cel-go string extensions (``lowerAscii``, ``upperAscii``, ``charAt``,
``indexOf``, ``lastIndexOf``, ``replace``, ``split``, ``substring``, ``trim``, ``join``); the
list library (``isSorted``, ``sum``, ``min``, ``max``, ``indexOf``, ``lastIndexOf``); regex
``find``/``findAll``; ``includes`` (list attributes). Equality is heterogeneous as in cel-go
(``"a" == 1`` is false, ``1 == 1.0`` is true). ``cel.bind``, ``sets.*``, cel-go's compile-time
checks (celext.py) and optional chaining (celopt.py) are added on top. Not supported:
``ip``/``cidr``/``url`` and the cost limit; see docs/explain.md.
"""
from __future__ import annotations

import re
from decimal import Decimal
from typing import Any, Callable

import semver as _semver
from celpy import celtypes
from celpy.evaluation import CELEvalError
from lightkube.utils.quantity import parse_quantity

#: resource.k8s.io/v1 CELSelectorExpressionMaxLength.
MAX_EXPRESSION_LENGTH = 10 * 1024
_INT64 = (-(2**63), 2**63 - 1)


class CelError(Exception):
    """A selector that does not compile (``compile``) or fails on a device (``runtime``)."""

    def __init__(self, kind: str, message: str):
        super().__init__(message)
        self.kind = kind


class Quantity:
    """A Kubernetes ``resource.Quantity`` in CEL; compares by value."""

    __slots__ = ("text", "value")

    def __init__(self, text: str, value: Decimal | None = None):
        self.text = text
        parsed = parse_quantity(text) if value is None else value
        if parsed is None:
            raise ValueError(f"invalid quantity {text!r}")
        self.value: Decimal = parsed

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Quantity) and self.value == other.value

    def __hash__(self) -> int:
        return hash(self.value)

    def __repr__(self) -> str:
        return f"quantity({self.text!r})"


class Semver:
    """A ``version`` attribute or ``semver()`` value (blang/semver: build metadata does not order)."""

    __slots__ = ("v",)

    def __init__(self, v: _semver.Version):
        self.v = v

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Semver) and self.v.compare(other.v) == 0

    def __hash__(self) -> int:
        return hash(str(self.v.finalize_version()))

    def __repr__(self) -> str:
        return f"semver({str(self.v)!r})"


def parse_semver(text: str, normalize: bool = False) -> Semver:
    """``semver(text)``: strict SemVer 2.0.0; ``normalize`` drops a leading ``v``, leading zeros and
    fills missing minor/patch (library ``normalizeAndParse``). Raises ValueError."""
    s = str(text)
    if normalize:
        s = s[1:] if s.startswith("v") else s
        parts = s.split(".", 2)
        for i, p in enumerate(parts):
            if len(p) > 1:
                p = p.lstrip("0")
                if not p or not p[0].isdigit():
                    p = "0" + p
                parts[i] = p
        if len(parts) < 3:
            if any(c in parts[-1] for c in "+-"):
                raise ValueError("short version cannot contain PreRelease/Build meta data")
            parts += ["0"] * (3 - len(parts))
        s = ".".join(parts)
    try:
        return Semver(_semver.Version.parse(s))
    except (ValueError, TypeError) as exc:
        raise ValueError(f"{text!r} is not a valid semantic version") from exc


def _num(x: Any) -> bool:
    return isinstance(x, (celtypes.IntType, celtypes.UintType, celtypes.DoubleType)) and not isinstance(x, bool)


def _eq(a: Any, b: Any) -> Any:
    if isinstance(a, CELEvalError):
        return a
    if isinstance(b, CELEvalError):
        return b
    if _num(a) and _num(b):
        return celtypes.BoolType(float(a) == float(b) if isinstance(a, celtypes.DoubleType)
                                 or isinstance(b, celtypes.DoubleType) else int(a) == int(b))
    if type(a) is not type(b) and not (isinstance(a, celtypes.MapType) and isinstance(b, celtypes.MapType)):
        return celtypes.BoolType(False)
    return celtypes.BoolType(a == b)


eq = _eq  # heterogeneous equality, for the sets library


def _cmp_op(op: Callable[[Any, Any], bool]) -> Callable[[Any, Any], Any]:
    def f(a: Any, b: Any) -> Any:
        if isinstance(a, CELEvalError):
            return a
        if isinstance(b, CELEvalError):
            return b
        if _num(a) and _num(b):
            return celtypes.BoolType(op(a if not isinstance(a, celtypes.DoubleType) else float(a),
                                        b if not isinstance(b, celtypes.DoubleType) else float(b)))
        if type(a) is not type(b) or isinstance(a, (Quantity, Semver)):
            raise TypeError("no such overload")
        return celtypes.BoolType(op(a, b))
    return f


def _str(x: Any) -> str:
    if not isinstance(x, celtypes.StringType):
        raise TypeError("no such overload")
    return str(x)


def _compare(a: Any, b: Any) -> int:
    if isinstance(a, Quantity) and isinstance(b, Quantity):
        return (a.value > b.value) - (a.value < b.value)
    if isinstance(a, Semver) and isinstance(b, Semver):
        return a.v.compare(b.v)
    raise TypeError("no such overload")


def _quantity(s: Any) -> Quantity:
    text = _str(s)
    try:
        return Quantity(text)
    except (ValueError, ArithmeticError) as exc:
        raise ValueError("quantities must match the regular expression "
                         "'^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'") from exc


def _is_quantity(s: Any) -> celtypes.BoolType:
    try:
        Quantity(_str(s))
    except (ValueError, ArithmeticError):
        return celtypes.BoolType(False)
    return celtypes.BoolType(True)


def _semver_fn(s: Any, normalize: Any = False) -> Semver:
    return parse_semver(_str(s), bool(normalize))


def _is_semver(s: Any, normalize: Any = False) -> celtypes.BoolType:
    try:
        parse_semver(_str(s), bool(normalize))
    except ValueError:
        return celtypes.BoolType(False)
    return celtypes.BoolType(True)


def _qarith(sign: int) -> Callable[[Any, Any], Quantity]:
    def f(a: Any, b: Any) -> Quantity:
        if not isinstance(a, Quantity):
            raise TypeError("no such overload")
        other = b.value if isinstance(b, Quantity) else Decimal(int(b)) if isinstance(b, celtypes.IntType) else None
        if other is None:
            raise TypeError("no such overload")
        v = a.value + sign * other
        return Quantity(str(v), v)
    return f


def _as_integer(q: Any) -> celtypes.IntType:
    if not isinstance(q, Quantity):
        raise TypeError("no such overload")
    if q.value != q.value.to_integral_value() or not _INT64[0] <= q.value <= _INT64[1]:
        raise ValueError("cannot convert value to integer")
    return celtypes.IntType(int(q.value))


def _semver_part(i: int) -> Callable[[Any], celtypes.IntType]:
    def f(v: Any) -> celtypes.IntType:
        if not isinstance(v, Semver):
            raise TypeError("no such overload")
        return celtypes.IntType((v.v.major, v.v.minor, v.v.patch)[i])
    return f


def _index_of(last: bool) -> Callable[..., celtypes.IntType]:
    def f(x: Any, sub: Any, start: Any = None) -> celtypes.IntType:
        if isinstance(x, celtypes.ListType):
            idx = [i for i, v in enumerate(x) if bool(_eq(v, sub))]
            return celtypes.IntType((idx[-1] if last else idx[0]) if idx else -1)
        s, t = _str(x), _str(sub)
        if start is None:
            return celtypes.IntType(s.rfind(t) if last else s.find(t))
        return celtypes.IntType(s.rfind(t, 0, int(start) + len(t)) if last else s.find(t, int(start)))
    return f


def _substring(s: Any, start: Any, end: Any = None) -> celtypes.StringType:
    text = _str(s)
    b, e = int(start), len(text) if end is None else int(end)
    if not 0 <= b <= e <= len(text):
        raise IndexError(f"index out of range: {b if b < 0 or b > len(text) else e}")
    return celtypes.StringType(text[b:e])


def _split(s: Any, sep: Any, n: Any = None) -> celtypes.ListType:
    text, sp = _str(s), _str(sep)
    if n is not None and int(n) == 0:
        return celtypes.ListType([])
    parts = text.split(sp, int(n) - 1) if n is not None and int(n) > 0 else (list(text) if sp == "" else text.split(sp))
    return celtypes.ListType([celtypes.StringType(p) for p in parts])


def _includes(attr: Any, value: Any) -> celtypes.BoolType:
    if isinstance(attr, celtypes.ListType):
        return celtypes.BoolType(any(bool(_eq(v, value)) for v in attr))
    return _eq(attr, value)


def _list_fn(f: Callable[[list], Any]) -> Callable[[Any], Any]:
    def g(xs: Any) -> Any:
        if not isinstance(xs, celtypes.ListType):
            raise TypeError("no such overload")
        return f(list(xs))
    return g


def _regex(all_: bool) -> Callable[[Any, Any], Any]:
    def f(s: Any, pattern: Any) -> Any:
        rx = re.compile(_str(pattern))
        if all_:
            return celtypes.ListType([celtypes.StringType(m.group(0)) for m in rx.finditer(_str(s))])
        m = rx.search(_str(s))
        return celtypes.StringType(m.group(0) if m else "")
    return f


def _sum(xs: list) -> Any:
    if not xs:
        return celtypes.IntType(0)
    total = xs[0]
    for x in xs[1:]:
        total = total + x
    return total


FUNCTIONS: dict[str, Callable[..., Any]] = {
    "_==_": _eq,
    "_!=_": lambda a, b: a if isinstance(a, CELEvalError) else b if isinstance(b, CELEvalError)
    else celtypes.BoolType(not bool(_eq(a, b))),
    "_<_": _cmp_op(lambda a, b: a < b), "_<=_": _cmp_op(lambda a, b: a <= b),
    "_>_": _cmp_op(lambda a, b: a > b), "_>=_": _cmp_op(lambda a, b: a >= b),
    "quantity": _quantity, "isQuantity": _is_quantity,
    "semver": _semver_fn, "isSemver": _is_semver,
    "compareTo": lambda a, b: celtypes.IntType(_compare(a, b)),
    "isGreaterThan": lambda a, b: celtypes.BoolType(_compare(a, b) > 0),
    "isLessThan": lambda a, b: celtypes.BoolType(_compare(a, b) < 0),
    "add": _qarith(1), "sub": _qarith(-1),
    "sign": lambda q: celtypes.IntType((q.value > 0) - (q.value < 0)) if isinstance(q, Quantity) else _raise(),
    "isInteger": lambda q: celtypes.BoolType(q.value == q.value.to_integral_value()
                                             and _INT64[0] <= q.value <= _INT64[1]) if isinstance(q, Quantity) else _raise(),
    "asInteger": _as_integer,
    "asApproximateFloat": lambda q: celtypes.DoubleType(float(q.value)) if isinstance(q, Quantity) else _raise(),
    "major": _semver_part(0), "minor": _semver_part(1), "patch": _semver_part(2),
    "lowerAscii": lambda s: celtypes.StringType("".join(c.lower() if c.isascii() else c for c in _str(s))),
    "upperAscii": lambda s: celtypes.StringType("".join(c.upper() if c.isascii() else c for c in _str(s))),
    "charAt": lambda s, i: celtypes.StringType(_str(s)[int(i)] if int(i) < len(_str(s)) else "")
    if 0 <= int(i) <= len(_str(s)) else _raise(IndexError(f"index out of range: {int(i)}")),
    "indexOf": _index_of(False), "lastIndexOf": _index_of(True),
    "replace": lambda s, a, b, n=-1: celtypes.StringType(_str(s).replace(_str(a), _str(b), int(n))),
    "split": _split, "substring": _substring,
    "trim": lambda s: celtypes.StringType(_str(s).strip()),
    "join": lambda xs, sep="": celtypes.StringType(_str(sep).join(_str(x) for x in xs)),
    "includes": _includes,
    "isSorted": _list_fn(lambda xs: celtypes.BoolType(all(_compare_any(a, b) <= 0 for a, b in zip(xs, xs[1:], strict=False)))),
    "sum": _list_fn(_sum),
    "max": _list_fn(lambda xs: max(xs) if xs else _raise(ValueError("max called on empty list"))),
    "find": _regex(False), "findAll": _regex(True),
}


def _compare_any(a: Any, b: Any) -> int:
    if isinstance(a, (Quantity, Semver)):
        return _compare(a, b)
    return (a > b) - (a < b)


def _raise(exc: Exception | None = None) -> Any:
    raise exc or TypeError("no such overload")
