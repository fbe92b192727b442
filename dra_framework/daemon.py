"""The node daemon behind ``dra-framework run``: all drivers of the config in one process.

Runs until SIGTERM/SIGINT. A driver that fails to start is logged and reported by /readyz;
the others keep serving, so one bad backend never takes the node's other drivers down, and
bad state never makes the process crash-loop.

The kubelet-facing side never waits for the API server: sockets come up from the checkpoint and
the discovered inventory, so claims prepared before a restart can be unprepared while the API
server is down. The Node lookup (owner of node-local ResourceSlices and Events), slices, Events
and claim status are retried in the background with back-off (docs/operations.md).
"""
from __future__ import annotations

import asyncio
import functools
import gc
import logging
import signal
import sys
from typing import TYPE_CHECKING, Any

from .config_source import RawConfig
from .errors import ConfigError, DraFrameworkError
from .tasks import Backoff, TaskSupervisor

#: Start-up retries of a driver that failed to start (hardware or kernel drivers not ready yet).
DRIVER_RETRY_BACKOFF = Backoff(initial=5.0, factor=2.0, cap=300.0)

log = logging.getLogger(__name__)

if TYPE_CHECKING:
    from .config import Settings


async def _node_uid(client: Any, node_name: str, max_delay: float = 30.0) -> str:
    """Look up the Node's UID (the owner of node-local ResourceSlices). Waits, logging, while the
    Node does not exist yet (a kubelet that registers its Node late is normal on a fresh node)
    or the API server does not answer; back-off 1 s doubling to ``max_delay``."""
    from lightkube.core.exceptions import ApiError
    from lightkube.resources.core_v1 import Node

    from .kube import describe

    delays = Backoff(initial=1.0, factor=2.0, cap=max_delay).delays()
    while True:
        delay = next(delays)
        try:
            node = await client.get(Node, node_name)
            return node.metadata.uid
        except ApiError as exc:
            if exc.status.code == 404:
                log.error("Node %r not found in the API server: ResourceSlices cannot be published until it "
                          "exists (check --node-name / NODE_NAME); retrying in %.0fs", node_name, delay)
            else:
                log.error("cannot look up Node %r: %s; retrying in %.0fs", node_name, describe(exc), delay)
        except Exception as exc:  # noqa: BLE001 - unreachable API server, TLS, timeouts: retried
            log.error("cannot look up Node %r: %s; retrying in %.0fs", node_name, describe(exc), delay)
        await asyncio.sleep(delay)


class NodeOwner:
    """The Node's UID, looked up in the background. ``uid`` is None until known; ``wait()``
    returns it once known."""

    def __init__(self, client: Any, node_name: str) -> None:
        self.client = client
        self.node_name = node_name
        self.uid: str | None = None
        self._known = asyncio.Event()
        self.task: asyncio.Task | None = None

    def start(self, on_known: Any = None) -> None:
        async def run() -> None:
            self.uid = await _node_uid(self.client, self.node_name)
            log.info("Node %s has UID %s", self.node_name, self.uid)
            self._known.set()
            if on_known is not None:
                on_known(self.uid)
        self.task = asyncio.create_task(run(), name="node-lookup")

    async def wait(self) -> str:
        await self._known.wait()
        assert self.uid is not None
        return self.uid

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            await asyncio.gather(self.task, return_exceptions=True)


