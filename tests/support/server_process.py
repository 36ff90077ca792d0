"""The loopback CMA server in a process of its own, for tests that time the client: its CPU time is then the client's
alone, and a thousand server threads do not take the client's GIL turns."""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from multiprocessing.connection import Connection
from typing import Any

from cma_tracing.demo.loopback import FakeCMAServer

Script = Callable[[FakeCMAServer, str], None]


def _serve(conn: Connection, script: Script) -> None:
    with FakeCMAServer() as server:
        conn.send(server.base_url)
        while (tag := conn.recv()) is not None:
            script(server, tag)
            conn.send(tag)


class ServerProcess:
    def __init__(self, conn: Connection, base_url: str) -> None:
        self._conn = conn
        self.base_url = base_url

    def queue(self, tag: str) -> None:
        """Run the script for `tag` in the server process; returns once it is queued."""
        self._conn.send(tag)
        if self._conn.recv() != tag:
            raise RuntimeError("server process out of step")


@contextmanager
def server_process(script: Script) -> Iterator[ServerProcess]:
    """A `FakeCMAServer` in a spawned process; `queue(tag)` runs `script(server, tag)` there (a module-level function,
    so it can be pickled)."""
    ctx = multiprocessing.get_context("spawn")
    parent, child = ctx.Pipe()
    process: Any = ctx.Process(target=_serve, args=(child, script), name="fake-cma-server", daemon=True)
    process.start()
    try:
        if not parent.poll(60):
            raise RuntimeError("server process did not start")
        yield ServerProcess(parent, parent.recv())
    finally:
        try:
            parent.send(None)
        except OSError:
            pass
        process.join(timeout=10)
        if process.is_alive():
            process.kill()
            process.join()
