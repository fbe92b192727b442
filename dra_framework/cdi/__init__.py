"""CDI (Container Device Interface) spec generation for DRA drivers.

Modules: :mod:`.edits` (container-edits model + :func:`merge`), :mod:`.names` (name grammar,
claim device names, file names), :mod:`.version` (minimum cdiVersion), :mod:`.validate`
(schema + Go-library rules), :mod:`.hostroot` (driver-root -> host paths), :mod:`.writer`
(atomic spec files), :mod:`.testing` (``assert_valid_cdi_dir`` for tests).
Rules follow CDI spec 1.1.0 as summarized in docs/cdi-rules.md. Names are imported on first use
(``dra_framework._lazy``): the config model needs only :mod:`.policy`.
"""
from typing import TYPE_CHECKING

from .._lazy import lazy_exports

if TYPE_CHECKING:
    from .edits import ContainerEdits, DeviceNode, Hook, IntelRdt, Mount, NetDevice, merge
    from .errors import CdiConflictError, CdiError, CdiIssue, CdiValidationError
    from .hostroot import apply_host_root, map_host_path
    from .names import (
        claim_device_name,
        claim_spec_file_name,
        common_spec_file_name,
        parse_claim_device_name,
        parse_qualified_name,
        qualified_name,
        validate_class,
        validate_device_name,
        validate_kind,
        validate_vendor,
    )
    from .validate import spec_issues, validate_spec, validate_spec_file
    from .version import CURRENT_VERSION, EARLIEST_VERSION, KNOWN_VERSIONS, check_version, minimum_version
    from .writer import DEFAULT_CDI_ROOT, CdiWriter, ClaimDevice, atomic_write_file

__all__ = [
    "ContainerEdits", "DeviceNode", "Hook", "IntelRdt", "Mount", "NetDevice", "merge",
    "CdiConflictError", "CdiError", "CdiIssue", "CdiValidationError",
    "apply_host_root", "map_host_path",
    "claim_device_name", "claim_spec_file_name", "common_spec_file_name", "parse_claim_device_name",
    "parse_qualified_name", "qualified_name", "validate_class", "validate_device_name", "validate_kind",
    "validate_vendor",
    "spec_issues", "validate_spec", "validate_spec_file",
    "CURRENT_VERSION", "EARLIEST_VERSION", "KNOWN_VERSIONS", "check_version", "minimum_version",
    "DEFAULT_CDI_ROOT", "CdiWriter", "ClaimDevice", "atomic_write_file",
]

__getattr__, __dir__ = lazy_exports(__name__, {
    ".edits": ["ContainerEdits", "DeviceNode", "Hook", "IntelRdt", "Mount", "NetDevice", "merge"],
    ".errors": ["CdiConflictError", "CdiError", "CdiIssue", "CdiValidationError"],
    ".hostroot": ["apply_host_root", "map_host_path"],
    ".names": ["claim_device_name", "claim_spec_file_name", "common_spec_file_name", "parse_claim_device_name",
               "parse_qualified_name", "qualified_name", "validate_class", "validate_device_name", "validate_kind",
               "validate_vendor"],
    ".validate": ["spec_issues", "validate_spec", "validate_spec_file"],
    ".version": ["CURRENT_VERSION", "EARLIEST_VERSION", "KNOWN_VERSIONS", "check_version", "minimum_version"],
    ".writer": ["DEFAULT_CDI_ROOT", "CdiWriter", "ClaimDevice", "atomic_write_file"],
})
