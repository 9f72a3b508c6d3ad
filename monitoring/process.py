"""This process's gauges: resident memory, CPU use since the last sample, in-flight exchanges.

Read from the kernel without a dependency: ``/proc/self/statm`` for the resident set (Linux;
elsewhere ``getrusage``'s peak, the best the platform offers) and ``os.times()`` for CPU time.
CPU percent is CPU seconds over wall seconds between two samples, so 100 means one core busy
the whole interval (a process with many threads may exceed 100).

    >>> meter = CpuMeter()
    >>> meter.percent_since_last() >= 0.0
    True
"""

from __future__ import annotations

import json
import os
import resource
import socket
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

from performance.capacity import in_flight

STATM_PATH = "/proc/self/statm"


@dataclass(frozen=True, slots=True)
class ProcessGauges:
    process: str  # "<host>:<pid>", unique across machines
    host: str
    pid: int
    rss_bytes: int
    cpu_percent: float
    in_flight: int
    at: float  # epoch seconds of the sample

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> ProcessGauges:
        return cls(**json.loads(text))


def process_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def resident_memory_bytes() -> int:
    """The resident set size now (Linux), else the peak one (``ru_maxrss``)."""
    try:
        with open(STATM_PATH) as statm:
            resident_pages = int(statm.read().split()[1])
        return resident_pages * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return peak if sys.platform == "darwin" else peak * 1024  # macOS counts bytes, Linux KiB


def cpu_seconds() -> float:
    times = os.times()
    return times.user + times.system


class CpuMeter:
    """CPU use between consecutive samples; the first one covers the time since creation."""

    def __init__(self, clock: Callable[[], float] = time.monotonic, cpu: Callable[[], float] = cpu_seconds) -> None:
        self._clock = clock
        self._cpu = cpu
        self._lock = threading.Lock()
        self._last = (clock(), cpu())

    def percent_since_last(self) -> float:
        now, used = self._clock(), self._cpu()
        with self._lock:
            (then, used_then), self._last = self._last, (now, used)
        elapsed = now - then
        return round(100.0 * (used - used_then) / elapsed, 1) if elapsed > 0 else 0.0


_cpu_meter = CpuMeter()


def sample_process_gauges(now: float | None = None) -> ProcessGauges:
    """This process's gauges now (``now``: epoch seconds, injectable)."""
    return ProcessGauges(
        process=process_name(),
        host=socket.gethostname(),
        pid=os.getpid(),
        rss_bytes=resident_memory_bytes(),
        cpu_percent=_cpu_meter.percent_since_last(),
        in_flight=in_flight.current,
        at=time.time() if now is None else now,
    )
