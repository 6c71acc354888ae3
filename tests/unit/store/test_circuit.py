"""The circuit: after a failure, skip the store until a probe is due; one probe each interval."""

from __future__ import annotations

from gateway.store.circuit import Circuit
from tests.contract.conftest import FakeClock


def test_closed_allows_everything() -> None:
    circuit = Circuit(interval=1.0, clock=FakeClock())
    assert all(circuit.allows() for _ in range(100))
    assert not circuit.is_open and circuit.retry_after() == 0


def test_open_allows_one_probe_per_interval() -> None:
    clock = FakeClock()
    circuit = Circuit(interval=1.0, clock=clock)
    circuit.failed()
    assert circuit.is_open and circuit.failures == 1
    assert [circuit.allows() for _ in range(5)] == [False] * 5
    assert circuit.retry_after() == 1.0
    clock.now += 1.0
    assert [circuit.allows() for _ in range(5)] == [True, False, False, False, False]
    circuit.failed()  # the probe failed: the next one is an interval away
    clock.now += 0.5
    assert not circuit.allows()
    clock.now += 0.5
    assert circuit.allows()
    circuit.succeeded()
    assert not circuit.is_open and all(circuit.allows() for _ in range(5))


def test_a_probe_that_never_reports_does_not_wedge_the_circuit() -> None:
    clock = FakeClock()
    circuit = Circuit(interval=1.0, clock=clock)
    circuit.failed()
    clock.now += 1.0
    assert circuit.allows()  # the probe's request is cancelled: no success, no failure
    clock.now += 1.0
    assert circuit.allows()
