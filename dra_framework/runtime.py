"""One composed driver at run time: backends, inventory, health, engine, slices and sockets.

Start order matters: the engine reconciles the checkpoint and CDI directory *before* the kubelet
can reach the sockets, and slices are published only after discovery. Stop order is the
reverse: sockets go first so the kubelet stops calling, then health, slices and backends.

Background work (rediscovery, the slice publisher's start-up, the socket watch, Node Events) runs
under one :class:`~dra_framework.tasks.TaskSupervisor`; every background problem (checkpoint,
health sources, slices, sockets) reaches :meth:`DriverRuntime._problem` through its ``report``
channel: logged, shown by /readyz, counted, posted as a Node Event.
"""
from __future__ import annotations

import asyncio
import dataclasses
import logging
from typing import Any, Protocol

from .composition import BackendInstance, DriverInventory, build_backends, discover
from .config import DriverConfig, Settings
from .fsutil import PRIVATE_DIR_MODE, make_dirs
from .errors import ConfigError
from .health_hub import HealthHub
from .kubelet.health import HealthState
from .kubelet.server import PluginServer
from .metrics import DriverMetrics
from .model import Pool
from .plugins import Registry
from .tasks import Backoff, TaskSupervisor

log = logging.getLogger(__name__)

#: Seconds between checks that the kubelet sockets are still ours.
SOCKET_CHECK_INTERVAL = 2.0
#: Retries of the slice publisher's start-up (API server unreachable, too old, Node missing).
SLICES_START_BACKOFF = Backoff(initial=1.0, factor=2.0, cap=60.0)


class NodeUid(Protocol):
    """The Node's UID once known (``daemon.NodeOwner``): ``uid`` (None until then), ``wait()``."""

    uid: str | None

    async def wait(self) -> str: ...


