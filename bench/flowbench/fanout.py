"""S7: one writer, many subscribers. Events delivered per second, and the time from sending a
write to its event reaching a subscriber (p50/p99), against FlowBus or the broadcast ceiling.

The writer sends one CREATE at a time; each carries the moment it was sent, so that every
subscriber that receives its event knows how long it took. The client is Python (websockets);
its CPU per event is reported beside the figures, since at high rates it may be the limit.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from dataclasses import dataclass, field

import orjson
from websockets.asyncio.client import ClientConnection, connect

from flowbench.workload import call

__all__ = ["Fanout", "fanout"]

NAMESPACE = "bench-s7"
ENDPOINT = "inventory/device"
_BATCH = 100  # subscribers connected at once


@dataclass(slots=True)
class Fanout:
    writes: int = 0
    delivered: int = 0
    errors: int = 0
    seconds: float = 0.0
    latencies_us: list[float] = field(default_factory=list)
    client_cpu_s: float = 0.0

    @property
    def p50_us(self) -> float | None:
        return statistics.median(self.latencies_us) if self.latencies_us else None

    @property
    def p99_us(self) -> float | None:
        if len(self.latencies_us) < 2:
            return self.latencies_us[0] if self.latencies_us else None
        return statistics.quantiles(self.latencies_us, n=100, method="inclusive")[98]


async def _subscriber(url: str) -> ClientConnection:
    ws = await connect(url, compression=None, max_size=None, max_queue=None)
    answer = await call(ws, {"method": "SUBSCRIBE", "endpoint": ENDPOINT, "namespace": NAMESPACE})
    if not answer.get("success"):
        raise RuntimeError(f"S7: SUBSCRIBE refused: {answer.get('message')}")
    return ws


async def _listen(ws: ClientConnection, expected: int, result: Fanout) -> None:
    got = 0
    while got < expected:
        message = orjson.loads(await ws.recv(decode=False))
        if message.get("event") != "CREATED":
            continue
        got += 1
        result.delivered += 1
        result.latencies_us.append((time.time() - message["data"]["sent"]) * 1e6)


async def fanout(url: str, subscribers: int, writes: int) -> Fanout:
    """``subscribers`` connections subscribe; one writer makes ``writes`` CREATEs, one at a time."""
    result = Fanout()
    conns: list[ClientConnection] = []
    for start in range(0, subscribers, _BATCH):
        batch = [_subscriber(url) for _ in range(start, min(subscribers, start + _BATCH))]
        conns.extend(await asyncio.gather(*batch))
    cpu, started = time.process_time(), time.monotonic()
    listeners = [asyncio.create_task(_listen(ws, writes, result)) for ws in conns]
    async with connect(url, compression=None) as writer:
        for i in range(writes):
            data = {"name": f"s7-{i}", "sent": time.time()}
            create = {"method": "CREATE", "endpoint": ENDPOINT, "namespace": NAMESPACE, "data": data}
            answer = await call(writer, create)
            result.writes += 1
            if not answer.get("success"):
                result.errors += 1
    try:
        await asyncio.wait_for(asyncio.gather(*listeners), timeout=120)
    finally:
        result.seconds = time.monotonic() - started
        result.client_cpu_s = time.process_time() - cpu
        for task in listeners:
            task.cancel()
        await asyncio.gather(*(ws.close() for ws in conns), return_exceptions=True)
    return result
