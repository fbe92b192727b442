"""Pydantic validation errors as one line per problem, naming the field: ``<source>: <field
path>: <message>``, with a "did you mean" hint for a misspelled key (docs/config.md)."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pydantic is imported where a model is looked at: the daemon's first config read needs none
    from pydantic import BaseModel, ValidationError


def field_path(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out or "<root>"


def _model_at(model: type[BaseModel], loc: tuple[Any, ...]) -> type[BaseModel] | None:
    """The pydantic model that holds the field at ``loc`` (list indexes skipped), or None."""
    import typing

    from pydantic import BaseModel

    current: Any = model
    for part in loc:
        if isinstance(part, int):
            continue
        if not (isinstance(current, type) and issubclass(current, BaseModel)):
            return None
        field = next((f for n, f in current.model_fields.items() if part in (n, f.alias)), None)
        if field is None:
            return None
        current = field.annotation
        for _ in range(3):  # list[X], X | None, dict values are not models: stop there
            args = [a for a in typing.get_args(current) if a is not type(None)]
            if typing.get_origin(current) in (list, typing.Union, getattr(__import__("types"), "UnionType", None)) \
                    and len(args) == 1:
                current = args[0]
    return current if isinstance(current, type) and issubclass(current, BaseModel) else None


def _did_you_mean(model: type[BaseModel] | None, loc: tuple[Any, ...]) -> str:
    """`` (did you mean 'x'?)`` for an unknown key close to a known one of its model, else ''."""
    import difflib

    if model is None or not loc or not isinstance(loc[-1], str):
        return ""
    holder = _model_at(model, loc[:-1])
    if holder is None:
        return ""
    keys = [f.alias or n for n, f in holder.model_fields.items()]
    close = difflib.get_close_matches(loc[-1], keys, n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def format_validation_error(exc: ValidationError, prefix: str = "", source: str = "",
                            model: type[BaseModel] | None = None) -> str:
    """One line per error: ``<source>: <field path>: <message>``. With ``model`` (the validated
    class), an unknown key close to a known one gets `` (did you mean 'key'?)``."""
    lines = []
    for err in exc.errors():
        path = field_path(tuple(err["loc"]))
        if prefix:
            path = prefix + ("" if path.startswith("[") else ".") + path if path != "<root>" else prefix
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            msg = "unknown field" + _did_you_mean(model, tuple(err["loc"]))
        lines.append(f"{source + ': ' if source else ''}{path}: {msg}")
    return "\n".join(lines)


__all__ = ["field_path", "format_validation_error"]
