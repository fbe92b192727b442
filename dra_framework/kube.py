"""The Kubernetes API client of the daemon (lightkube AsyncClient), its client-side rate limit,
and how the daemon lives without the API server.

``--api-qps``/``--api-burst`` bound the request rate like client-go's token bucket, so a burst of
health changes or claims on a big node cannot flood the API server.

Nothing kubelet-facing waits for the API server (see docs/operations.md, "API server down"):
every request goes through :class:`RateLimitedClient`, which records whether the server answered
(:class:`ApiHealth`: /readyz and ``dra_framework_api_server_reachable``) and turns transport
failures into :class:`ApiUnavailableError`, whose message names the server and the failure.
"""
from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from .config import Settings
from .errors import ConfigError, DraFrameworkError

log = logging.getLogger(__name__)


class ApiUnavailableError(DraFrameworkError, ConnectionError):
    """The API server did not answer (refused, reset, timed out, TLS failure). Temporary: the
    operation is retried (by the kubelet for claims, by the daemon for slices, Events, the Node)."""


def describe(exc: BaseException) -> str:
    """``Type: message`` of an exception, never empty (httpx timeouts have an empty ``str``)."""
    text = str(exc).strip()
    name = type(exc).__name__
    if isinstance(exc, DraFrameworkError) and text:
        return text  # our own messages say what failed
    if not text:
        timeout = isinstance(exc, TimeoutError) or "Timeout" in name
        return f"{name} ({'no answer in time' if timeout else 'no details'})"
    return text if text.startswith(name) else f"{name}: {text}"


def transport_errors() -> tuple[type[BaseException], ...]:
    """Exception types that mean "no HTTP answer" (as opposed to an HTTP error status)."""
    out: list[type[BaseException]] = [OSError, asyncio.TimeoutError]
    for mod in ("httpx2", "httpx"):
        try:
            out.append(__import__(mod).TransportError)
        except (ImportError, AttributeError):
            pass
    return tuple(out)


class ApiHealth:
    """Whether the API server answered the last request. ``problem`` is None while it does, else
    a one-line description (shown by /readyz); the gauge ``dra_framework_api_server_reachable``
    follows it and ``dra_framework_api_unreachable_total`` counts failed requests."""

    def __init__(self, server: str) -> None:
        self.server = server
        self.problem: str | None = None
        self.since: float | None = None
        self._set(True)

    def _set(self, up: bool) -> None:
        from .metrics import API_REACHABLE

        API_REACHABLE.set(1 if up else 0)

    def ok(self) -> None:
        if self.problem is not None:
            log.info("API server %s answers again (unreachable for %.0fs)", self.server,
                     time.monotonic() - (self.since or time.monotonic()))
        self.problem = None
        self.since = None
        self._set(True)

    def failed(self, exc: BaseException) -> ApiUnavailableError:
        from .metrics import API_UNREACHABLE

        API_UNREACHABLE.inc()
        message = f"API server {self.server} unreachable (retriable): {describe(exc)}"
        if self.problem is None:
            self.since = time.monotonic()
            log.warning("%s; kubelet calls are served meanwhile, API work is retried", message)
        self.problem = message
        self._set(False)
        return ApiUnavailableError(message)


class TokenBucket:
    """Allows ``burst`` requests at once and ``qps`` per second on average."""

    def __init__(self, qps: float, burst: int) -> None:
        self.qps = qps
        self.burst = burst
        self.tokens = float(burst)
        self.stamp = time.monotonic()
        self._lock = asyncio.Lock()

    async def take(self) -> None:
        async with self._lock:
            now = time.monotonic()
            self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.qps)
            self.stamp = now
            if self.tokens < 1:
                await asyncio.sleep((1 - self.tokens) / self.qps)
                self.tokens = 1
                self.stamp = time.monotonic()
            self.tokens -= 1


class RateLimitedClient:
    """Wraps a lightkube AsyncClient: every request-making method first takes a token. Watches
    take one token when they (re)connect. Transport failures raise :class:`ApiUnavailableError`
    and are recorded in ``health``."""

    _LIMITED = {"get", "list", "create", "replace", "patch", "delete", "deletecollection", "apply", "watch"}

    def __init__(self, client: Any, bucket: TokenBucket, health: ApiHealth | None = None,
                 kube_config: Any = None) -> None:
        self._inner = client
        self._bucket = bucket
        self.health = health or ApiHealth("(unknown)")
        self._transport = transport_errors()
        #: The lightkube ``SingleConfig`` the client was made from (dra_framework.kube_get uses it).
        self.kube_config = kube_config

    @property
    def transport_errors(self) -> tuple[type[BaseException], ...]:
        return self._transport

    async def take_token(self) -> None:
        """Wait for the rate limit, for a request made without this wrapper (kube_get)."""
        await self._bucket.take()

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._inner, name)
        if name not in self._LIMITED:
            return attr
        health, transport = self.health, self._transport
        if name in ("list", "watch"):
            bucket = self._bucket

            async def gen(*a: Any, **kw: Any):
                await bucket.take()
                try:
                    async for item in attr(*a, **kw):
                        health.ok()
                        yield item
                except transport as exc:
                    raise health.failed(exc) from None

            return gen

        async def call(*a: Any, **kw: Any) -> Any:
            await self._bucket.take()
            try:
                out = await attr(*a, **kw)
            except transport as exc:
                raise health.failed(exc) from None
            except Exception as exc:
                if getattr(exc, "status", None) is not None:  # an HTTP answer (ApiError)
                    health.ok()
                raise
            health.ok()
            return out

        return call


def make_client(settings: Settings) -> Any:
    """A rate-limited lightkube AsyncClient from ``settings.kubeconfig`` (in-cluster when empty).
    Raises ConfigError when no configuration can be loaded. Loading makes no request: the API
    server need not be up."""
    import yaml
    from lightkube import AsyncClient, KubeConfig
    from lightkube.core.exceptions import ConfigError as LkConfigError

    where = settings.kubeconfig or "in-cluster service account"
    try:
        if settings.kubeconfig:
            config = KubeConfig.from_file(settings.kubeconfig)
        else:
            config = KubeConfig.from_service_account()
        client = AsyncClient(config, field_manager="dra-framework")
    except (LkConfigError, OSError, ValueError, TypeError, KeyError, AttributeError, yaml.YAMLError) as exc:
        raise ConfigError(f"kubeconfig: cannot load {where}: {' '.join(describe(exc).split())}") from None
    single: Any = None
    server = where
    try:
        single = config.get()
        server = single.cluster.server
    except Exception:  # noqa: BLE001 - only used in messages
        single = None
    return RateLimitedClient(client, TokenBucket(settings.api_qps, settings.api_burst), ApiHealth(server), single)
