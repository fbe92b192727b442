"""Base class for the opaque configuration types a backend accepts.

Source: ResourceClaim.spec.devices.config[].opaque.parameters and DeviceClass.spec.config
(a RawExtension ≤10 KiB holding ``apiVersion``, ``kind`` and the type's fields).
"""
from __future__ import annotations

from typing import ClassVar

from pydantic import BaseModel, ConfigDict


class OpaqueConfig(BaseModel):
    """Subclass with ``api_version`` and ``kind`` class variables and the config's fields.

    The framework decodes user-supplied parameters strictly (unknown fields and wrong types are
    errors naming the field) and stored copies leniently (a newer field in an old checkpoint is
    ignored). Field names use the API's camelCase via aliases; ``validate_config`` hooks add
    semantic checks by raising ValueError.
    """

    model_config = ConfigDict(extra="forbid", populate_by_name=True, frozen=True)

    api_version: ClassVar[str]
    kind: ClassVar[str]
