"""Exceptions raised by :mod:`dra_framework.cdi`."""
from __future__ import annotations

from dataclasses import dataclass


class CdiError(Exception):
    """Base class of every CDI error raised by this package."""


@dataclass(frozen=True)
class CdiIssue:
    """One validation finding.

    ``location`` is the human-readable position, e.g.
    ``devices[2] "abc-gpu0": containerEdits.deviceNodes[0].path`` (empty for the
    document itself); ``message`` says what is wrong; ``rule`` names the source of
    the rule (``schema``, ``CDI Go library``, ``CDI SPEC``, ``framework policy``,
    with the section of docs/cdi-rules.md).
    """

    location: str
    message: str
    rule: str = ""

    def __str__(self) -> str:
        return f"{self.location}: {self.message}" if self.location else self.message


class CdiValidationError(CdiError, ValueError):
    """A CDI spec (or a name / version) breaks a CDI rule.

    ``issues`` lists every finding (:class:`CdiIssue`); ``str(err)`` contains all of
    them, one per line, each naming the device (index and name) and the field, e.g.
    ``devices[2] "abc-gpu0": containerEdits.deviceNodes[0].path: must be an absolute path``.
    ``source`` is the file name when the spec came from a file.
    """

    def __init__(self, issues: list[CdiIssue] | str, source: str | None = None) -> None:
        if isinstance(issues, str):
            issues = [CdiIssue("", issues)]
        self.issues: list[CdiIssue] = list(issues)
        self.source = source
        head = f"invalid CDI spec{f' {source}' if source else ''}"
        body = "\n".join(f"  {i}" for i in self.issues)
        super().__init__(f"{head}:\n{body}" if len(self.issues) != 1 else f"{head}: {self.issues[0]}")


class CdiConflictError(CdiError, ValueError):
    """Two container edits cannot be merged (see :func:`dra_framework.cdi.edits.merge`).

    Attributes: ``field`` (CDI JSON field, e.g. ``env``, ``mounts``), ``key`` (the
    conflicting env name / container path / interface name), ``first_source`` and
    ``second_source`` (the labels of the two edits), ``first`` / ``second`` (the two
    conflicting values).
    """

    def __init__(self, field: str, key: str, first_source: str, first: object,
                 second_source: str, second: object) -> None:
        self.field, self.key = field, key
        self.first_source, self.second_source = first_source, second_source
        self.first, self.second = first, second
        super().__init__(
            f"conflicting CDI container edits for {field} {key!r}: "
            f"{first_source} sets {first!r} but {second_source} sets {second!r}"
        )
