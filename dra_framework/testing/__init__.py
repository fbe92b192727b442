"""Test kit for dra-framework and third-party backends (docs/testing.md).

Everything a backend's own tests need, importable from here:

- the harness: :class:`ControlPlane`, :class:`KubeletShim`, :class:`Allocator`, :func:`cdi_check`,
  :func:`find_bins`, :func:`wait_for`, :func:`pools_complete`, and their errors :class:`ShimError`,
  :class:`AllocationFailed`, :class:`HarnessUnavailable`;
- :class:`DriverProcess`: the real ``dra-framework run`` daemon against the harness;
- :class:`Objects`: create/delete Kubernetes objects for a test;
- :class:`PausableProxy`: holds API-server requests while paused (a slow server, on demand);
- :func:`killpoint` / :data:`KILL_AT` / :data:`KILL_LOG`: crash-test fault injection;
- fake hosts (docs/pci.md): :class:`HostTree` (sample-host trees), :class:`FakePciKernel` (plays
  the kernel for driver rebinding writes), :class:`FakeUdevSource` (hot-plug events),
  :func:`pci_bindings` (a leftovers probe for PCI backends); loaded lazily.

The pytest fixtures (``kube_apiserver``, ``kubelet_shim``, ``allocator``, ``cdi_check``,
``dra_driver``, ...) and the conformance suite option ``--dra-conformance`` come from
:mod:`dra_framework.testing.pytest_plugin`, loaded automatically by pytest. Only the standard
library is imported here, so the plugin stays cheap to load.
"""
from .driver import DriverProcess
from .k8s import (AllocationFailed, Allocator, ControlPlane, HarnessUnavailable, KubeletShim, PreparedPod,
                  ShimError, cdi_check, find_bins, k8s_version, pools_complete, wait_for)
from ..killpoints import KILL_AT, KILL_LOG, killpoint, read_log as read_kill_log
from .objects import Objects
from .proxy import PausableProxy
from .snapshot import tree_snapshot

_HOSTTREE = ("HostTree", "FakePciKernel", "FakeUdevSource", "pci_bindings")


def __getattr__(name: str):
    if name in _HOSTTREE:  # lazily: hosttree imports pydantic models
        from . import hosttree
        return getattr(hosttree, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "FakePciKernel", "FakeUdevSource", "HostTree", "pci_bindings",
    "AllocationFailed", "Allocator", "ControlPlane", "DriverProcess", "HarnessUnavailable", "KILL_AT", "KILL_LOG",
    "KubeletShim", "Objects", "PausableProxy", "PreparedPod", "ShimError", "cdi_check", "find_bins", "k8s_version", "killpoint",
    "pools_complete", "read_kill_log", "tree_snapshot", "wait_for",
]
