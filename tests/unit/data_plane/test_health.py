"""Health state machines (active probes, passive ejection) with an injected clock."""

from __future__ import annotations

from data_plane.health import TargetState, probe_ok
from data_plane.snapshot import HealthCheck, Passive


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_active_thresholds() -> None:
    check = HealthCheck(healthy_threshold=2, unhealthy_threshold=3)
    s = TargetState()
    assert not s.probe_result(False, check) and not s.probe_result(False, check)
    assert s.available
    assert s.probe_result(False, check)  # third failure: down
    assert not s.available and not s.healthy
    assert not s.probe_result(True, check)
    assert not s.probe_result(False, check) and not s.probe_result(True, check)  # a failure resets the count
    assert s.probe_result(True, check)
    assert s.available


def test_probe_status_expectations() -> None:
    assert probe_ok(200, HealthCheck()) and probe_ok(302, HealthCheck()) and not probe_ok(500, HealthCheck())
    teapot = HealthCheck(expected_statuses=(418,))
    assert probe_ok(418, teapot) and not probe_ok(200, teapot)


def test_passive_ejection_grows_and_ends_with_time() -> None:
    clock = Clock()
    passive = Passive(consecutive_failures=3, base_ejection_time=10, max_ejection_time=25, max_ejection_percent=100)
    s = TargetState(clock)
    peers = [s, TargetState(clock)]
    assert not s.report_failure(passive, peers) and not s.report_failure(passive, peers)
    s.failures = 0  # a success in between resets the streak
    assert not s.report_failure(passive, peers) and not s.report_failure(passive, peers)
    assert s.report_failure(passive, peers)
    assert not s.available and s.ejected_until == 1010
    clock.now = 1009.9
    assert not s.check_available()
    clock.now = 1010
    assert s.check_available()
    for _ in range(3):
        s.report_failure(passive, peers)
    assert s.ejected_until == 1010 + 20  # second ejection in a row: twice the base time
    clock.now = 1030
    assert s.check_available()
    for _ in range(3):
        s.report_failure(passive, peers)
    assert s.ejected_until == 1030 + 25  # capped at max_ejection_time
    clock.now = 1055 + 26  # behaved for longer than max_ejection_time: back to the base time
    assert s.check_available()
    for _ in range(3):
        s.report_failure(passive, peers)
    assert s.ejected_until == clock.now + 10


def test_max_ejection_percent_keeps_enough_targets() -> None:
    clock = Clock()
    passive = Passive(consecutive_failures=1, base_ejection_time=10, max_ejection_percent=50)
    peers = [TargetState(clock) for _ in range(4)]
    assert peers[0].report_failure(passive, peers) and peers[1].report_failure(passive, peers)
    assert not peers[2].report_failure(passive, peers)  # would be 3 of 4 ejected
    assert peers[2].available
    clock.now += 10
    assert peers[2].report_failure(passive, peers)  # the others' ejections ended


def test_active_verdict_and_ejection_combine() -> None:
    clock = Clock()
    s = TargetState(clock)
    s.report_failure(Passive(consecutive_failures=1, max_ejection_percent=100), [s])
    s.probe_result(False, HealthCheck(unhealthy_threshold=1))
    clock.now += 1000
    assert not s.check_available()  # ejection over, still failing probes
    s.probe_result(True, HealthCheck(healthy_threshold=1))
    assert s.available
