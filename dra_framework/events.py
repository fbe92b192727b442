"""Kubernetes Events on the Node, for problems an operator must see in ``kubectl describe node``."""
from __future__ import annotations

import datetime
import logging
import uuid

log = logging.getLogger(__name__)


class NodeEvents:
    """Posts core/v1 Events about the Node (involvedObject kind Node). Failures are logged, never
    raised: reporting must not break the driver."""

    def __init__(self, client, node_name: str, node_uid: str | None, component: str = "dra-framework") -> None:
        self.client = client
        self.node_name = node_name
        self.node_uid = node_uid
        self.component = component

    async def warn(self, reason: str, message: str) -> None:
        await self.post("Warning", reason, message)

    async def post(self, type_: str, reason: str, message: str) -> None:
        if self.client is None:
            return
        from lightkube.models.core_v1 import EventSource, ObjectReference
        from lightkube.models.meta_v1 import ObjectMeta
        from lightkube.resources.core_v1 import Event

        now = datetime.datetime.now(datetime.timezone.utc)
        event = Event(
            metadata=ObjectMeta(name=f"{self.node_name}.{uuid.uuid4().hex[:12]}", namespace="default"),
            involvedObject=ObjectReference(kind="Node", name=self.node_name, uid=self.node_uid, apiVersion="v1"),
            reason=reason, message=message[:1024], type=type_,
            source=EventSource(component=self.component, host=self.node_name),
            firstTimestamp=now, lastTimestamp=now, count=1,
        )
        try:
            await self.client.create(event)
        except Exception as exc:  # noqa: BLE001 - reporting is best effort
            log.warning("could not post Event %s on node %s: %s", reason, self.node_name, exc)
