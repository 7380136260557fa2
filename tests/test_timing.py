"""The one timing loop (tledge.timing): warm-up untimed, interleaved rounds in a fixed order, exact
per-call milliseconds and medians on a fake clock, and min_time adding rounds."""

from __future__ import annotations

import pytest

from tledge.timing import medians, time_calls


class StepClock:
    """A clock that only moves when a fake call says how long it took."""

    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _fake_calls(clock, durations_ms: dict[str, list[float]], order: list[str]):
    remaining = {name: list(values) for name, values in durations_ms.items()}

    def make(name):
        def call():
            order.append(name)
            clock.now += remaining[name].pop(0) / 1000.0
        return call

    return {name: make(name) for name in durations_ms}


def test_interleaved_rounds_order_and_exact_medians():
    clock, order = StepClock(), []
    durations = {"fp32": [100.0, 100.0, 4.0, 6.0, 5.0, 9.0], "int8": [100.0, 2.0, 3.0, 1.0, 8.0]}
    calls = _fake_calls(clock, durations, order)
    after = []
    samples = time_calls(calls, rounds=2, runs=2, warmup=1, clock=clock, after=after.append)
    # warm-up once each (untimed, in order), then per round: fp32 twice, int8 twice
    assert order == ["fp32", "int8", "fp32", "fp32", "int8", "int8", "fp32", "fp32", "int8", "int8"]
    assert after == order[2:]
    assert samples["fp32"] == pytest.approx([100.0, 4.0, 6.0, 5.0])
    assert samples["int8"] == pytest.approx([2.0, 3.0, 1.0, 8.0])
    assert medians(samples) == pytest.approx({"fp32": 5.5, "int8": 2.5})


def test_min_time_adds_rounds_until_it_has_passed():
    clock, order = StepClock(), []
    calls = _fake_calls(clock, {"a": [400.0] * 10}, order)
    samples = time_calls(calls, rounds=1, min_time=1.0, clock=clock)
    assert samples["a"] == pytest.approx([400.0, 400.0, 400.0])  # 1.2 s ≥ 1.0 s after the third call
    assert medians(samples) == {"a": pytest.approx(400.0)}


def test_bench_time_backend_goes_through_the_loop():
    from tledge.runtime.bench import time_backend

    clock = StepClock()

    class Backend:
        last_gpu_ms = None
        calls = syncs = 0

        def predict(self, x):
            self.calls += 1
            clock.now += 0.003
            self.last_gpu_ms = 2.0 + self.calls

        def synchronize(self):
            self.syncs += 1
            clock.now += 0.001

    backend, gpu = Backend(), []
    samples = time_backend(backend, None, iters=3, warmup=2, min_time=0.0, clock=clock, gpu_ms=gpu)
    assert samples == pytest.approx([4.0, 4.0, 4.0])  # predict + synchronize inside each timed call
    assert backend.calls == 5 and backend.syncs == 5 and gpu == [5.0, 6.0, 7.0]
