"""The stress shape's steps and knee, and how a run is judged (crmload.plugins),
on a simulated system: a fake clock and statistics fed by a traffic model."""
from collections import Counter
from pathlib import Path
from types import SimpleNamespace

import pytest

from crmload.plugins import RunState, judge
from crmload.slo import SloConfig, StepResult, find_knee, snapshot

LOADTESTS = Path(__file__).resolve().parents[2]
SLO = SloConfig.load(LOADTESTS / "slo.toml")


def test_the_knee_is_the_best_step_before_the_first_miss():
    steps = [StepResult(10, 50, 9.8, True), StepResult(20, 50, 19.5, True), StepResult(30, 50, 21.0, False),
             StepResult(40, 50, 25.0, True)]
    assert find_knee(steps).users == 20
    assert find_knee([StepResult(10, 50, 9.8, False)]) is None


class SimulatedSystem:
    """One request per user per second; fast up to `capacity` users, slow beyond."""

    def __init__(self, capacity):
        self.capacity = capacity
        self.now = 0.0
        self.entry = SimpleNamespace(method="GET", name="/api/v1/customers/{id}", num_requests=0,
                                     num_failures=0, response_times=Counter())
        self.stats = SimpleNamespace(entries={(self.entry.name, self.entry.method): self.entry})

    def serve_one_second(self, users):
        self.now += 1
        self.entry.num_requests += users
        self.entry.response_times[100 if users <= self.capacity else 2000] += users


def load_stress_shape(load_shape, monkeypatch, system, **env):
    module = load_shape("stress", **{"LOADTEST_STEP_USERS": "10", "LOADTEST_STEP_SECONDS": "10",
                                     "LOADTEST_SETTLE_SECONDS": "2", **env})
    monkeypatch.setattr(module, "time", SimpleNamespace(time=lambda: system.now))
    shape = module.StressShape()
    shape.get_run_time = lambda: system.now
    shape.runner = SimpleNamespace(environment=SimpleNamespace(
        stats=system.stats, parsed_options=SimpleNamespace(slo_file=str(LOADTESTS / "slo.toml"))))
    return shape


def run_shape(shape, system, limit=200):
    while (command := shape.tick()) is not None and system.now < limit:
        system.serve_one_second(command[0])


def fake_environment(system, shape):
    return SimpleNamespace(stats=system.stats, shape_class=shape, host="http://crm",
                           runner=SimpleNamespace(exceptions={}))


def finished_run(samples=(), ramp_up=None):
    """A run's state as the plugin keeps it; every user started at once unless ``ramp_up`` (the
    statistics when the last one had) says otherwise."""
    return RunState(started_at=0, ended_at=100, recorder=SimpleNamespace(rows=[]),
                    sampler=SimpleNamespace(samples=list(samples), unreachable={}),
                    ramp_up={} if ramp_up is None else ramp_up)


def test_stress_steps_up_until_the_slo_breaks_and_passes_with_the_knee(load_shape, monkeypatch):
    system = SimulatedSystem(capacity=20)
    shape = load_stress_shape(load_shape, monkeypatch, system)
    run_shape(shape, system)

    assert [(s.users, s.passed) for s in shape.stress_steps] == [(10, True), (20, True), (30, False)]
    assert system.now == 30  # stopped at the end of the first step that missed
    assert shape.stress_steps[1].requests_per_second == pytest.approx(20)

    run = judge(fake_environment(system, shape), SLO, finished_run())
    assert run["passed"], run["findings"]  # the whole run missed the SLO; the knee is what counts
    assert not run["verdict"]["passed"]
    assert run["stress"]["knee"]["users"] == 20


def test_stress_fails_when_the_knee_is_below_the_required_throughput(load_shape, monkeypatch):
    system = SimulatedSystem(capacity=20)
    shape = load_stress_shape(load_shape, monkeypatch, system, LOADTEST_MIN_KNEE_RPS="50")
    run_shape(shape, system)
    run = judge(fake_environment(system, shape), SLO, finished_run())
    assert not run["passed"]
    assert run["findings"] == ["stress: knee 20.0 req/s is below the required 50.0 req/s (LOADTEST_MIN_KNEE_RPS)"]


def test_stress_stops_at_max_users_when_the_slo_still_holds(load_shape, monkeypatch):
    system = SimulatedSystem(capacity=1000)
    shape = load_stress_shape(load_shape, monkeypatch, system, LOADTEST_MAX_USERS="30")
    run_shape(shape, system)
    assert [s.users for s in shape.stress_steps] == [10, 20, 30]
    assert all(s.passed for s in shape.stress_steps)


