"""Built-in ``sriov_nic`` backend: SR-IOV virtual functions of Ethernet and InfiniBand NICs as DRA
devices, handed to containers as a netdev (CDI netDevices), through vfio-pci, or with their RDMA
character devices. See backends/sriov_nic/README.md."""
