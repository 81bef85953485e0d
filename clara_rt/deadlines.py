"""Deadlines: the timeouts of a runtime's jobs, watched by one thread.

``add(job, timeout)`` files the job's deadline in a heap (started lazily: a runtime whose jobs
never time out has no such thread); the thread sleeps until the earliest deadline and calls
``expire(job)`` (the runtime stops the job as ``timed_out``) for each one that passes while its
job is still unfinished. Jobs are held by weak reference, so a finished job, its values and its
pipeline never wait here for their deadline. ``close`` ends the thread.
"""

from __future__ import annotations

import heapq
import itertools
import threading
import time
import weakref
from collections.abc import Callable

from clara_rt.job import Job

__all__ = ["Deadlines"]

# A far deadline (timeout=1e12) is waited for in steps: Condition.wait overflows past
# threading.TIMEOUT_MAX and would end the thread.
_MAX_WAIT_S = 3600.0


class Deadlines:
    """Timeouts of jobs; ``expire(job)`` is called on the watcher thread, without its lock."""

    def __init__(self, expire: Callable[[Job], object]) -> None:
        self._expire = expire
        self._lock = threading.Lock()
        self._cv = threading.Condition(self._lock)
        self._heap: list[tuple[float, int, weakref.ref[Job]]] = []
        self._seq = itertools.count()
        self._thread: threading.Thread | None = None
        self._closed = False

    def add(self, job: Job, timeout: float) -> None:
        """Stop ``job`` ``timeout`` seconds from now unless it has finished by then."""
        with self._lock:
            heapq.heappush(self._heap, (time.monotonic() + timeout, next(self._seq),
                                        weakref.ref(job)))
            if self._thread is None:
                self._thread = threading.Thread(target=self._watch, name="clara-rt-deadlines",
                                                daemon=True)
                self._thread.start()
            self._cv.notify()

    def close(self) -> None:
        """End the watcher thread (deadlines not passed yet are dropped)."""
        with self._lock:
            self._closed = True
            self._cv.notify_all()
            thread = self._thread
        if thread is not None:
            thread.join()

    def __len__(self) -> int:
        return len(self._heap)

    def _watch(self) -> None:
        while (job := self._next_expired()) is not None:
            self._expire(job)

    def _next_expired(self) -> Job | None:
        """Wait for the next deadline that passes on an unfinished job; None once closed."""
        heap = self._heap
        with self._lock:
            while not self._closed:
                now = time.monotonic()
                while heap and _finished(heap[0][2]()):
                    heapq.heappop(heap)
                if heap and heap[0][0] <= now:
                    job = heapq.heappop(heap)[2]()
                    if job is not None:
                        return job
                    continue
                wait = heap[0][0] - now if heap else None
                self._cv.wait(None if wait is None else min(wait, _MAX_WAIT_S))
        return None


def _finished(job: Job | None) -> bool:
    return job is None or job._done.is_set()
