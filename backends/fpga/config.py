"""``FpgaConfig``: the opaque config of a claim or class for an FPGA device (docs/fpga.md).

``{apiVersion: fpga.dra-framework.io/v1alpha1, kind: FpgaConfig, afuId: ..., image: ...,
sha256: ..., mode: managed|self}``; decoded strictly (an unknown field fails the claim)."""
from __future__ import annotations

import posixpath
from typing import ClassVar, Literal

from pydantic import Field, field_validator, model_validator

from dra_framework.api import OpaqueConfig

from .ids import normalize_uuid

API_VERSION = "fpga.dra-framework.io/v1alpha1"


class FpgaConfig(OpaqueConfig):
    """The accelerator function a device must have loaded, and what the container may do.

    - ``afuId``: the function (DFL ``afu_id``, Alveo xclbin UUID), 32 hex digits, dashes allowed;
    - ``image``: an image file name relative to one of the admin's ``imageDirs`` (``nlb3.gbs``,
      ``<interfaceId>/<afuId>.gbs``); without it the image is looked up by ``afuId``;
    - ``sha256``: the image's digest (64 hex); prepare fails when the file differs;
    - ``mode``: ``managed`` (default; the driver programs, the container gets the port / render
      node) or ``self`` (the container may reprogram: adds the FME / management node).
    """

    api_version: ClassVar[str] = API_VERSION
    kind: ClassVar[str] = "FpgaConfig"

    afu_id: str | None = Field(None, alias="afuId")
    image: str | None = None
    sha256: str | None = Field(None, pattern=r"^[0-9a-fA-F]{64}$")
    mode: Literal["managed", "self"] = "managed"

    @field_validator("afu_id")
    @classmethod
    def _afu(cls, v: str | None) -> str | None:
        if v is None:
            return None
        n = normalize_uuid(v)
        if n is None:
            raise ValueError(f"{v!r} is not a 128-bit id (32 hex digits, dashes allowed)")
        return n

    @field_validator("image")
    @classmethod
    def _image(cls, v: str | None) -> str | None:
        if v is None:
            return None
        norm = posixpath.normpath(v)
        if not v or v.startswith("/") or norm.startswith("..") or "\0" in v:
            raise ValueError(f"{v!r}: must be a path relative to an image directory, without '..'")
        return norm

    @model_validator(mode="after")
    def _needs_function(self) -> "FpgaConfig":
        if self.sha256 is not None and self.image is None and self.afu_id is None:
            raise ValueError("sha256 given without image or afuId")
        return self

    @property
    def wants_function(self) -> bool:
        return self.afu_id is not None or self.image is not None


def effective(configs: tuple[object, ...] | list[object]) -> FpgaConfig | None:
    """The last (highest precedence) FpgaConfig of a device's configs, or None."""
    found = [c for c in configs if isinstance(c, FpgaConfig)]
    return found[-1] if found else None
