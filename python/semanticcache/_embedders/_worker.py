"""One worker thread per in-process model, coalescing concurrent calls into batches.

A model on a small machine is fastest run one batch at a time (its runtime already uses
every core), and a batch of n short texts costs far less than n runs of one. So calls that
arrive while the worker is busy wait in a queue, and the worker's next run takes all of
them (up to ``max_texts``) as one batch, then hands each caller its own slice. Plain
threads and ``concurrent.futures`` futures keep it independent of any one event loop.
"""

from __future__ import annotations

import asyncio
import threading
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor

from semanticcache.errors import EmbedderError

__all__ = ["BatchingWorker"]


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
