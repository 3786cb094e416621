"""The system page's CPU readings: measured from the first load on, the same whichever thread reads them."""

from __future__ import annotations

import threading
from collections import namedtuple

import pytest

from gophergate.admin.system import CpuMeter

# The fields of psutil.cpu_times() on Linux (guest time is also counted in user).
Times = namedtuple("Times", "user nice system idle iowait irq softirq steal guest guest_nice")


def times(busy: float, idle: float, guest: float = 0.0) -> Times:
    return Times(busy + guest, 0.0, 0.0, idle, 0.0, 0.0, 0.0, 0.0, guest, 0.0)


class FakeProcess:
    def __init__(self, readings: list[float]) -> None:
        self.readings = readings
        self.calls = 0

    def cpu_percent(self, interval: float | None) -> float:
        assert interval is None
        self.calls += 1
        return self.readings.pop(0)


class Host:
    def __init__(self, *samples: Times) -> None:
        self.samples = list(samples)

    def __call__(self) -> Times:
        return self.samples.pop(0)


def test_first_reading_waits_until_the_meter_has_measured_something() -> None:
    now = [100.0]
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        now[0] += seconds

    process = FakeProcess([0.0, 12.5])  # psutil's first (priming) call answers 0.0
    host = Host(times(100, 900), times(130, 970))  # 30 busy of 100: 30%
    meter = CpuMeter(process, host_times=host, clock=lambda: now[0], sleep=sleep, first_wait=0.25)
    now[0] += 0.05
    assert meter.read() == (30.0, 12.5)
    assert slept == [pytest.approx(0.2)]
    assert process.calls == 2


def test_later_readings_measure_since_the_previous_one_and_do_not_wait() -> None:
    slept: list[float] = []
    host = Host(times(0, 0), times(50, 50), times(50, 150), times(120, 160, guest=20))
    meter = CpuMeter(FakeProcess([0.0, 1.0, 2.0, 3.0]), host_times=host, clock=lambda: 0.0, sleep=slept.append)
    assert meter.read() == (50.0, 1.0)
    assert meter.read() == (0.0, 2.0)
    # 90 busy and 10 idle, the 20 of guest time inside user counted once (twice it would read 91.7%).
    assert meter.read() == (90.0, 3.0)
    assert len(slept) == 1  # only the first reading waited


def test_a_reading_too_soon_to_measure_repeats_the_previous_value() -> None:
    host = Host(times(0, 0), times(25, 75), times(25, 75))
    meter = CpuMeter(FakeProcess([0.0, 4.0, 4.0]), host_times=host, clock=lambda: 1.0, sleep=lambda s: None)
    assert meter.read()[0] == 25.0
    assert meter.read()[0] == 25.0


def test_readings_from_new_threads_are_not_zero() -> None:
    # asyncio.to_thread runs each request on any pool thread: psutil.cpu_percent(None) answers 0.0 on the
    # first call in each thread; the meter's state is per meter.
    host = Host(times(0, 0), times(60, 40), times(120, 80), times(180, 120))
    meter = CpuMeter(FakeProcess([0.0, 5.0, 5.0, 5.0]), host_times=host, clock=lambda: 9.0, sleep=lambda s: None)
    results: list[float] = []
    for _ in range(3):
        thread = threading.Thread(target=lambda: results.append(meter.read()[0]))
        thread.start()
        thread.join()
    assert results == [60.0, 60.0, 60.0]