def test_a_steady_run_fails_on_a_missed_objective_and_says_which():
    system = SimulatedSystem(capacity=5)
    for _ in range(30):
        system.serve_one_second(10)
    run = judge(fake_environment(system, shape=None), SLO, finished_run())
    assert not run["passed"]
    assert run["findings"] == ["SLO missed by reads: p95 2000 ms > 300 ms",
                               "SLO missed by reads: p99 2000 ms > 800 ms"]


def test_a_slow_ramp_up_is_reported_apart_and_not_held_against_the_steady_state():
    system = SimulatedSystem(capacity=10)
    for _ in range(10):  # users signing in: slow
        system.serve_one_second(20)
    ramp_up = snapshot(system.stats)
    system.capacity = 100
    for _ in range(30):
        system.serve_one_second(20)
    run = judge(fake_environment(system, shape=None), SLO, finished_run(ramp_up=ramp_up))
    assert run["passed"], run["findings"]
    [steady] = run["verdict"]["groups"]
    assert (steady["requests"], steady["p95_ms"]) == (600, 100)
    [ramp] = run["ramp_up"]["groups"]
    assert (ramp["requests"], ramp["p95_ms"], ramp["status"]) == (200, 2000, "FAIL")


def test_a_run_that_ends_before_every_user_started_has_no_steady_state_and_fails():
    system = SimulatedSystem(capacity=100)
    for _ in range(30):
        system.serve_one_second(10)
    state = finished_run()
    state.ramp_up = None
    run = judge(fake_environment(system, shape=None), SLO, state)
    assert not run["passed"]
    assert run["findings"][0].startswith("the run ended before every user had started")


def test_a_soak_fails_naming_the_service_whose_memory_keeps_growing():
    system = SimulatedSystem(capacity=100)
    for _ in range(30):
        system.serve_one_second(10)
    soak = SimpleNamespace(memory_warmup_seconds=30, max_memory_growth=0.10)
    samples = [{"t": t, "service": service, "rss_bytes": (100 + (t if service == "sales" else 0)) * 2**20,
                "cpu_seconds": 1.0} for t in range(0, 101, 5) for service in ("sales", "customers")]
    run = judge(fake_environment(system, soak), SLO, finished_run(samples))
    assert not run["passed"]
    [finding] = run["findings"]
    assert finding.startswith("memory keeps growing: sales: memory 130 MB -> 200 MB")


def commands(shape, seconds, users=None, spawn_rate=None, run_time=None):
    """What the shape asks for at each whole second of the run, given
    locust's -u, -r and -t."""
    shape.runner = SimpleNamespace(environment=SimpleNamespace(parsed_options=SimpleNamespace(
        num_users=users, spawn_rate=spawn_rate, run_time=run_time)))
    commands = []
    for second in range(seconds):
        shape.get_run_time = lambda: second
        commands.append(shape.tick())
    return commands


def test_steady_holds_its_users_until_the_time_is_up(load_shape):
    shape = load_shape("steady", LOADTEST_USERS="7", LOADTEST_SPAWN_RATE="2", LOADTEST_SECONDS="3").SteadyShape()
    assert commands(shape, 4) == [(7, 2.0), (7, 2.0), (7, 2.0), None]


def test_steady_takes_locusts_own_options_when_no_variable_is_set(load_shape):
    shape = load_shape("steady").SteadyShape()
    assert commands(shape, 3, users=9, spawn_rate=3, run_time=2) == [(9, 3.0), (9, 3.0), None]


def test_spike_jumps_up_and_comes_back_to_the_baseline(load_shape):
    shape = load_shape("spike", LOADTEST_USERS="5", LOADTEST_SPIKE_USERS="40", LOADTEST_SPAWN_RATE="1",
                       LOADTEST_SPIKE_RATE="20", LOADTEST_BASELINE_SECONDS="2", LOADTEST_SPIKE_SECONDS="2",
                       LOADTEST_RECOVERY_SECONDS="2").SpikeShape()
    assert commands(shape, 7) == [(5, 1.0), (5, 1.0), (40, 20.0), (40, 20.0), (5, 20.0), (5, 20.0), None]


def test_a_run_that_sent_nothing_fails():
    system = SimulatedSystem(capacity=5)  # no second served: no request at all
    run = judge(fake_environment(system, shape=None), SLO, finished_run())
    assert not run["passed"]
    assert run["findings"] == [f"no endpoint group saw enough requests to be judged (fewer than "
                               f"{SLO.min_requests} each): the run tested nothing"]
