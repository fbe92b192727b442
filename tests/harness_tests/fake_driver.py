"""A minimal DRA kubelet plugin written straight against the kubelet's protos: just enough
to prove the shim drives the kubelet's registration and prepare path. Not the framework's
own plugin (that one is tested with the harness elsewhere)."""
from __future__ import annotations

import os
import time
from concurrent import futures
from pathlib import Path

import grpc

from dra_framework.kubelet._proto import dra_v1_pb2, dra_v1_pb2_grpc
from dra_framework.kubelet._proto import pluginregistration_v1_pb2 as reg_pb2
from dra_framework.kubelet._proto import pluginregistration_v1_pb2_grpc as reg_grpc


class FakeDriver(reg_grpc.RegistrationServicer, dra_v1_pb2_grpc.DRAPluginServicer):
    """Answers NodePrepareResources with ``<driver>/dev=<device>`` CDI IDs for every
    result of the claim (looked up in the allocation the test wrote)."""

    def __init__(self, kubelet_root: Path, driver: str, devices_by_claim: dict[str, list[tuple[str, str, str]]],
                 versions: tuple[str, ...] = ("v1.DRAPlugin",)):
        self.driver, self.devices_by_claim, self.versions = driver, devices_by_claim, versions
        self.reg_sock = kubelet_root / "plugins_registry" / f"{driver}-reg.sock"
        self.dra_sock = kubelet_root / "plugins" / driver / "dra.sock"
        self.statuses: list[tuple[bool, str]] = []
        self.prepared: list[str] = []
        self.unprepared: list[str] = []
        self._servers: list[grpc.Server] = []

    def cdi_id(self, device: str) -> str:
        return f"{self.driver}/dev={device}"

    # Registration
    def GetInfo(self, request, context):
        return reg_pb2.PluginInfo(type="DRAPlugin", name=self.driver, endpoint=str(self.dra_sock),
                                  supported_versions=list(self.versions))

    def NotifyRegistrationStatus(self, request, context):
        self.statuses.append((request.plugin_registered, request.error))
        return reg_pb2.RegistrationStatusResponse()

    # DRAPlugin v1
    def NodePrepareResources(self, request, context):
        resp = dra_v1_pb2.NodePrepareResourcesResponse()
        for claim in request.claims:
            self.prepared.append(claim.uid)
            out = resp.claims[claim.uid]
            for request_name, pool, device in self.devices_by_claim.get(claim.name, []):
                out.devices.add(request_names=[request_name], pool_name=pool, device_name=device,
                                cdi_device_ids=[self.cdi_id(device)])
        return resp

    def NodeUnprepareResources(self, request, context):
        resp = dra_v1_pb2.NodeUnprepareResourcesResponse()
        for claim in request.claims:
            self.unprepared.append(claim.uid)
            resp.claims[claim.uid].error = ""
        return resp

    def wait_status(self, timeout: float = 10) -> tuple[bool, str]:
        """The last NotifyRegistrationStatus; it arrives just after the kubelet's handler ran."""
        deadline = time.monotonic() + timeout
        while not self.statuses:
            if time.monotonic() > deadline:
                raise TimeoutError("kubelet never called NotifyRegistrationStatus")
            time.sleep(0.05)
        return self.statuses[-1]

    def start(self) -> "FakeDriver":
        # DRA socket first: the endpoint GetInfo names must be reachable when the
        # plugin watcher sees the registration socket.
        self.dra_sock.parent.mkdir(parents=True, exist_ok=True)
        dra = grpc.server(futures.ThreadPoolExecutor(4))
        dra_v1_pb2_grpc.add_DRAPluginServicer_to_server(self, dra)
        dra.add_insecure_port(f"unix://{self.dra_sock}")
        dra.start()
        reg = grpc.server(futures.ThreadPoolExecutor(2))
        reg_grpc.add_RegistrationServicer_to_server(self, reg)
        reg.add_insecure_port(f"unix://{self.reg_sock}")
        reg.start()
        self._servers = [dra, reg]
        return self

    def stop(self) -> None:
        for s in self._servers:
            s.stop(None)
        for p in (self.reg_sock, self.dra_sock):
            if p.exists():
                os.unlink(p)
