"""FairQueue: Clara's priority policy for queues outside the C++ scheduler.

The same policy as ``csrc/ready_queue.cpp`` (DESIGN, "Job priorities"), so that a job meets one
policy from the server's admission queue and the cluster's slot table down to every operator
dispatch:

* ``immediate`` items are served first, whenever there is one;
* ``high``, ``normal`` and ``low`` share the rest by smooth weighted round robin (nginx's; default
  4:2:1) among the classes that hold items: under saturation the shares are exactly the weights,
  and a lower class is served less often but never starved;
* within a class, first in, first out.

Choosing and charging are separate, as in the C++ ``select``/``commit``: :meth:`peek` says what
the policy would serve next without changing anything (a server may then find that the job does
not fit yet and wait), :meth:`pop` serves it and charges the round robin. :meth:`drop` removes the
head without charging it (an entry that went stale: cancelled while it waited).

Plain data, not thread-safe: the owner's lock guards it. An unknown priority is an error
(:class:`~clara_rt.errors.PriorityError`), never silently ``normal``.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from typing import Generic, TypeVar

from clara_rt.job import Priority

__all__ = ["FairQueue"]

T = TypeVar("T")

_IMMEDIATE = 0


class FairQueue(Generic[T]):
    """Items by Clara priority: immediate first, then high/normal/low by weight, FIFO in a class.

    Args:
        weights: Shares of ``high``, ``normal`` and ``low`` (each >= 1), as for ``Runtime``.

    Example::

        q = FairQueue[str]()
        q.push("low", "a"); q.push("high", "b"); q.push("immediate", "c")
        [q.pop() for _ in range(3)]  # ['c', 'b', 'a']
    """

    def __init__(self, weights: tuple[int, int, int] = (4, 2, 1)) -> None:
        if len(weights) != 3 or any(not isinstance(w, int) or w < 1 for w in weights):
            raise ValueError(f"weights must be three ints >= 1 (high, normal, low), got "
                             f"{weights!r}")
        self._weights: tuple[int, int, int] = (weights[0], weights[1], weights[2])
        self._current = [0, 0, 0]
        self._queues: tuple[deque[T], ...] = tuple(deque() for _ in Priority)

    def __len__(self) -> int:
        return sum(len(q) for q in self._queues)

    def __bool__(self) -> bool:
        return any(self._queues)

    def push(self, priority: Priority | str | int, item: T) -> None:
        """Queue ``item`` at the back of its class (PriorityError on an unknown priority)."""
        self._queues[Priority.parse(priority)].append(item)

    def peek(self) -> tuple[Priority, T] | None:
        """The class and item the policy serves next, or None when empty; changes nothing."""
        chosen = self._select()
        if chosen is None:
            return None
        return Priority(chosen), self._queues[chosen][0]

    def pop(self) -> T:
        """Serve the item :meth:`peek` names and charge its class (IndexError when empty)."""
        chosen = self._select()
        if chosen is None:
            raise IndexError("pop from an empty FairQueue")
        self._charge(chosen)
        return self._queues[chosen].popleft()

    def drop(self) -> T:
        """Remove the item :meth:`peek` names without charging its class (a stale entry)."""
        chosen = self._select()
        if chosen is None:
            raise IndexError("drop from an empty FairQueue")
        return self._queues[chosen].popleft()

    def take(self, item: T) -> None:
        """Serve ``item`` out of turn (it fitted where the head did not): remove it and charge
        its class as a dispatch. ValueError if it is not queued."""
        for index, queue in enumerate(self._queues):
            if item in queue:
                if index != _IMMEDIATE:
                    self._charge(index)
                queue.remove(item)
                return
        raise ValueError(f"{item!r} is not queued")

    def discard(self, item: T) -> None:
        """Remove ``item`` without charging its class (it went stale); nothing if not queued."""
        for queue in self._queues:
            if item in queue:
                queue.remove(item)
                return

    def ordered(self) -> Iterator[tuple[Priority, T]]:
        """Every item in the order the policy would serve them all (a simulation on a copy)."""
        clone: FairQueue[T] = FairQueue(self._weights)
        clone._current = list(self._current)
        clone._queues = tuple(deque(q) for q in self._queues)
        while (head := clone.peek()) is not None:
            clone.pop()
            yield head

    def depth(self) -> dict[str, int]:
        """Items per class, by name."""
        return {p.label: len(self._queues[p]) for p in Priority}

    def clear(self) -> None:
        for queue in self._queues:
            queue.clear()
        self._current = [0, 0, 0]

    # --- the policy (csrc/ready_queue.cpp: select, commit) ---------------------------------

    def _select(self) -> int | None:
        if self._queues[_IMMEDIATE]:
            return _IMMEDIATE
        best = None
        for i in range(3):
            if not self._queues[i + 1]:
                continue
            if best is None or (self._current[i] + self._weights[i]
                                > self._current[best] + self._weights[best]):
                best = i
        return None if best is None else best + 1

    def _charge(self, chosen: int) -> None:
        if chosen == _IMMEDIATE:
            return
        total = 0
        for i in range(3):
            if self._queues[i + 1]:
                self._current[i] += self._weights[i]
                total += self._weights[i]
        self._current[chosen - 1] -= total
