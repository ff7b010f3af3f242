"""The time budget of FHIR requests that query the store.

A search runs in a worker thread under a ``Budget`` (``gateway.store.budget``). The route
waits for whichever comes first: the answer, the end of the budget, or the client going
away (``http.disconnect``). In the last two cases the query is cancelled in the database
and the answer is ``503`` with an OperationOutcome (issue code ``timeout``) that says
which. ``cancel_all`` (graceful stop) cancels every running query, so no worker thread
keeps the process alive after the gateway has said it stopped.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any, TypeVar

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request

from gateway.errors import Cancelled, GatewayError
from gateway.store import Budget

from .outcomes import FhirError, from_gateway_error

T = TypeVar("T")
log = logging.getLogger(__name__)
DEFAULT_SECONDS = 10.0
GRACE = 2.0  # seconds the worker gets to notice a cancellation before the route answers


class RequestBudgets:
    def __init__(self, seconds: float = DEFAULT_SECONDS) -> None:
        self.seconds = seconds
        self.running: set[Budget] = set()
        self.cancelled: dict[str, int] = {"budget": 0, "disconnect": 0, "shutdown": 0}

    async def run(self, request: Request, work: Callable[[Budget], T]) -> T:
        """``work(budget)`` in a worker thread, bounded in time and by the client."""
        budget = Budget(self.seconds)
        self.running.add(budget)
        started = time.monotonic()
        task = asyncio.ensure_future(run_in_threadpool(work, budget))
        gone = asyncio.ensure_future(_disconnected(request))
        try:
            done, _ = await asyncio.wait({task, gone}, timeout=self.seconds,
                                         return_when=asyncio.FIRST_COMPLETED)
            if task not in done:
                await asyncio.to_thread(budget.cancel, "disconnect" if gone in done
                                        else "budget")
                await asyncio.wait({task}, timeout=GRACE)
            if not task.done():
                task.add_done_callback(_consume)
                raise budget.error()
            return task.result()
        except Cancelled as exc:
            self.cancelled[exc.reason] = self.cancelled.get(exc.reason, 0) + 1
            log.warning("%s %s: query cancelled (%s) after %.2f s", request.method,
                        request.url.path, exc.reason, time.monotonic() - started)
            raise FhirError.of("timeout", exc.message, status=503) from exc
        except GatewayError as exc:
            raise from_gateway_error(exc) from exc
        finally:
            gone.cancel()
            self.running.discard(budget)

    def cancel_all(self, reason: str = "shutdown") -> int:
        """Cancel every running query (blocking: one database round trip each)."""
        running = list(self.running)
        for budget in running:
            budget.cancel(reason)
        return len(running)


async def _disconnected(request: Request) -> None:
    """Returns when the client has gone away (the body, if any, was read before)."""
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            return


def _consume(task: asyncio.Future[Any]) -> None:
    if not task.cancelled():
        task.exception()
