"""Entry point of the built-in FPGA backend (group ``dra_framework.backends``, name ``fpga``)."""
from dra_framework.api import hookimpl

from .backend import FpgaBackend
from .options import FpgaOptions


@hookimpl
def dra_register_backends(register):
    register("fpga", FpgaBackend, options=FpgaOptions,
             description="Intel DFL (OPAE) FPGA ports and AMD Alveo cards; loads allow-listed images on prepare.")
