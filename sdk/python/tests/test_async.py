"""The asyncio client never blocks the event loop, and the blocking client never holds
the GIL while it waits."""

import asyncio
import pathlib
import threading
import time
from typing import List

import cella
from conftest import PASSWORD, Node
from test_sdk import psi_task


def test_an_async_watch_leaves_the_event_loop_running(
    node: Node, admin: cella.Client, tmp_path: pathlib.Path
) -> None:
    a, b, task, _ = psi_task(node, admin, tmp_path)
    b.approve(task.task_id)
    a.approve(task.task_id)

    async def run() -> "tuple[List[str], float]":
        ac = await cella.AsyncClient.connect(node.addr, policy=node.policy)
        await ac.login(a.user or "", PASSWORD)
        watch = ac.watch(task.task_id)
        first = await watch.__anext__()  # Approved: the next update waits for invoke.
        # Another thread invokes the task in 2 s. A watch that blocked the loop would
        # hold it until then, and the ticks below would only start once it was done.
        invoker = threading.Timer(2.0, lambda: a.invoke(task.task_id))
        invoker.start()
        pending = asyncio.ensure_future(watch.__anext__())
        started = time.monotonic()
        for _ in range(20):
            await asyncio.sleep(0.01)
        ticked_in = time.monotonic() - started
        assert not pending.done(), "the watch returned before the task was invoked"
        seen = [first.status, (await pending).status]
        seen += [t.status async for t in watch]
        invoker.join()
        return seen, ticked_in

    seen, ticked_in = asyncio.run(run())
    assert ticked_in < 1.5, f"20 ticks of 10 ms took {ticked_in:.2f} s while the watch waited"
    assert seen[0] == "Approved" and seen[-1] == "Finished", seen


def test_a_blocking_watch_releases_the_gil(node: Node, admin: cella.Client, tmp_path: pathlib.Path) -> None:
    a, b, task, _ = psi_task(node, admin, tmp_path)
    b.approve(task.task_id)
    a.approve(task.task_id)
    statuses: List[str] = []
    watcher = threading.Thread(target=lambda: statuses.extend(t.status for t in a.watch(task.task_id)))
    watcher.start()
    # Pure-Python work on this thread runs while the watcher waits in the node's stream.
    counted = 0
    deadline = time.monotonic() + 0.3
    while time.monotonic() < deadline:
        counted += 1
    assert watcher.is_alive() and counted > 1000
    a.invoke(task.task_id)
    watcher.join(timeout=60)
    assert not watcher.is_alive() and statuses[-1] == "Finished", statuses
