"""The request batcher: a bounded queue of jobs, worker tasks that group them into batches, deadlines.

Independent of HTTP and of translation (tested on its own): a caller `submit`s a mapping key → payload with a
deadline; keys already in flight are shared (translated once for everyone who asks meanwhile); the rest become
one job on a bounded queue (`QueueFull` when it is full). Each of the workers takes a job plus whatever else is
queued, up to `max_batch_items` keys (optionally waiting `batch_wait_ms` to fill up), and awaits `run_batch`,
which may `settle` a key the moment it is done; `each` hands a caller its keys in order as they are settled.

Nothing is done for nobody: a caller that gives up (deadline, disconnect) lets go of its keys; a key nobody
waits for leaves the queue at once (freeing its slot), and a started batch whose keys nobody waits for any more
is told so through the `cancelled()` check it was handed, which the batch function polls between model calls.
`drain` answers every waiting caller at once (shutdown).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import AsyncGenerator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Generic, TypeVar

P = TypeVar("P")  # what a key stands for (the batch function's input)
R = TypeVar("R")  # what a key becomes


class QueueFull(Exception):
    """The queue holds `max_queue` jobs already."""


class Draining(Exception):
    """The batcher is shutting down and takes no new work."""


class DeadlineExceeded(Exception):
    """Not done by the caller's deadline."""


@dataclass
class Done(Generic[R]):
    """The outcome for one key: `value`, or None with `error` (and what kind of failure `code` names)."""

    value: R | None
    batch_started: float
    engine_s: float = 0.0
    error: str | None = None
    code: str | None = None
    tokens: tuple[int, int] = (0, 0)  # (prompt, completion) model tokens it cost, where the engine counts them


@dataclass(eq=False)
class Job(Generic[P, R]):
    units: list[Unit[P, R]] = field(default_factory=list)  # the keys this submit put in flight
    taken: bool = False  # a worker took it off the queue


@dataclass(eq=False)
class Unit(Generic[P, R]):
    """One distinct key being worked on, shared by every caller that asks for it meanwhile."""

    key: str
    payload: P
    future: asyncio.Future[Done[R]]
    job: Job[P, R]
    waiters: int = 0
    deadline: float = 0.0  # the latest deadline (time.monotonic()) of the callers waiting for it
    started: bool = False
    abandoned: bool = False  # started, then every caller gave up: the batch may stop working on it


CancelCheck = Callable[[], bool]
BatchFn = Callable[[int, list[Unit[P, R]], CancelCheck], Awaitable[Mapping[str, Done[R]]]]


