"""The node daemon behind ``dra-framework run``: all drivers of the config in one process.

Runs until SIGTERM/SIGINT. A driver that fails to start is logged and reported by /readyz;
the others keep serving, so one bad backend never takes the node's other drivers down, and
bad state never makes the process crash-loop.
"""
from __future__ import annotations

import asyncio
import logging
import signal
from typing import Any

from .config import Settings
from .errors import ConfigError, DraFrameworkError
from .plugins import Registry
from .runtime import DriverRuntime

log = logging.getLogger(__name__)


async def _node_uid(client: Any, node_name: str) -> str:
    """Look up the Node's UID (the owner of node-local ResourceSlices). Waits, logging, while the
    Node does not exist yet: a kubelet that registers its Node late is normal on a fresh node."""
    from lightkube.core.exceptions import ApiError
    from lightkube.resources.core_v1 import Node

    delay = 1.0
    while True:
        try:
            node = await client.get(Node, node_name)
            return node.metadata.uid
        except ApiError as exc:
            if exc.status.code != 404:
                raise
            log.error("Node %r not found in the API server: ResourceSlices cannot be published until it "
                      "exists (check --node-name / NODE_NAME); retrying in %.0fs", node_name, delay)
        await asyncio.sleep(delay)
        delay = min(delay * 2, 30)


async def run_daemon(settings: Settings, uninstall: bool = False, progress: Any = None,
                     stop_event: asyncio.Event | None = None) -> int:
    """Start every driver, serve until a signal (or ``stop_event``), stop cleanly. Returns the exit
    status: 0 after a clean stop, 1 when no driver could start."""
    from .events import NodeEvents
    from .kube import make_client
    from .metrics import REGISTRY
    from .probes import ProbeServer

    if not settings.drivers:
        raise ConfigError("drivers: at least one driver is required to run")
    loop = asyncio.get_running_loop()
    stop = stop_event or asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)

    registry = Registry()
    client = make_client(settings)
    if progress:
        progress.step(f"looking up Node {settings.node_name}")
    node_task = asyncio.create_task(_node_uid(client, settings.node_name))
    done, _ = await asyncio.wait({node_task, asyncio.create_task(stop.wait())}, return_when=asyncio.FIRST_COMPLETED)
    if node_task not in done:
        node_task.cancel()
        return 0
    node_uid = node_task.result()
    events = NodeEvents(client, settings.node_name, node_uid)

    drivers: list[DriverRuntime] = []
    failed: dict[str, str] = {}
    retries: list[asyncio.Task] = []

    async def start_driver(i: int, cfg: Any) -> bool:
        rt = DriverRuntime(settings, i, cfg, registry, client, node_uid, events)
        try:
            await rt.start(progress)
        except Exception as exc:  # noqa: BLE001 - one broken backend must not stop the others
            failed[cfg.name] = str(exc) if isinstance(exc, DraFrameworkError) else repr(exc)
            log.error("driver %s did not start: %s", cfg.name, failed[cfg.name],
                      exc_info=not isinstance(exc, DraFrameworkError))
            await rt.stop()
            return False
        failed.pop(cfg.name, None)
        drivers.append(rt)
        return True

    async def retry_driver(i: int, cfg: Any) -> None:
        # Hardware and drivers often come up after the DaemonSet pod (NVML not loaded yet, a
        # sysfs race): retry with back-off instead of exiting or giving up.
        delay = 5.0
        while not stop.is_set():
            log.info("driver %s: retrying start-up in %.0fs", cfg.name, delay)
            try:
                await asyncio.wait_for(stop.wait(), delay)
                return
            except asyncio.TimeoutError:
                pass
            if await start_driver(i, cfg):
                log.info("driver %s started after a failed start-up", cfg.name)
                return
            delay = min(delay * 2, 300.0)

    for i, cfg in enumerate(settings.drivers):
        if not await start_driver(i, cfg):
            retries.append(asyncio.create_task(retry_driver(i, cfg), name=f"retry-{cfg.name}"))
    if progress:
        progress.done()

    servers = []
    if settings.metrics_port:
        from prometheus_client import start_http_server

        httpd, _thread = start_http_server(settings.metrics_port, registry=REGISTRY)
        servers.append(httpd.shutdown)
        log.info("metrics on :%d/metrics", settings.metrics_port)
    if settings.healthz_port:
        async def live() -> list[str]:
            return []

        async def ready() -> list[str]:
            problems = [f"driver {n}: did not start: {e}" for n, e in failed.items()]
            for rt in drivers:
                problems.extend(await rt.readiness())
            return problems

        probe = ProbeServer(settings.healthz_port, loop, live, ready)
        probe.start()
        servers.append(probe.stop)
        log.info("probes on :%d/healthz and /readyz", probe.port)

    if not drivers:
        log.error("no driver started; retrying with back-off and serving probes so the failure is "
                  "visible, not crash-looping")
    log.info("dra-framework running with %d driver(s) on node %s", len(drivers), settings.node_name)
    await stop.wait()
    for t in retries:
        t.cancel()
    await asyncio.gather(*retries, return_exceptions=True)
    log.info("stopping%s", " and deleting this node's ResourceSlices (uninstall)" if uninstall else "")
    for rt in reversed(drivers):
        await rt.stop(uninstall=uninstall)
    for shutdown in servers:
        shutdown()
    return 0
