"""The Kubernetes API client of the daemon (lightkube AsyncClient) and its client-side rate limit.

``--api-qps``/``--api-burst`` bound the request rate like client-go's token bucket, so a burst of
health changes or claims on a big node cannot flood the API server.
"""
from __future__ import annotations

import asyncio
import time
from typing import Any

from .config import Settings
from .errors import ConfigError


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
    take one token when they (re)connect."""

    _LIMITED = {"get", "list", "create", "replace", "patch", "delete", "deletecollection", "apply", "watch"}

    def __init__(self, client: Any, bucket: TokenBucket) -> None:
        self._inner = client
        self._bucket = bucket

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._inner, name)
        if name not in self._LIMITED:
            return attr
        if name in ("list", "watch"):
            bucket = self._bucket

            async def gen(*a: Any, **kw: Any):
                await bucket.take()
                async for item in attr(*a, **kw):
                    yield item

            return gen

        async def call(*a: Any, **kw: Any) -> Any:
            await self._bucket.take()
            return await attr(*a, **kw)

        return call


def make_client(settings: Settings) -> Any:
    """A rate-limited lightkube AsyncClient from ``settings.kubeconfig`` (in-cluster when empty).
    Raises ConfigError when no configuration can be loaded."""
    from lightkube import AsyncClient, KubeConfig
    from lightkube.core.exceptions import ConfigError as LkConfigError

    try:
        if settings.kubeconfig:
            config = KubeConfig.from_file(settings.kubeconfig)
        else:
            config = KubeConfig.from_service_account()
    except (LkConfigError, OSError) as exc:
        where = settings.kubeconfig or "in-cluster service account"
        raise ConfigError(f"kubeconfig: cannot load {where}: {exc}") from None
    client = AsyncClient(config, field_manager="dra-framework")
    return RateLimitedClient(client, TokenBucket(settings.api_qps, settings.api_burst))
