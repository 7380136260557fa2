"""The one latency-timing loop: warm-up calls, then timed calls in interleaved rounds, with an injectable
clock. `tledge bench` (one backend: a round is one call, repeated for `min_time`) and export's INT8
latency comparison (several models in alternating rounds, so a noisy minute on a shared host hits them
all alike) both time through `time_calls`; `medians` reduces the samples.
"""

from __future__ import annotations

import statistics
import time
from typing import Callable, Mapping

Clock = Callable[[], float]


def time_calls(calls: Mapping[str, Callable[[], object]], *, rounds: int = 1, runs: int = 1, warmup: int = 0,
               min_time: float = 0.0, clock: Clock = time.perf_counter,
               after: Callable[[str], None] | None = None) -> dict[str, list[float]]:
    """Milliseconds of each timed call, per name. First every call runs `warmup` times untimed (in the
    mapping's order); then each round runs every call `runs` times in turn. At least `rounds` rounds, and
    more until `min_time` seconds have passed since timing began. `after(name)` runs after each timed
    call, outside its time (e.g. to collect a GPU timer the call set)."""
    for call in calls.values():
        for _ in range(max(0, warmup)):
            call()
    samples: dict[str, list[float]] = {name: [] for name in calls}
    began = clock()
    done = 0
    while done < max(1, rounds) or clock() - began < min_time:
        for name, call in calls.items():
            for _ in range(max(1, runs)):
                start = clock()
                call()
                samples[name].append((clock() - start) * 1000.0)
                if after is not None:
                    after(name)
        done += 1
    return samples


def medians(samples: Mapping[str, list[float]]) -> dict[str, float]:
    """The median of each name's samples."""
    return {name: float(statistics.median(values)) for name, values in samples.items()}
