"""One composed driver at run time: backends, inventory, health, engine, slices and sockets.

Start order matters: the engine reconciles the checkpoint and CDI directory *before* the kubelet
can reach the sockets, and slices are published only after discovery. Stop order is the
reverse: sockets go first so the kubelet stops calling, then health, slices and backends.
"""
from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import stat
from typing import Any

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

log = logging.getLogger(__name__)


class DriverRuntime:
    def __init__(self, settings: Settings, index: int, config: DriverConfig, registry: Registry,
                 client: Any, node_uid: str | None, events: Any) -> None:
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
        self._expiry: dict[str, asyncio.TimerHandle] = {}
        self._tasks: list[asyncio.Task] = []

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
        loop = self._loop
        if not self._rediscover_pending:
            self._rediscover_pending = True
            loop.call_soon_threadsafe(lambda: self._tasks.append(loop.create_task(self._rediscover())))

    async def _rediscover(self) -> None:
        self._rediscover_pending = False
        try:
            self.inventory = await discover(self.backends)
        except Exception as exc:  # noqa: BLE001 - keep serving the last good inventory
            log.error("driver %s: rediscovery failed, keeping the previous devices: %s", self.name, exc)
            return
        self.publish()  # the engine reads self.inventory through its callable

    # --- lifecycle ---------------------------------------------------------

    async def start(self, progress: Any = None) -> None:
        from .cdi.writer import CdiWriter
        from .config import cdi_kind
        from .engine import Checkpoint, Janitor, PrepareEngine, checkpoint_path, lightkube_status_writer
        from .kube_get import claim_getter

        self._loop = asyncio.get_running_loop()
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
            self.hub = HealthHub(self.health_state, self.pool_name, self.publish, on_problem=self._problem,
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
        self.server = PluginServer(
            self.name, self.engine, health=self.health_state,
            kubelet_root=str(self.settings.kubelet_root_dir), pod_uid=self.settings.pod_uid or None,
            health_resend_interval=self.settings.health_resend_seconds)
        await self.server.start()
        self.janitor.start()
        self._tasks.append(asyncio.create_task(self._watch_sockets(), name=f"sockets-{self.name}"))
        log.info("driver %s: serving on %s", self.name, self.server.paths.dra)
        if self.client is not None and self.node_uid is not None:
            # API-facing work runs behind the kubelet-facing side: a dead API server must not
            # keep the sockets (and so the unprepare of checkpointed claims) down.
            self._tasks.append(asyncio.create_task(self._publish_slices(), name=f"slices-{self.name}"))

    async def _publish_slices(self, max_delay: float = 60.0) -> None:
        """Wait for the Node UID, then start the slice publisher, retrying with back-off while
        the API server is unreachable (or too old, or the Node is missing)."""
        from .kube import describe
        from .slices import SliceController

        owner = self.node_uid
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
        if not known:
            ctl.node_uid = await owner.wait()
        delay = 1.0
        while True:
            try:
                await ctl.start()
            except Exception as exc:  # noqa: BLE001 - retried; shown by /readyz meanwhile
                msg = f"cannot publish ResourceSlices yet (retried with back-off): {describe(exc)}"
                if self.problems.get("resourceslices:start") != msg:
                    self._problem("resourceslices:start", msg)
                await asyncio.sleep(delay)
                delay = min(delay * 2, max_delay)
                continue
            self._problem("resourceslices:start", None)
            log.info("driver %s: publishing ResourceSlices", self.name)
            return

    def _socket_ids(self) -> tuple[tuple[int, int] | None, ...]:
        out = []
        for path in (self.server.paths.registration, self.server.paths.dra):
            try:
                st = os.lstat(path)
                out.append((st.st_dev, st.st_ino) if stat.S_ISSOCK(st.st_mode) else None)
            except FileNotFoundError:
                out.append(None)
        return tuple(out)

    async def _watch_sockets(self, interval: float = 2.0) -> None:
        """Recreate our sockets when they vanish or are replaced (someone cleaned the plugin
        directories, or another instance took the paths over and exited): without them the
        kubelet cannot reach the driver and wipes its ResourceSlices after 30 s."""
        ours = self._socket_ids()
        while True:
            await asyncio.sleep(interval)
            now = self._socket_ids()
            if now == ours:
                continue
            log.warning("driver %s: kubelet sockets %s were removed or replaced; serving them again",
                        self.name, [self.server.paths.registration, self.server.paths.dra])
            try:
                await self.server.stop()
                await self.server.start()
                ours = self._socket_ids()
                self._problem("sockets", None)
            except Exception as exc:  # noqa: BLE001 - retried at the next tick
                self._problem("sockets", f"cannot serve the kubelet sockets again: {exc}")

    async def stop(self, uninstall: bool = False) -> None:
        if self.janitor is not None:
            await self.janitor.stop()
        if self.engine is not None:
            self.engine.drop_pending()  # calls waiting in a queue answer now, within the grace
        # The socket watcher first: seeing the sockets go while the server stops, it would serve
        # them again (a server left behind that the closed event loop can no longer shut down).
        watchers = [t for t in self._tasks if t.get_name().startswith("sockets-")]
        for t in watchers:
            t.cancel()
        await asyncio.gather(*watchers, return_exceptions=True)
        if self.server is not None:
            await self.server.stop()
        if self.engine is not None:
            await self.engine.drain()
        for t in self._tasks:
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
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
        source = f"checkpoint:{problem.reason}"
        self._problem(source, problem.message)

        def expire_later() -> None:
            old = self._expiry.pop(source, None)
            if old is not None:
                old.cancel()  # a newer problem of the same kind restarts the window
            self._expiry[source] = self._loop.call_later(
                self.CHECKPOINT_PROBLEM_READY_SECONDS, self.problems.pop, source, None)

        self._loop.call_soon_threadsafe(expire_later)

    def _problem(self, source: str, message: str | None) -> None:
        """Engine/checkpoint problems: logged, shown by /readyz, and posted as a Node Event."""
        if message is None:
            self.problems.pop(source, None)
            return
        self.problems[source] = message
        log.error("driver %s: %s: %s", self.name, source, message)
        if source.startswith("checkpoint"):
            self.metrics.checkpoint_problem()
        if self.events is not None:
            # May be called from the checkpoint's worker thread: hop onto the loop.
            coro_fn = self.events.warn
            self._loop.call_soon_threadsafe(
                lambda: self._tasks.append(self._loop.create_task(coro_fn("DRADriverProblem", f"{self.name}: {message}"))))

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
            self._problem("resourceslices", f"{head}: " + "; ".join(str(i) for i in errors[:5])
                          + (f" (and {len(errors) - 5} more)" if len(errors) > 5 else ""))
        else:
            self._problem("resourceslices", None)

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
        from .kubelet.client import get_info

        try:
            await asyncio.wait_for(get_info(self.server.paths.registration), 2)
        except Exception as exc:  # noqa: BLE001
            out.append(f"driver {self.name}: registration socket does not answer: {exc!r}")
        return out
