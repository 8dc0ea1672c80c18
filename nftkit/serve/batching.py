"""Dynamic batching: concurrent requests for one reward are scored together.

Each served reward has an asyncio queue and one worker task. The worker takes the first waiting
request, then keeps taking requests until the batch holds ``max_batch`` images or ``max_wait``
seconds have passed since the first one, and runs the reward on the whole batch in its own
thread, so the event loop keeps accepting requests meanwhile. A request that would overflow the
batch waits for the next one. When a batch of several requests fails, each request is scored
alone, so that an error is reported to the request that caused it only.
"""

from __future__ import annotations

import asyncio
import contextlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from PIL import Image

from nftkit.rewards.base import RewardOutput


@dataclass
class BatchStats:
    """Counters of one reward's batches, reported by ``GET /health``."""

    requests: int = 0
    images: int = 0
    batches: int = 0
    max_batch_images: int = 0
    max_batch_requests: int = 0
    failed_requests: int = 0

    def as_dict(self) -> dict[str, int]:
        """JSON form of the counters."""
        return dict(self.__dict__)


@dataclass
class _Job:
    images: list[Image.Image]
    prompts: list[str]
    metadata: list[dict[str, Any]] | None
    future: asyncio.Future[RewardOutput] = field(repr=False)

    @property
    def size(self) -> int:
        return len(self.images)


class QueueFullError(Exception):
    """Too many images are already waiting for this reward; the client should retry later."""


class RewardBatcher:
    """A per-reward queue and the worker that scores its requests in batches."""

    def __init__(
        self,
        name: str,
        reward: Any,
        max_batch: int = 64,
        max_wait_s: float = 0.02,
        max_pending_images: int | None = None,
    ) -> None:
        if max_batch < 1:
            raise ValueError(f"max_batch must be >= 1, got {max_batch}")
        if max_wait_s < 0:
            raise ValueError(f"max_wait_s must be >= 0, got {max_wait_s}")
        self.name = name
        self.reward = reward
        self.max_batch = max_batch
        self.max_wait_s = max_wait_s
        self.max_pending_images = max_pending_images or 16 * max_batch
        self.stats = BatchStats()
        self._pending_images = 0
        self._queue: asyncio.Queue[_Job] | None = None
        self._task: asyncio.Task[None] | None = None
        self._carry: _Job | None = None
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"reward-{name}")

    def start(self) -> None:
        """Start the worker on the running event loop."""
        if self._task is not None:
            raise RuntimeError(f"batcher '{self.name}' already started")
        self._queue = asyncio.Queue()
        self._task = asyncio.get_running_loop().create_task(self._work(), name=f"batch-{self.name}")

    async def stop(self) -> None:
        """Stop the worker; requests still waiting fail with a RuntimeError."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        waiting = [self._carry] if self._carry is not None else []
        self._carry = None
        while self._queue is not None and not self._queue.empty():
            waiting.append(self._queue.get_nowait())
        for job in waiting:
            if not job.future.done():
                job.future.set_exception(RuntimeError("server is shutting down"))
        self._executor.shutdown(wait=False, cancel_futures=True)

    async def submit(
        self,
        images: list[Image.Image],
        prompts: list[str],
        metadata: list[dict[str, Any]] | None,
    ) -> RewardOutput:
        """Queue one request and wait for its own slice of a batch's output."""
        if self._queue is None:
            raise RuntimeError(f"batcher '{self.name}' is not started")
        if self._pending_images + len(images) > self.max_pending_images:
            raise QueueFullError(
                f"reward '{self.name}' has {self._pending_images} images waiting; retry later"
            )
        job = _Job(images, prompts, metadata, asyncio.get_running_loop().create_future())
        self._pending_images += job.size
        try:
            self._queue.put_nowait(job)
            return await job.future
        finally:
            self._pending_images -= job.size

    async def _next_batch(self) -> list[_Job]:
        """Collect jobs up to max_batch images or max_wait; a job that does not fit is kept."""
        assert self._queue is not None
        loop = asyncio.get_running_loop()
        first, self._carry = self._carry, None
        if first is None:
            first = await self._queue.get()
        jobs, size = [first], first.size
        deadline = loop.time() + self.max_wait_s
        while size < self.max_batch:
            try:
                job = self._queue.get_nowait()
            except asyncio.QueueEmpty:
                remaining = deadline - loop.time()
                if remaining <= 0:
                    break
                try:
                    job = await asyncio.wait_for(self._queue.get(), remaining)
                except TimeoutError:
                    break
            if job.future.done():  # the client went away while waiting
                continue
            if size + job.size > self.max_batch:
                self._carry = job
                break
            jobs.append(job)
            size += job.size
        return jobs

    async def _work(self) -> None:
        while True:
            jobs = await self._next_batch()
            jobs = [j for j in jobs if not j.future.done()]
            if jobs:
                await self._run(jobs)

    def _score(self, jobs: list[_Job]) -> RewardOutput:
        images = [im for j in jobs for im in j.images]
        prompts = [p for j in jobs for p in j.prompts]
        metadata = [m for j in jobs for m in (j.metadata or [{} for _ in j.images])]
        return self.reward(images, prompts, metadata)

    async def _run(self, jobs: list[_Job]) -> None:
        loop = asyncio.get_running_loop()
        size = sum(j.size for j in jobs)
        self.stats.batches += 1
        self.stats.requests += len(jobs)
        self.stats.images += size
        self.stats.max_batch_images = max(self.stats.max_batch_images, size)
        self.stats.max_batch_requests = max(self.stats.max_batch_requests, len(jobs))
        try:
            out = await loop.run_in_executor(self._executor, self._score, jobs)
        except Exception as exc:
            if len(jobs) == 1:
                self._fail(jobs[0], exc)
                return
            for job in jobs:  # find the request that caused the failure
                try:
                    alone = await loop.run_in_executor(self._executor, self._score, [job])
                except Exception as job_exc:
                    self._fail(job, job_exc)
                else:
                    self._resolve(job, alone)
            return
        start = 0
        for job in jobs:
            stop = start + job.size
            self._resolve(job, RewardOutput(out.scores[start:stop], out.details[start:stop]))
            start = stop

    def _resolve(self, job: _Job, out: RewardOutput) -> None:
        if not job.future.done():
            job.future.set_result(out)

    def _fail(self, job: _Job, exc: Exception) -> None:
        self.stats.failed_requests += 1
        if not job.future.done():
            job.future.set_exception(exc)
