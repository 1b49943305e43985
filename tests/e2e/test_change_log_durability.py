"""The change log after ``kill -9``: every acknowledged write has its change, in commit order,
and a reader resumes from any seq it saw without a gap or a repeat."""

from __future__ import annotations

import signal
from pathlib import Path

from flowbus.store import SQLiteStore
from tests.support import rpc, serve

DEVICE = "inventory/device"


async def test_change_log_survives_kill_9_and_resumes(tmp_path: Path) -> None:
    """Writes acknowledged before a SIGKILL are all in the log; changes(since=k) gives exactly the rest."""
    served = serve(tmp_path)
    acked: list[str] = []
    try:
        served.token = served.login()["data"]["token"]
        async with served.connect() as ws:
            for i in range(60):
                answer = await rpc(ws, {"method": "CREATE", "endpoint": DEVICE, "data": {"id": f"d{i}", "name": "x"}})
                assert answer["success"], answer
                acked.append(f"d{i}")
            for i in range(0, 60, 3):
                answer = await rpc(ws, {"method": "UPDATE", "endpoint": DEVICE, "objectid": f"d{i}", "data": {"n": i}})
                assert answer["success"], answer
            # more writes in flight when the process dies: they may or may not be kept
            for i in range(60, 90):
                await ws.send(f'{{"method":"CREATE","endpoint":"{DEVICE}","data":{{"id":"d{i}"}}}}')
            served.process.send_signal(signal.SIGKILL)
            served.process.wait()
    finally:
        served.stop()
    store = SQLiteStore(served.data / "flowbus.db")
    await store.open()
    try:
        changes = await store.changes(0, limit=100_000)
        devices = [c for c in changes if c.collection == DEVICE]
        created = [c.objectid for c in devices if c.kind == "CREATED"]
        assert created[:60] == acked  # in commit order, none lost
        updated = [c for c in devices if c.kind == "UPDATED"]
        assert [c.objectid for c in updated] == [f"d{i}" for i in range(0, 60, 3)]
        assert all(c.version == 2 and c.data["n"] == int(c.objectid[1:]) for c in updated)
        seqs = [c.seq for c in changes]
        assert seqs == sorted(set(seqs))
        k = devices[30].seq
        resumed = await store.changes(k, limit=100_000)
        assert [c.seq for c in resumed] == [s for s in seqs if s > k]
        for c in devices[60:]:  # whatever was kept of the writes in flight is an object too
            assert await store.get(DEVICE, "", c.objectid) is not None
    finally:
        await store.close()
