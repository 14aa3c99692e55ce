"""In-process models on one worker thread each, coalescing concurrent calls into batches.

A model on a small machine is fastest run one batch at a time (its runtime already uses
every core), and a batch of n short texts costs far less than n runs of one. So calls that
arrive while the worker is busy wait in a queue, and the worker's next run takes all of
them (up to ``max_texts``) as one batch, then hands each caller its own slice. Plain
threads and ``concurrent.futures`` futures keep it independent of any one event loop.
"""

from __future__ import annotations

import abc
import asyncio
import threading
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Final

from semanticcache._embedders.base import BaseEmbedder, check_types
from semanticcache.errors import EmbedderError

__all__ = ["BatchingWorker", "WorkerEmbedder"]


# Concurrent calls merged into one worker run, at most (two batches of 32).
COALESCE_MAX_TEXTS: Final = 64


class BatchingWorker[In, Out]:
    """Runs ``run(items)`` on one thread, merging queued calls into batches; ``run``
    returns one answer per item, in order."""

    def __init__(
        self, run: Callable[[list[In]], list[Out]], *, max_texts: int, thread_name: str
    ) -> None:
        self._run = run
        self._max_texts = max_texts
        self._lock = threading.Lock()
        self._pending: deque[tuple[list[In], Future[list[Out]]]] = deque()
        self._draining = False
        self._executor: ThreadPoolExecutor | None = ThreadPoolExecutor(
            max_workers=1, thread_name_prefix=thread_name
        )

    async def submit(self, texts: list[In], owner: object) -> list[Out]:
        """``run``'s answers for ``texts``, computed on the worker thread."""
        future: Future[list[Out]] = Future()
        with self._lock:
            executor = self._executor
            if executor is None:
                raise EmbedderError(f"{owner!r} is closed")
            self._pending.append((texts, future))
            start = not self._draining
            self._draining = True
        if start:
            try:
                executor.submit(self._drain)
            except RuntimeError:  # closed between the check above and here
                with self._lock:
                    self._draining = False
                raise EmbedderError(f"{owner!r} is closed") from None
        return await asyncio.wrap_future(future)

    def _drain(self) -> None:
        while True:
            with self._lock:
                if not self._pending:
                    self._draining = False
                    return
                taken: list[tuple[list[In], Future[list[Out]]]] = []
                count = 0
                while self._pending and (
                    not taken or count + len(self._pending[0][0]) <= self._max_texts
                ):
                    texts, future = self._pending.popleft()
                    # A caller that was cancelled while queued gets no share of the work.
                    if future.set_running_or_notify_cancel():
                        taken.append((texts, future))
                        count += len(texts)
            if taken:
                self._serve(taken)

    def _serve(self, taken: list[tuple[list[In], Future[list[Out]]]]) -> None:
        try:
            vectors = self._run([text for texts, _ in taken for text in texts])
        except BaseException as exc:  # handed to every caller of this batch
            for _, future in taken:
                future.set_exception(exc)
            return
        start = 0
        for texts, future in taken:
            future.set_result(vectors[start : start + len(texts)])
            start += len(texts)

    def close(self) -> None:
        """Stop accepting work; queued calls still get their answers. Idempotent."""
        with self._lock:
            executor, self._executor = self._executor, None
        if executor is not None:
            executor.shutdown(wait=False)

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called."""
        return self._executor is None


class WorkerEmbedder(BaseEmbedder):
    """An embedder whose model runs in this process, on a worker thread of its own (never
    on the event loop). Subclasses compute vectors in :meth:`_embed_now` and call
    :meth:`_start_worker` once the model is loaded."""

    _worker: BatchingWorker[str, list[float]]

    def _start_worker(self, thread_name: str) -> None:
        # Through embed_sync, looked up per run, so that a replaced one is the one called.
        self._worker = BatchingWorker(
            lambda texts: self.embed_sync(texts),
            max_texts=COALESCE_MAX_TEXTS,
            thread_name=thread_name,
        )

    async def embed(self, texts: Sequence[str]) -> list[list[float]]:
        """Embed ``texts`` on the embedder's worker thread; one unit vector per text.

        Calls that arrive while the worker is busy are run together as one batch."""
        if not texts:
            return []
        check_types(texts)
        return await self._worker.submit(list(texts), self)

    def embed_sync(self, texts: Sequence[str]) -> list[list[float]]:
        """Embed ``texts`` on the calling thread (blocking: not for the event loop)."""
        if not texts:
            return []
        check_types(texts)
        return self.check_output(len(texts), self._embed_now(texts))

    @abc.abstractmethod
    def _embed_now(self, texts: Sequence[str]) -> object:
        """The model's vectors for ``texts`` (checked by the caller); raises
        :class:`~semanticcache.errors.EmbedderError` when the model fails."""

    def close(self) -> None:
        """Stop the worker thread (after the runs already queued); idempotent."""
        self._worker.close()

    async def aclose(self) -> None:
        """Same as :meth:`close`."""
        self.close()
