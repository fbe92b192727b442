"""Default host paths, defined once: the config defaults (docs/config.md), the kubelet-facing
sockets and the CDI writer use these, and the Helm chart sets the same paths once in its values
(``paths``, docs/install.md)."""
from __future__ import annotations

#: The kubelet's default ``--root-dir``: ``plugins_registry/`` and ``plugins/<driver>/`` are below it.
DEFAULT_KUBELET_ROOT = "/var/lib/kubelet"
#: The CDI spec directory container runtimes read by default (containerd, CRI-O).
DEFAULT_CDI_ROOT = "/var/run/cdi"
#: Backends' private state.
DEFAULT_STATE_DIR = "/var/lib/dra-framework"
