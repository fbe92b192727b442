"""Device attribute values and quantities, as a backend produces them.

Source: resource.k8s.io/v1 ``DeviceAttribute`` (exactly one of int, bool, string, version; list
variants ints/bools/strings/versions behind the DRAListTypeAttributes gate, 1.36+) and
``resource.Quantity`` for capacities and counters.
"""
from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Union

from lightkube.utils.quantity import parse_quantity


@dataclass(frozen=True, slots=True)
class Version:
    """A ``version`` attribute: semantic version 2.0.0, at most 64 characters (DeviceAttribute.version).

    Hardware versions that are not SemVer ("535.183.06", "12.4") are normalized by the core when
    the slice is built (see ``dra_framework.slices.validate.normalize_version``); backends pass the
    raw string.
    """

    value: str

    def __str__(self) -> str:
        return self.value


#: One attribute value: int (int64), bool, str (≤64 chars), Version, or a non-empty list of one
#: of those (list attributes, DRAListTypeAttributes, Kubernetes 1.36+).
AttributeValue = Union[bool, int, str, Version, list[int], list[bool], list[str], list[Version]]

#: A Kubernetes quantity: an int (plain units, e.g. bytes) or a quantity string ("80Gi", "500m").
Quantity = Union[int, str]


def quantity_value(q: Quantity) -> Decimal:
    """Return the numeric value of a quantity. Raises ValueError for malformed strings."""
    if isinstance(q, bool):
        raise ValueError(f"quantity must be an int or a quantity string, not bool {q!r}")
    if isinstance(q, int):
        return Decimal(q)
    value = parse_quantity(q)
    if value is None:
        raise ValueError(f"invalid quantity {q!r}")
    return value


def quantity_str(q: Quantity) -> str:
    """Return the canonical string sent to the API server for a quantity (ints as plain numbers)."""
    if isinstance(q, int) and not isinstance(q, bool):
        return str(q)
    quantity_value(q)  # raises for malformed input
    return str(q)
