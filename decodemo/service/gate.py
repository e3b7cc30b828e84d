"""Fair turns at the models: short work first, long clips chunk by chunk.

Every comparison runs its models inside a turn of the service's :class:`FairGate`: at most
``slots`` comparisons compute at once (one on a small CPU: two at once only slow each other
down), the others wait. Waiting turns are served by priority, then arrival: an image or a short
clip (:data:`SHORT`) before a long clip (:data:`LONG`). A long clip gives its turn back after
every batch of windows (:meth:`Turn.pause`) and queues again behind any short work that came
meanwhile, so a small image waits at most about one batch of windows (a second or two on 2 CPU
cores), however many long clips are running or waiting; the long clips share what is left in
arrival order.
"""

from __future__ import annotations

import heapq
import itertools
import threading
from contextlib import contextmanager
from typing import Iterator

__all__ = ["FairGate", "Turn", "SHORT", "LONG"]

SHORT = 0
LONG = 1


class FairGate:
    """``slots`` turns at a time, by (priority, arrival)."""

    def __init__(self, slots: int = 1) -> None:
        if slots < 1:
            raise ValueError("A gate needs at least one slot.")
        self.slots = int(slots)
        self._cond = threading.Condition()
        self._active = 0
        self._waiting: list[tuple[int, int]] = []  # heap of (priority, ticket)
        self._tickets = itertools.count()

    def waiting(self) -> int:
        with self._cond:
            return len(self._waiting)

    def _acquire(self, priority: int) -> None:
        with self._cond:
            me = (int(priority), next(self._tickets))
            heapq.heappush(self._waiting, me)
            try:
                while not (self._active < self.slots and self._waiting[0] == me):
                    self._cond.wait()
            except BaseException:
                self._waiting.remove(me)
                heapq.heapify(self._waiting)
                self._cond.notify_all()
                raise
            heapq.heappop(self._waiting)
            self._active += 1
            self._cond.notify_all()

    def _release(self) -> None:
        with self._cond:
            self._active -= 1
            self._cond.notify_all()

    @contextmanager
    def turn(self, priority: int = SHORT) -> Iterator["Turn"]:
        """Wait for a turn of ``priority`` and hold it for the ``with`` block."""
        self._acquire(priority)
        turn = Turn(self, priority)
        try:
            yield turn
        finally:
            if turn.held:
                self._release()


class Turn:
    """A held turn of a :class:`FairGate`."""

    def __init__(self, gate: FairGate, priority: int) -> None:
        self.gate, self.priority, self.held = gate, priority, True

    def pause(self) -> None:
        """Give the turn to whoever waits with a higher priority, and take it back after them
        (returns at once when nobody of higher priority waits)."""
        g = self.gate
        with g._cond:
            if not any(p < self.priority for p, _ in g._waiting):
                return
        self.held = False
        g._release()
        g._acquire(self.priority)
        self.held = True
