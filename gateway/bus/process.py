"""Role all: the hub projector in a child process of its own, below the ingest's priority.

In one process the projector and the ingest share one interpreter lock: every chunk the
projector writes into the hub store (each resource again, with ~20 search-index rows) is
time the ingest cannot acknowledge in (``bench/ingest.py``: ``all`` at ~80 % of ``edge``).
In a child process the projector has its own interpreter and, at the lowest scheduling
priority (``nice`` 19; at 10 it still held ``all`` near 80 % of ``edge`` at 32 senders),
it takes the CPU the ingest leaves: ACKs come first, the projection catches up as soon as
a burst is over.

The child is the same ``HubProjector`` over the same bus and hub store (the parent has
migrated it). It is started with ``spawn`` (no fork of a process with threads and open
database connections) and talks to the parent over one pipe:

* parent → child: ``("published",)``, the relay put records on the embedded bus (read
  them now, not at the next poll); ``("settle", n)``, answer once what is on the bus now
  is applied; ``("stop",)``, finish the chunk being written and exit;
* child → parent: ``("status", {...})``, ``HubProjector.status()`` every 0.1 s;
  ``("settled", n)``.

The child exits when the pipe closes (the parent is gone, even after ``kill -9``). A child
that dies is started again after a backoff (``status()['process']['restarts']``); the bus
offsets it had committed make the restart lose and repeat nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing
import os
import signal
import time
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any

from gateway.bus.settings import BusSettings
from gateway.errors import GatewayError

log = logging.getLogger(__name__)

STATUS_EVERY = 0.1  # s: the child's status messages, at most this often (and when idle)
STOP_WAIT = 10.0
LINGER = 0.05  # s the parent waits for the child to finish its chunk and exit


@dataclass(frozen=True)
class ProjectorJob:
    """What the child needs (pickled to it): the bus, the hub store, how to log."""

    bus: BusSettings
    hub_url: str
    data_dir: str | None
    nice: int = 19
    # s the child waits after a chunk smaller than a full one, so that under a steady load
    # it commits fewer, larger chunks (bench/ingest.py, 8 senders: all/edge median 76 % → 90 %
    # over three runs; ACK → visible p99 stays under 300 ms)
    linger: float = LINGER
    log_level: str = "INFO"
    log_format: str = "text"


def child_main(job: ProjectorJob, conn: Connection) -> None:
    """The child process: ``HubProjector`` until told to stop or the pipe closes."""
    from gateway.observability import logs

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a Ctrl-C reaches the whole group: the
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # parent stops its child in order
    with contextlib.suppress(OSError):
        os.nice(job.nice)
    logs.configure(job.log_level, job.log_format)
    asyncio.run(_child(job, conn))


async def _child(job: ProjectorJob, conn: Connection) -> None:
    from pathlib import Path

    from gateway.bus.components import make_bus, make_projector
    from gateway.bus.embedded import EmbeddedBus
    from gateway.store import SqlStore

    loop = asyncio.get_running_loop()
    store = SqlStore(job.hub_url)
    bus = make_bus(job.bus, Path(job.data_dir) if job.data_dir else None)
    projector = make_projector(job.bus, store, bus)
    projector.linger = job.linger
    stopping = asyncio.Event()
    settles: set[asyncio.Task[None]] = set()

    def send(message: tuple[Any, ...]) -> None:
        try:
            conn.send(message)
        except (OSError, ValueError):  # the parent is gone
            stopping.set()

    async def settle(n: int) -> None:
        while True:
            try:
                await projector.caught_up()
                break
            except GatewayError:  # the consumer is still starting (or the bus failing)
                await asyncio.sleep(0.05)
        send(("settled", n))

    def receive() -> None:
        try:
            while conn.poll():
                message = conn.recv()
                if message[0] == "published" and isinstance(bus, EmbeddedBus):
                    bus.woken()
                elif message[0] == "settle":
                    task = loop.create_task(settle(message[1]))
                    settles.add(task)
                    task.add_done_callback(settles.discard)
                elif message[0] == "stop":
                    stopping.set()
        except (EOFError, OSError):
            stopping.set()
            loop.remove_reader(conn.fileno())

    loop.add_reader(conn.fileno(), receive)
    await projector.start()
    log.info("projector process started (pid %d)", os.getpid())
    try:
        while not stopping.is_set():
            send(("status", projector.status()))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), STATUS_EVERY)
    finally:
        for task in settles:
            task.cancel()
        await projector.stop()
        with contextlib.suppress(Exception):
            send(("status", projector.status()))
        store.close()
        with contextlib.suppress(Exception):
            loop.remove_reader(conn.fileno())


class ProjectorProcess:
    """The parent's handle on the child: what ``BusComponents`` asks of a projector
    (``status``, ``applied``, ``caught_up``, ``stop``), answered from the child's messages."""

    def __init__(self, job: ProjectorJob, *, min_backoff: float = 0.5,
                 max_backoff: float = 30.0) -> None:
        self.job = job
        self.min_backoff = min_backoff
        self.max_backoff = max_backoff
        self.restarts = 0
        self._status: dict[str, Any] = {"lag": {}, "lag_total": 0, "applied": 0,
                                        "changed": 0, "last_error": None}
        self._process: Any = None
        self._conn: Connection | None = None
        self._settles: dict[int, asyncio.Future[None]] = {}
        self._next_settle = 0
        self._stopping = False
        self._watch: asyncio.Task[None] | None = None
        self._exit_error: str | None = None
        self._died = asyncio.Event()
        self._started = 0.0
        self._before = {"applied": 0, "changed": 0}  # by the children that died
        self.tracer: Any = None  # traces of the projection are not kept across processes

    @property
    def applied(self) -> int:
        """Records applied since the start, over every child (a counter: never goes down)."""
        return self._before["applied"] + int(self._status.get("applied") or 0)

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    async def start(self) -> None:
        self._spawn()
        self._watch = asyncio.create_task(self._supervise(), name="projector-process")

    def _spawn(self) -> None:
        context = multiprocessing.get_context("spawn")
        parent, child = context.Pipe()
        process = context.Process(target=child_main, args=(self.job, child),
                                  name="gateway-projector", daemon=True)
        process.start()
        child.close()
        self._process, self._conn = process, parent
        self._started = time.monotonic()
        asyncio.get_running_loop().add_reader(parent.fileno(), self._receive)
        log.info("projector process %d started (nice %d)", process.pid, self.job.nice)

    def _receive(self) -> None:
        conn = self._conn
        if conn is None:
            return
        try:
            while conn.poll():
                message = conn.recv()
                if message[0] == "status":
                    self._status = message[1]
                elif message[0] == "settled":
                    future = self._settles.pop(message[1], None)
                    if future is not None and not future.done():
                        future.set_result(None)
        except (EOFError, OSError):  # the child is gone (or going)
            self._drop_conn()
            self._died.set()

    def _drop_conn(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                asyncio.get_running_loop().remove_reader(conn.fileno())
            conn.close()

    def _send(self, message: tuple[Any, ...]) -> bool:
        if self._conn is None:
            return False
        try:
            self._conn.send(message)
        except (OSError, ValueError):
            return False
        return True

    async def _supervise(self) -> None:
        """Start the child again when it dies (its pipe closes), after a backoff that grows
        while it keeps dying; its committed offsets are where the new one resumes."""
        delay = self.min_backoff
        while not self._stopping:
            await self._died.wait()
            self._died.clear()
            process, lived = self._process, time.monotonic() - self._started
            await asyncio.to_thread(process.join, 5.0)
            if self._stopping:
                return
            if lived > 30:
                delay = self.min_backoff
            self._exit_error = f"projector process exited with code {process.exitcode}"
            log.error("%s; starting it again in %.1f s", self._exit_error, delay)
            await asyncio.sleep(delay)
            delay = min(self.max_backoff, delay * 2)
            if not self._stopping:
                self.restarts += 1
                for counter in self._before:
                    self._before[counter] += int(self._status.get(counter) or 0)
                self._status = {**self._status, "applied": 0, "changed": 0}
                self._spawn()

    def published(self) -> None:
        """The relay put records on the bus: the child reads them now."""
        self._send(("published",))

    async def caught_up(self) -> None:
        """Return once what is on the bus now is in the hub store (as ``HubProjector``)."""
        while True:
            future = asyncio.get_running_loop().create_future()
            self._next_settle += 1
            self._settles[self._next_settle] = future
            if self._send(("settle", self._next_settle)):
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(asyncio.shield(future), 5.0)
                    return
            self._settles.pop(self._next_settle, None)
            await asyncio.sleep(0.1)  # the child is (re)starting: ask it again

    def status(self) -> dict[str, object]:
        out = dict(self._status)
        for counter, before in self._before.items():
            out[counter] = before + int(out.get(counter) or 0)
        alive = self._process is not None and self._process.exitcode is None
        if not alive and self._exit_error:
            out["last_error"] = self._exit_error
        out["process"] = {"pid": self.pid, "alive": alive, "nice": self.job.nice,
                          "restarts": self.restarts}
        return out

    async def stop(self) -> None:
        self._stopping = True
        if self._watch is not None:
            self._watch.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._watch
        for future in self._settles.values():
            future.cancel()
        process = self._process
        if process is None:
            return
        self._send(("stop",))
        await asyncio.to_thread(process.join, STOP_WAIT)
        if process.exitcode is None:
            log.warning("projector process %d did not stop in %.0f s: terminated",
                        process.pid, STOP_WAIT)
            process.kill()
            await asyncio.to_thread(process.join, 5.0)
        self._receive()  # its last status
        self._drop_conn()
