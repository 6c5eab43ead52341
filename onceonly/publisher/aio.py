"""``AsyncPublisher``: the same producer and checks for asyncio code (the gateway, async adapters).

The producer is polled by its own thread; each send's future is awaited with ``asyncio.wrap_future``, so many
publishes wait concurrently without a second client or a thread per message.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterable, Mapping
from types import TracebackType
from typing import Any

from onceonly.publisher.errors import BatchFailed, PublishFailed
from onceonly.publisher.prepare import Prepared
from onceonly.publisher.sync import Change, Publisher, PublishResult
from onceonly.settings import Settings
from onceonly.standard import RecordInvalid, Serde


class AsyncPublisher:
    """``await publish(change)`` returns once the broker acknowledged; see ``Publisher`` for the defaults filled."""

    def __init__(
        self,
        settings: Settings | None = None,
        *,
        serde: Serde | None = None,
        connector: str = "sdk",
        delivery_timeout: float = 30.0,
        producer_config: dict[str, Any] | None = None,
    ) -> None:
        self._sync = Publisher(
            settings,
            serde=serde,
            connector=connector,
            delivery_timeout=delivery_timeout,
            producer_config=producer_config,
        )

    @property
    def settings(self) -> Settings:
        return self._sync.settings

    @property
    def sync(self) -> Publisher:
        """The underlying thread-safe ``Publisher`` (same producer), for blocking helpers run in a thread."""
        return self._sync

    def prepare(self, change: Change, *, source: Mapping[str, Any] | None = None) -> Prepared:
        """Validate and encode (fast, and the registry is asked once per entity type, so it runs inline)."""
        return self._sync.prepare(change, source=source)

    async def send(self, prepared: Prepared) -> PublishResult:
        """Send one prepared change and await its acknowledgement (``PublishFailed`` when there is none)."""
        future = self._sync.submit(prepared)
        with contextlib.suppress(PublishFailed, TimeoutError):  # ``settle`` words either failure below
            await asyncio.wait_for(asyncio.shield(asyncio.wrap_future(future)), self._sync.delivery_timeout + 15.0)
        if not future.done():
            raise PublishFailed("no delivery report in time", event_id=prepared.event_id)
        outcome = self._sync.settle(prepared, future)
        if isinstance(outcome, PublishFailed):
            raise outcome
        return outcome

    async def publish(self, change: Change, *, source: Mapping[str, Any] | None = None) -> PublishResult:
        """Send one change and wait for the broker's acknowledgement."""
        return await self.send(self.prepare(change, source=source))

    async def publish_many(self, changes: Iterable[Change]) -> list[PublishResult]:
        """Validate all (one invalid: ``RecordInvalid`` for ``[i].field``, nothing sent), send all, await all.

        The batch's acknowledgements are awaited with one hop to a worker thread, not one task per change.
        """
        prepared = []
        for i, change in enumerate(changes):
            try:
                prepared.append(self.prepare(change))
            except RecordInvalid as e:
                raise RecordInvalid(f"[{i}].{e.field}" if e.field else f"[{i}]", e.reason) from e
        outcomes = await asyncio.to_thread(self._sync.send, prepared)
        failures = [o for o in outcomes if isinstance(o, PublishFailed)]
        if failures:
            raise BatchFailed(list(outcomes), failures)
        return [o for o in outcomes if isinstance(o, PublishResult)]

    async def close(self) -> None:
        await asyncio.to_thread(self._sync.close)

    async def __aenter__(self) -> AsyncPublisher:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()
