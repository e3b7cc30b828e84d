"""The fair gate: one turn at the models at a time, short work before long clips' next batch."""

from __future__ import annotations

import threading
import time

import pytest

from decodemo.service.gate import LONG, SHORT, FairGate

CHUNK = 0.05  # seconds one batch of a long clip's windows takes here


def _long_clip(gate: FairGate, chunks: int, log: list, name: str, started: threading.Event | None = None) -> None:
    with gate.turn(LONG) as turn:
        if started is not None:
            started.set()
        for _ in range(chunks):
            time.sleep(CHUNK)
            log.append(name)
            turn.pause()


def test_a_short_request_waits_about_one_batch_behind_any_number_of_long_clips():
    gate, log, started = FairGate(slots=1), [], threading.Event()
    longs = [threading.Thread(target=_long_clip, args=(gate, 15, log, f"long{i}", started if i == 0 else None))
             for i in range(3)]
    for t in longs:
        t.start()
    assert started.wait(5)
    time.sleep(3 * CHUNK)
    waits = []
    for _ in range(3):  # three small requests, one after another, while three long clips hold the gate
        t0 = time.perf_counter()
        with gate.turn(SHORT):
            waits.append(time.perf_counter() - t0)
            log.append("short")
        time.sleep(CHUNK)
    for t in longs:
        t.join(30)
    assert max(waits) < 4 * CHUNK, waits  # one batch (plus scheduling), not 3 x 15 batches
    assert log.count("short") == 3 and log.index("short") < 15  # served while the first long clip still ran
    # the long clips run one after another in arrival order: no clip is split among the others
    firsts = [log.index(f"long{i}") for i in range(3)]
    assert firsts == sorted(firsts)


def test_long_work_does_not_pause_for_other_long_work_and_slots_are_kept():
    gate = FairGate(slots=2)
    inside, peak, lock = [0], [0], threading.Lock()

    def work():  # while holding a turn
        with lock:
            inside[0] += 1
            peak[0] = max(peak[0], inside[0])
        time.sleep(CHUNK)
        with lock:
            inside[0] -= 1

    def job(priority):
        with gate.turn(priority) as turn:
            work()
            turn.pause()
            work()

    threads = [threading.Thread(target=job, args=(p,)) for p in (LONG, LONG, SHORT, LONG, SHORT, SHORT)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert peak[0] == 2 and inside[0] == 0 and gate.waiting() == 0
    with pytest.raises(ValueError):
        FairGate(slots=0)


def test_an_error_inside_a_turn_gives_it_back():
    gate = FairGate()
    with pytest.raises(RuntimeError):
        with gate.turn(SHORT):
            raise RuntimeError("model failed")
    done = threading.Event()
    threading.Thread(target=lambda: (gate.turn(SHORT).__enter__(), done.set())).start()
    assert done.wait(2)
