"""ResourceSlice publishing: model → resource.k8s.io/v1 ResourceSlices (docs/resourceslices.md).

- ``convert``: pure conversion, validation and splitting (``build_pools``, ``desired_slices``).
- ``validate``: the API server's rules, version normalization, the ``Report`` of left-out devices.
- ``split``: split limits and stable ordering.
- ``controller``: ``SliceController``, the async publisher (Go resourceslice controller semantics).
- ``kubeapi``: the thin raw-JSON client layer over lightkube's AsyncClient.
- ``apiversions``: served API discovery and per-version limits.
"""
from .apiversions import Limits, ServerInfo, UnsupportedServerError
from .convert import DesiredPool, build_pools, desired_slices, model_pool_name, published_pool_name
from .validate import Issue, Report, normalize_version

__all__ = [
    "DesiredPool", "Issue", "Limits", "Report", "ServerInfo", "SliceController", "UnsupportedServerError",
    "build_pools", "desired_slices", "model_pool_name", "normalize_version", "published_pool_name",
]


def __getattr__(name: str):
    if name == "SliceController":
        from .controller import SliceController
        return SliceController
    raise AttributeError(name)