class Batcher(Generic[P, R]):
    """Bounded queue + `workers` tasks running `run_batch(worker_index, units, cancelled)`. One event loop."""

    def __init__(
        self,
        run_batch: BatchFn[P, R],
        *,
        max_queue: int,
        max_batch_items: int,
        batch_wait_ms: float = 0.0,
        on_cancel: Callable[[str, int], None] | None = None,
    ) -> None:
        self.run_batch = run_batch
        self.max_queue = max_queue
        self.max_batch_items = max_batch_items
        self.batch_wait_s = batch_wait_ms / 1000
        self.on_cancel = on_cancel or (lambda where, n: None)
        self.pending: deque[Job[P, R]] = deque()  # live jobs only: a job nobody waits for is removed at once
        self.in_flight: dict[str, Unit[P, R]] = {}
        self.batch_ewma_s = 1.0
        self._has_work = asyncio.Event()
        self._workers: list[asyncio.Task[None]] = []
        self._draining: str | None = None

    @property
    def started(self) -> bool:
        return bool(self._workers)

    def start(self, workers: int) -> None:
        for n in range(workers):
            self._workers.append(asyncio.create_task(self._worker(n), name=f"redtrans-worker-{n}"))

    # -- callers -----------------------------------------------------------------------------------------
    def _enqueue(self, payloads: Mapping[str, P], deadline: float) -> list[Unit[P, R]]:
        """Put the keys not in flight yet on the queue as one job; the caller waits on every key's unit."""
        if self._draining is not None:
            raise Draining(self._draining)
        keys = list(payloads)
        fresh = [k for k in keys if k not in self.in_flight]
        if fresh:
            if len(self.pending) >= self.max_queue:
                raise QueueFull("the queue is full")
            loop = asyncio.get_running_loop()
            job: Job[P, R] = Job()
            job.units = [Unit(k, payloads[k], loop.create_future(), job) for k in fresh]
            for unit in job.units:
                self.in_flight[unit.key] = unit
            self.pending.append(job)
            self._has_work.set()
        units = [self.in_flight[k] for k in keys]
        for unit in units:
            unit.waiters += 1
            unit.deadline = max(unit.deadline, deadline)
        return units

    async def submit(self, payloads: Mapping[str, P], deadline: float) -> dict[str, Done[R]]:
        """Wait for every key's outcome until `deadline` (time.monotonic()); QueueFull, DeadlineExceeded."""
        units = self._enqueue(payloads, deadline)
        finished = False
        try:
            remaining = deadline - time.monotonic()
            if remaining > 0:
                await asyncio.wait([u.future for u in units], timeout=remaining)
            if all(u.future.done() for u in units):
                finished = True
                return {u.key: u.future.result() for u in units}
            raise DeadlineExceeded()
        finally:
            if not finished:  # deadline or the caller went away: let go of what nobody else waits for
                for unit in units:
                    self._release(unit)

    async def each(self, payloads: Mapping[str, P], deadline: float) -> AsyncGenerator[tuple[str, Done[R]], None]:
        """Each key's outcome in the order of `payloads`, as soon as it and those before it are done (a batch
        function that `settle`s keys early makes this progressive); QueueFull, DeadlineExceeded. Close it (or
        leave it by an exception) to let go of the keys not handed out yet."""
        units = self._enqueue(payloads, deadline)
        try:
            for unit in units:
                remaining = deadline - time.monotonic()
                if not unit.future.done() and remaining > 0:
                    await asyncio.wait([unit.future], timeout=remaining)
                if not unit.future.done():
                    raise DeadlineExceeded()
                yield unit.key, unit.future.result()
        finally:
            for unit in units:  # a done unit is only counted down
                self._release(unit)

    def settle(self, unit: Unit[P, R], done: Done[R]) -> None:
        """Answer one unit of a running batch before the batch ends (call on the loop)."""
        if self.in_flight.get(unit.key) is unit:
            del self.in_flight[unit.key]
        if not unit.future.done():
            unit.future.set_result(done)

    def _release(self, unit: Unit[P, R]) -> None:
        unit.waiters -= 1
        if unit.waiters > 0 or unit.future.done():
            return
        if self.in_flight.get(unit.key) is unit:
            del self.in_flight[unit.key]  # a new caller of this key starts afresh
        if unit.started:
            unit.abandoned = True
            self.on_cancel("batch", 1)
            return
        unit.future.cancel()
        self.on_cancel("queue", 1)
        job = unit.job
        if not job.taken and all(u.future.done() for u in job.units):
            job.taken = True
            with contextlib.suppress(ValueError):
                self.pending.remove(job)

    def retry_after(self, workers: int) -> int:
        """Seconds until a queued job would likely be taken (from the queue and recent batch times)."""
        waves = len(self.pending) / max(1, workers) + 1
        return max(1, min(120, int(waves * self.batch_ewma_s + 0.999)))

    # -- shutdown ----------------------------------------------------------------------------------------
    def drain(self, reason: str) -> None:
        """Refuse new work and answer every waiting caller now with `reason`; running batches are told to stop."""
        self._draining = reason
        now = time.monotonic()
        while self.pending:
            job = self.pending.popleft()
            job.taken = True
        for unit in list(self.in_flight.values()):
            unit.abandoned = True
            if not unit.future.done():
                unit.future.set_result(Done(None, now, 0.0, reason))
        self.in_flight.clear()

    async def stop(self) -> None:
        self.drain(self._draining or "shutting down")
        for task in self._workers:
            task.cancel()
        await asyncio.gather(*self._workers, return_exceptions=True)
        self._workers.clear()

    # -- workers -----------------------------------------------------------------------------------------
    async def _next_job(self, wait_s: float | None) -> Job[P, R] | None:
        """The oldest queued job; waits for one up to `wait_s` (None = forever, 0 = not at all)."""
        deadline = None if wait_s is None else time.monotonic() + wait_s
        while not self.pending:
            self._has_work.clear()
            if deadline is None:
                await self._has_work.wait()
                continue
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            try:
                await asyncio.wait_for(self._has_work.wait(), left)
            except TimeoutError:
                return None
        job = self.pending.popleft()
        job.taken = True
        return job

    async def _worker(self, index: int) -> None:
        while True:
            first = await self._next_job(None)
            assert first is not None
            jobs = [first]
            count = len(first.units)
            until = time.monotonic() + self.batch_wait_s
            while count < self.max_batch_items:
                job = await self._next_job(max(0.0, until - time.monotonic()))
                if job is None:
                    break
                jobs.append(job)
                count += len(job.units)
            started = time.monotonic()
            # Keys whose callers all gave up (deadline, disconnect) were cancelled: skip them.
            units = [u for j in jobs for u in j.units if not u.started and not u.future.done() and u.waiters > 0]
            if not units:
                continue
            for unit in units:
                unit.started = True

            def cancelled(units: list[Unit[P, R]] = units) -> bool:  # settled units need no more work
                return all(u.abandoned or u.future.done() for u in units)

            results: Mapping[str, Done[R]] = {}
            try:
                results = await self.run_batch(index, units, cancelled)
            except asyncio.CancelledError:
                self._finish(units, {}, started, "shutting down")
                raise
            except Exception as exc:  # noqa: BLE001 - every waiting caller gets the error
                self._finish(units, {}, started, f"{type(exc).__name__}: {exc}")
            else:
                self._finish(units, results, started, "no result for this text")
            self.batch_ewma_s = 0.8 * self.batch_ewma_s + 0.2 * (time.monotonic() - started)

    def _finish(self, units: list[Unit[P, R]], results: Mapping[str, Done[R]], started: float, error: str) -> None:
        for unit in units:
            if self.in_flight.get(unit.key) is unit:
                del self.in_flight[unit.key]
            if not unit.future.done():
                unit.future.set_result(results.get(unit.key) or Done(None, started, 0.0, error))
