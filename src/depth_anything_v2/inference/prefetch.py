"""Bounded read-ahead, shared by the folder pipeline, pseudo-labelling and video.

Two shapes of work need it:

- :func:`prefetch_map`: independent items (files) loaded by a thread pool, at most ``ahead`` in flight, results
  in input order. Image decoding releases the GIL, so threads overlap it with the model.
- :class:`Background`: one sequential iterator (a video decoder) run in its own thread, at most ``maxsize``
  items ahead.

Both keep memory bounded by their window, whatever the number of items.
"""

from __future__ import annotations

import queue
import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, TypeVar

T = TypeVar("T")
R = TypeVar("R")


def prefetch_map(
    fn: Callable[[T], R],
    items: Iterable[T],
    *,
    workers: int,
    ahead: int,
    catch: tuple[type[BaseException], ...] = (Exception,),
) -> Iterator[tuple[T, R | BaseException]]:
    """``(item, fn(item))`` in the order of ``items``, computed by ``workers`` threads at most ``ahead`` items in
    advance. An exception of a type in ``catch`` is yielded in place of the result (one bad file costs only
    itself); others propagate. ``workers <= 0`` runs ``fn`` inline, with no thread.

    Leaving the generator early cancels what has not started and waits for what has.
    """
    if ahead < 1:
        raise ValueError(f"expected ahead >= 1, got {ahead}")

    def call(item: T) -> R | BaseException:
        try:
            return fn(item)
        except catch as e:
            return e

    if workers <= 0:
        for item in items:
            yield item, call(item)
        return
    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="prefetch")
    pending: deque[tuple[T, Future]] = deque()
    try:
        for item in items:
            pending.append((item, pool.submit(call, item)))
            if len(pending) >= ahead:
                first, future = pending.popleft()
                yield first, future.result()
        while pending:
            first, future = pending.popleft()
            yield first, future.result()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


class Background:
    """Runs an iterator in a daemon thread, at most ``maxsize`` items ahead; its errors re-raise when reached.

    Call :meth:`close` when done (also after an error), which stops the thread even if it is blocked on a full
    queue.
    """

    def __init__(self, iterable: Iterable[Any], maxsize: int, name: str) -> None:
        self._queue: queue.Queue = queue.Queue(maxsize)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(iter(iterable),), name=name, daemon=True)
        self._thread.start()

    def _put(self, item: tuple[bool, Any]) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _run(self, it: Iterator) -> None:
        try:
            for item in it:
                if not self._put((True, item)):
                    return
            self._put((False, None))
        except BaseException as e:
            self._put((False, e))

    def __iter__(self) -> Iterator:
        while True:
            ok, item = self._queue.get()
            if ok:
                yield item
            elif item is None:
                return
            else:
                raise item

    def close(self) -> None:
        """Stop the thread (it may be blocked on a full queue) and wait for it."""
        self._stop.set()
        self._thread.join()
