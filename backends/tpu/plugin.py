"""Entry point of the built-in TPU backend (group ``dra_framework.backends``, name ``tpu``)."""
from dra_framework.api import hookimpl

from .backend import TpuBackend
from .options import TpuOptions


@hookimpl
def dra_register_backends(register):
    register("tpu", TpuBackend, options=TpuOptions,
             description="Google TPU chips (v4, v5e, v5p, v6e), NUMA-aligned sub-host shapes and the whole host.")