async def run_daemon(settings: Settings | RawConfig, uninstall: bool = False, progress: Any = None,
                     stop_event: asyncio.Event | None = None) -> int:
    """Start every driver, serve until a signal (or ``stop_event``), stop cleanly. Returns the exit
    status: 0 after a clean stop, also when a driver never started (that is a state the daemon
    reports through /readyz and its log while it retries, not a failure of the stop). Raises
    ConfigError for a config that cannot run (the CLI prints it in one line and exits 1). See
    docs/operations.md "Exit status" and "Start-up": the kubelet sockets are served first, before
    the heavy imports, so the kubelet's GetInfo is answered at once. ``settings`` may be the
    not yet validated sources (:func:`dra_framework.config_source.read_config`): the sockets are
    then served from what they need of them, and the rest is validated meanwhile."""
    from .startup import SocketSettings, serve_early, stop_early

    loop = asyncio.get_running_loop()
    stop = stop_event or asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    sockets = SocketSettings.read(settings) if isinstance(settings, RawConfig) else None
    early: dict[str, Any] = {}
    notes: list[str] = []  # logged once the config is valid: a refused one gets its error alone
    try:
        if sockets:
            early = await serve_early(sockets, notes)
        if isinstance(settings, RawConfig):
            valid: Settings = await _off_loop(_validate, settings)
        else:
            valid = settings
        if not valid.drivers:
            raise ConfigError("drivers: at least one driver is required to run")
        validated = SocketSettings.of(valid)
        if sockets != validated:  # not read early, or not as validated: serve now
            await stop_early(early, "the daemon is restarting its sockets")
            notes.clear()
            early = await serve_early(validated, notes)
        for note in notes:
            log.info("%s", note)
        return await _run(valid, uninstall, progress, stop, early)
    finally:
        await stop_early(early, "the daemon is stopping")


async def _off_loop(fn: Any, *args: Any) -> Any:
    """``fn(*args)`` in a thread. The thread (importing, mostly) holds the GIL; a short switch
    interval lets the event loop answer the kubelet's GetInfo within about a millisecond
    meanwhile (default 5 ms per hand-off)."""
    interval = sys.getswitchinterval()
    sys.setswitchinterval(min(interval, 0.0005))
    try:
        return await asyncio.to_thread(fn, *args)
    finally:
        sys.setswitchinterval(interval)


def _validate(raw: RawConfig) -> Settings:
    """The config validated (imports pydantic and the config models: run off the event loop)."""
    from .config import validate_settings

    return validate_settings(raw)


def _load_plugins(settings: Settings) -> Any:
    """Import the daemon's modules and load the backend plugins the config names (the slow part
    of start-up: lightkube, pydantic models, the backends). Runs in a thread, so that the event
    loop answers the kubelet's GetInfo meanwhile."""
    from . import events, kube, runtime  # noqa: F401 - imported here, off the event loop
    from .plugins import Registry

    return Registry(backends={b.name for d in settings.drivers for b in d.backends})