class DriverRuntime:
    """One driver of the config: started by :meth:`start`, stopped by :meth:`stop`.
    ``node_uid``: the Node's UID, or a :class:`NodeUid` that learns it later, or None (no API
    server: nothing is published); ``events``: a ``NodeEvents`` (or None)."""

    def __init__(self, settings: Settings, index: int, config: DriverConfig, registry: Registry,
                 client: Any, node_uid: str | NodeUid | None, events: Any) -> None:
        self.settings = settings
        self.index = index
        self.config = config
        self.name = config.name
        self.registry = registry
        self.client = client
        self.node_uid = node_uid
        self.events = events
        self.metrics = DriverMetrics(config.name)
        self.backends: list[BackendInstance] = []
        self.inventory = DriverInventory()
        self.health_state: HealthState | None = None
        self.hub: HealthHub | None = None
        self.engine: Any = None
        self.janitor: Any = None
        self.slices: Any = None
        self.server: PluginServer | None = None
        self.problems: dict[str, str] = {}  # source → problem, shown by /readyz
        self._rediscover_pending = False
        self._invalid_pools: set[str] = set()
        self._sockets_seen: tuple[tuple[int, int] | None, ...] = ()
        self._socket_watch: asyncio.Task[Any] | None = None
        self.tasks = TaskSupervisor(f"driver {config.name}", on_problem=self._problem)

    # --- inventory ---------------------------------------------------------

    def pool_name(self, pool: str | None) -> str:
        """The published name of a backend pool (what the kubelet and allocation results use)."""
        from .slices.convert import published_pool_name

        p = self.inventory.pools.get(pool)
        return published_pool_name(pool, self.settings.node_name, p.selection.node_local if p else True)

    def devices_of(self, backend_key: str) -> list[tuple[str | None, str]]:
        return [k for k, owner in self.inventory.owner.items() if owner == backend_key]

    def effective_pools(self) -> dict[str | None, Pool]:
        """Discovered pools with the current health taints added to each device."""
        taints = self.hub.taints if self.hub else {}
        if not taints:
            return self.inventory.pools
        out: dict[str | None, Pool] = {}
        for name, pool in self.inventory.pools.items():
            devices = []
            for d in pool.devices:
                extra = taints.get((self.pool_name(name), d.name))
                devices.append(dataclasses.replace(d, taints=tuple(d.taints) + extra) if extra else d)
            out[name] = Pool(name=pool.name, devices=devices, counter_sets=pool.counter_sets, selection=pool.selection)
        return out

    def publish(self) -> None:
        if self.slices is not None:
            self.slices.update(self.effective_pools())

    def request_rediscovery(self) -> None:
        """Discover again soon (backends call it, also from their own threads)."""
        if not self._rediscover_pending:
            self._rediscover_pending = True
            self.tasks.spawn_threadsafe("rediscovery", self._rediscover)

    async def _rediscover(self) -> None:
        self._rediscover_pending = False
        try:
            self.inventory = await discover(self.backends)
        except Exception as exc:  # noqa: BLE001 - keep serving the last good inventory
            log.error("driver %s: rediscovery failed, keeping the previous devices: %s", self.name, exc)
            return
        self.publish()  # the engine reads self.inventory through its callable

    # --- lifecycle ---------------------------------------------------------

    async def start(self, progress: Any = None, server: PluginServer | None = None) -> None:
        """Start the driver. ``server``: its sockets, already served (``dra_framework.startup``),
        which get the engine at the end; without it the sockets are bound here, last."""
        from .cdi.writer import CdiWriter
        from .config import cdi_kind
        from .engine import Checkpoint, Janitor, PrepareEngine, checkpoint_path, lightkube_status_writer
        from .kube_get import claim_getter

        self.tasks.bind(asyncio.get_running_loop())
        step = progress.step if progress else (lambda m: None)
        step(f"{self.name}: starting backends")
        self.backends = build_backends(self.settings, self.index, self.config, self.registry)
        for b in self.backends:
            b.context.on_rediscovery = self.request_rediscovery
            try:
                make_dirs(b.context.state_dir, PRIVATE_DIR_MODE, own=True)  # backends' files: daemon only
            except OSError as exc:  # name the setting: the bare errno text names only a path
                raise ConfigError(f"stateDir: cannot create {b.context.state_dir}: "
                                  f"{exc.strerror or exc}") from None
        step(f"{self.name}: discovering devices")
        self.inventory = await discover(self.backends)
        ndev = sum(len(p.devices) for p in self.inventory.pools.values())
        log.info("driver %s: discovered %d device(s) in %d pool(s)", self.name, ndev, len(self.inventory.pools))

        if any(b.hooks.implements("dra_watch_health") for b in self.backends):
            self.health_state = HealthState(self.name)
            self.hub = HealthHub(self.health_state, self.pool_name, self.publish, on_problem=self.tasks.report,
                                 on_unhealthy=self.metrics.set_unhealthy)
            self.metrics.set_unhealthy(0)

        step(f"{self.name}: loading checkpoint")
        vendor, class_ = cdi_kind(self.config)
        cdi = CdiWriter(str(self.settings.cdi_root), vendor=vendor, class_=class_)
        checkpoint = Checkpoint(checkpoint_path(self.settings.kubelet_root_dir, self.name),
                                on_problem=self._checkpoint_problem)
        self.engine = PrepareEngine(
            self.name, backends=self.backends, inventory=lambda: self.inventory, checkpoint=checkpoint,
            cdi=cdi, node_name=self.settings.node_name,
            get_claim=claim_getter(self.client),
            write_status=lightkube_status_writer(self.client, self.name), metrics=self.metrics)
        await self.engine.start()
        self.janitor = Janitor(self.engine, interval=self.settings.janitor_interval_seconds)

        if self.hub is not None:
            self.hub.start(self.backends, self.devices_of)

        step(f"{self.name}: serving the kubelet")
        if server is not None:
            server.attach(self.engine, self.health_state)
        else:
            server = PluginServer(
                self.name, self.engine, health=self.health_state, advertise_health=True,
                kubelet_root=str(self.settings.kubelet_root_dir), pod_uid=self.settings.pod_uid or None,
                health_resend_interval=self.settings.health_resend_seconds)
            await server.start()
        self.server = server
        self.janitor.start()
        self._sockets_seen = self.server.socket_ids()
        self._socket_watch = self.tasks.every("sockets", SOCKET_CHECK_INTERVAL, self._check_sockets,
                                              what="cannot serve the kubelet sockets again")
        log.info("driver %s: serving on %s", self.name, self.server.paths.dra)
        if self.client is not None and self.node_uid is not None:
            # API-facing work runs behind the kubelet-facing side: a dead API server must not
            # keep the sockets (and so the unprepare of checkpointed claims) down.
            self.tasks.spawn("slices", self._publish_slices)

    async def _publish_slices(self) -> None:
        """Wait for the Node UID, then start the slice publisher, retrying with back-off while
        the API server is unreachable (or too old, or the Node is missing)."""
        from .kube import describe
        from .slices import SliceController

        owner = self.node_uid
        assert owner is not None
        known = owner if isinstance(owner, str) else owner.uid
        ctl = SliceController(
            self.client, self.name, self.settings.node_name, known,
            resync_seconds=self.settings.slice_resync_seconds, on_report=self._slice_report,
            # Health taints may appear at any time: split at the taint limit from the start so
            # the first taint does not re-split the pool.
            taints_possible=self.hub is not None, field_manager=self.name, on_write=self.metrics.slice_write)
        ctl.update(self.effective_pools())
        # Known before the Node UID is: a stop with --uninstall meanwhile still deletes the slices.
        self.slices = ctl
        if not isinstance(owner, str) and not known:
            ctl.node_uid = await owner.wait()
        await self.tasks.retry("resourceslices:start", ctl.start, SLICES_START_BACKOFF, describe=describe,
                               what="cannot publish ResourceSlices yet (retried with back-off)")
        log.info("driver %s: publishing ResourceSlices", self.name)

    async def _check_sockets(self) -> None:
        """Recreate our sockets when they vanish or are replaced (someone cleaned the plugin
        directories, or another instance took the paths over and exited): without them the
        kubelet cannot reach the driver and wipes its ResourceSlices after 30 s. Raises when
        serving them again failed (retried at the next check)."""
        server = self.server
        if server is None or server.socket_ids() == self._sockets_seen:
            return
        log.warning("driver %s: kubelet sockets %s were removed or replaced; serving them again",
                    self.name, [server.paths.registration, server.paths.dra])
        await server.stop()
        await server.start()
        self._sockets_seen = server.socket_ids()

    async def stop(self, uninstall: bool = False) -> None:
        if self.janitor is not None:
            await self.janitor.stop()
        if self.engine is not None:
            self.engine.drop_pending()  # calls waiting in a queue answer now, within the grace
        # The socket watcher first: seeing the sockets go while the server stops, it would serve
        # them again (a server left behind that the closed event loop can no longer shut down).
        watcher = self._socket_watch
        if watcher is not None:
            watcher.cancel()
            await asyncio.gather(watcher, return_exceptions=True)
        if self.server is not None:
            await self.server.stop()
        if self.engine is not None:
            await self.engine.drain()
        await self.tasks.close()
        if self.hub is not None:
            await self.hub.stop()
        if self.slices is not None:
            try:
                await self.slices.stop(delete=uninstall)
            except Exception as exc:  # noqa: BLE001 - API server down at uninstall
                from .kube import describe

                log.error("driver %s: deleting this node's ResourceSlices failed: %s", self.name, describe(exc))
        for b in self.backends:
            try:
                await b.hooks.shutdown()
            except Exception as exc:  # noqa: BLE001
                log.warning("backend %s: shutdown failed: %s", b.key, exc)

    # --- reporting ---------------------------------------------------------

    #: How long /readyz reports a checkpoint that was moved aside. Long enough for a rollout to
    #: stop and for alerts to fire; not forever, since the driver serves normally meanwhile and a
    #: permanently unready pod would block every later rollout. The Event and metric stay.
    CHECKPOINT_PROBLEM_READY_SECONDS = 300.0

    def _checkpoint_problem(self, problem: Any) -> None:
        # a newer problem of the same kind restarts the window
        self.tasks.report(f"checkpoint:{problem.reason}", problem.message, ttl=self.CHECKPOINT_PROBLEM_READY_SECONDS)

    def _problem(self, source: str, message: str | None) -> None:
        """The sink of :attr:`tasks`' report channel (on the event loop): a problem is logged,
        shown by /readyz, counted (checkpoint ones) and posted as a Node Event; None clears it."""
        if message is None:
            self.problems.pop(source, None)
            return
        self.problems[source] = message
        log.error("driver %s: %s: %s", self.name, source, message)
        if source.startswith("checkpoint"):
            self.metrics.checkpoint_problem()
        if self.events is not None and not self.tasks.closed:
            warn, text = self.events.warn, f"{self.name}: {message}"
            self.tasks.spawn("event", lambda: warn("DRADriverProblem", text))

    def _slice_report(self, report: Any) -> None:
        """Invalid devices, dropped fields and write errors from the publisher: metric per pool,
        readiness false while any pool has invalid devices, one log line and Event per change."""
        for pool in set(report.invalid_devices) | set(self._invalid_pools):
            self.metrics.set_invalid_devices(pool, len(report.invalid_devices.get(pool, ())))
        self._invalid_pools = set(report.invalid_devices)
        for issue in report.warnings:
            log.warning("driver %s: ResourceSlices: %s", self.name, issue)
        errors = report.errors
        if errors:
            n = sum(len(v) for v in report.invalid_devices.values())
            head = f"{n} device(s) left out of ResourceSlices" if n else "ResourceSlice problems"
            self.tasks.report("resourceslices", f"{head}: " + "; ".join(str(i) for i in errors[:5])
                              + (f" (and {len(errors) - 5} more)" if len(errors) > 5 else ""))
        else:
            self.tasks.report("resourceslices", None)

    async def readiness(self) -> list[str]:
        out = [f"driver {self.name}: {p}" for p in self.problems.values()]
        if self.server is None:
            return out + [f"driver {self.name}: not started"]
        if self.client is not None and (self.slices is None or not self.slices.published_once):
            # The scheduler cannot allocate from this driver before its pools are published.
            out.append(f"driver {self.name}: ResourceSlices not published yet")
        status = self.server.registration_status
        if status is not None and not status.registered:
            out.append(f"driver {self.name}: registration rejected by the kubelet: {status.error or 'no reason given'}")
        from .kubelet._proto import pluginregistration_v1_pb2 as reg_pb2
        from .kubelet.transport import call_unary

        try:
            await call_unary(self.server.paths.registration, reg_pb2.DESCRIPTOR.services_by_name["Registration"],
                             "GetInfo", reg_pb2.InfoRequest(), 2)
        except Exception as exc:  # noqa: BLE001
            out.append(f"driver {self.name}: registration socket does not answer: {exc!r}")
        return out
