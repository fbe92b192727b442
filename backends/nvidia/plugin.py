"""Entry point of the built-in NVIDIA backend (group ``dra_framework.backends``, name ``nvidia``)."""
from dra_framework.api import hookimpl

from .backend import NvidiaBackend
from .options import NvidiaOptions


@hookimpl
def dra_register_backends(register):
    register("nvidia", NvidiaBackend, options=NvidiaOptions,
             description="NVIDIA GPUs and MIG devices (static and dynamic) through NVML.")