async def _run(settings: Settings, uninstall: bool, progress: Any, stop: asyncio.Event, early: dict[str, Any]) -> int:
    registry = await _off_loop(_load_plugins, settings)
    from .events import NodeEvents
    from .kube import describe, make_client
    from .runtime import DriverRuntime
    from .startup import attach

    loop = asyncio.get_running_loop()
    client = make_client(settings)
    events = NodeEvents(client, settings.node_name, None)
    owner = NodeOwner(client, settings.node_name)

    def node_known(uid: str) -> None:
        events.node_uid = uid

    drivers: list[DriverRuntime] = []
    failed: dict[str, str] = {}
    retries = TaskSupervisor("daemon")

    async def start_driver(i: int, cfg: Any) -> bool:
        rt = DriverRuntime(settings, i, cfg, registry, client, owner, events)
        served = early.get(cfg.name)
        try:
            await rt.start(progress, server=served.server if served else None)
        except Exception as exc:  # noqa: BLE001 - one broken backend must not stop the others
            failed[cfg.name] = describe(exc)
            if served:  # the kubelet's calls get this reason per claim until a retry succeeds
                served.gate.failed(failed[cfg.name])
            log.error("driver %s did not start: %s", cfg.name, failed[cfg.name])
            if not isinstance(exc, (DraFrameworkError, OSError)):  # a bug: details for -v
                log.debug("driver %s: start-up failure", cfg.name, exc_info=exc)
            await rt.stop()
            return False
        failed.pop(cfg.name, None)
        attach(served, rt.engine)
        drivers.append(rt)
        return True

    async def retry_driver(i: int, cfg: Any) -> None:
        # Hardware and drivers often come up after the DaemonSet pod (NVML not loaded yet, a
        # sysfs race): retry with back-off instead of exiting or giving up.
        for delay in DRIVER_RETRY_BACKOFF.delays():
            log.info("driver %s: retrying start-up in %.0fs", cfg.name, delay)
            await asyncio.sleep(delay)
            if await start_driver(i, cfg):
                log.info("driver %s started after a failed start-up", cfg.name)
                return

    async def live() -> list[str]:
        return []

    async def ready() -> list[str]:
        problems = [f"driver {n}: did not start: {e}" for n, e in failed.items()]
        running = {rt.name for rt in drivers}
        problems.extend(f"driver {d.name}: starting" for d in settings.drivers
                        if d.name not in running and d.name not in failed)
        if client.health.problem:
            problems.append(client.health.problem)
        elif owner.uid is None and owner.task is not None and not owner.task.done():
            problems.append(f"Node {settings.node_name}: not found in the API server yet")
        for rt in drivers:
            problems.extend(await rt.readiness())
        return problems

    servers = _start_http_servers(settings, loop, live, ready)  # a busy port: exit before any work
    owner.start(node_known)

    for i, cfg in enumerate(settings.drivers):
        if not await start_driver(i, cfg):
            retries.spawn(f"retry-{cfg.name}", functools.partial(retry_driver, i, cfg))
    if progress:
        progress.done()
    _collect_after_start_up()

    if not drivers:
        log.error("no driver started; retrying with back-off and serving probes so the failure is "
                  "visible, not crash-looping")
    log.info("dra-framework running with %d driver(s) on node %s", len(drivers), settings.node_name)
    await stop.wait()
    await retries.close()
    await owner.stop()
    log.info("stopping%s", " and deleting this node's ResourceSlices (uninstall)" if uninstall else "")
    for rt in reversed(drivers):
        await rt.stop(uninstall=uninstall)
    for shutdown in servers:
        shutdown()
    if failed:
        log.warning("stopped while driver(s) had not started: %s", "; ".join(f"{n}: {e}" for n, e in failed.items()))
    return 0


def _collect_after_start_up() -> None:
    """The cyclic garbage collector back on (the CLI turns it off for the start-up): one full
    collection of what the start-up left, then the survivors (modules, models, the inventory)
    are frozen out of later collections, which then scan only what serving creates."""
    gc.collect()
    gc.freeze()
    gc.enable()


def _start_http_servers(settings: Settings, loop: asyncio.AbstractEventLoop, live: Any, ready: Any) -> list[Any]:
    """The metrics and probe servers that ``settings`` enables; returns their stop functions.
    Raises ConfigError when a port cannot be bound."""
    from .metrics import REGISTRY
    from .probes import ProbeServer, metrics_server

    host, timeout, conns = settings.bind_address, settings.http_timeout_seconds, settings.http_max_connections
    servers = []
    try:
        if settings.metrics_port:
            httpd = metrics_server(settings.metrics_port, REGISTRY, host, timeout=timeout, max_connections=conns)
            httpd.start()
            servers.append(httpd.stop)
            log.info("metrics on %s:%d/metrics", host, httpd.port)
        if settings.healthz_port:
            probe = ProbeServer(settings.healthz_port, loop, live, ready, host=host, timeout=timeout,
                                max_connections=conns)
            probe.start()
            servers.append(probe.stop)
            log.info("probes on %s:%d/healthz and /readyz", host, probe.port)
    except OSError as exc:
        for stop in servers:
            stop()
        raise ConfigError(f"cannot listen on {host} (metricsPort {settings.metrics_port}, healthzPort "
                          f"{settings.healthz_port}): {exc.strerror or exc}") from None
    return servers
