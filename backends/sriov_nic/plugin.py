"""Entry point of the built-in SR-IOV NIC backend (group ``dra_framework.backends``, name ``sriov_nic``)."""
from dra_framework.api import hookimpl

from .backend import SriovNicBackend
from .options import SriovNicOptions


@hookimpl
def dra_register_backends(register):
    register("sriov-nic", SriovNicBackend, options=SriovNicOptions,
             description="SR-IOV VFs of Ethernet/InfiniBand NICs: netdev (CDI netDevices), vfio-pci or RDMA.")
