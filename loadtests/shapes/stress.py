"""Stress: add users step by step until the SLO breaks, and report the knee,
the highest throughput (requests/s) of a step that still met the SLO.

    LOADTEST_STEP_USERS      users in the first step and added at each next
                             one (default 10)
    LOADTEST_STEP_SECONDS    length of a step (default 60)
    LOADTEST_SETTLE_SECONDS  start of each step left out of its judgement:
                             users are still starting (default 10)
    LOADTEST_SPAWN_RATE      users started per second (default 10)
    LOADTEST_MAX_USERS       stop after the step with this many users even if
                             the SLO still holds (default 500)
    LOADTEST_MIN_KNEE_RPS    the run fails when the knee is below this (default
                             0: any knee passes, only "no step met the SLO" fails)

Each step is judged on its own traffic (the difference of two snapshots of
the statistics, so it works the same on a master with workers, whose
statistics are the workers' reports, up to 3 s late) against --slo-file. The
first step that misses ends the run; "knee: X req/s at Y users" is logged,
and crmload.plugins writes it to knee.json and the report.
"""
import logging
import os
import sys
import time
from pathlib import Path

from locust import LoadTestShape

# crmload lives next to this folder; locust puts only the folder of each -f
# file on the path, and only while importing it.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from crmload.slo import SloConfig, StepResult, Tally, evaluate, find_knee, snapshot, window  # noqa: E402

logger = logging.getLogger(__name__)


class StressShape(LoadTestShape):
    def __init__(self):
        super().__init__()
        self.step_users = int(os.environ.get("LOADTEST_STEP_USERS", "10"))
        self.step_seconds = float(os.environ.get("LOADTEST_STEP_SECONDS", "60"))
        self.settle_seconds = float(os.environ.get("LOADTEST_SETTLE_SECONDS", "10"))
        self.spawn_rate = float(os.environ.get("LOADTEST_SPAWN_RATE", "10"))
        self.max_users = int(os.environ.get("LOADTEST_MAX_USERS", "500"))
        self.min_knee_rps = float(os.environ.get("LOADTEST_MIN_KNEE_RPS", "0"))
        # locust asks the shape every second: leave each step a judged window
        # that a tick surely falls into.
        if self.step_seconds - self.settle_seconds < 2:
            raise ValueError("LOADTEST_SETTLE_SECONDS must be at least 2 s shorter than LOADTEST_STEP_SECONDS")
        # Read by crmload.plugins: its presence makes the run judged by its knee.
        self.stress_steps: list[StepResult] = []
        self._step = 0
        self._window_start = None  # (unix time, statistics snapshot) once settled
        self._slo = None

    def tick(self):
        run_time = self.get_run_time()
        step = int(run_time // self.step_seconds)
        if step != self._step:
            if not self._judge_step():
                return None
            self._step, self._window_start = step, None
        if self._window_start is None and run_time - step * self.step_seconds >= self.settle_seconds:
            self._window_start = (time.time(), snapshot(self.runner.environment.stats))
        return self._users(self._step), self.spawn_rate

    def _users(self, step: int) -> int:
        return self.step_users * (step + 1)

    def _judge_step(self) -> bool:
        """Record the step that just ended; True to go on to the next one."""
        if self._slo is None:
            self._slo = SloConfig.load(self.runner.environment.parsed_options.slo_file)
        users = self._users(self._step)
        started, earlier = self._window_start
        traffic = window(earlier, snapshot(self.runner.environment.stats))
        seconds = time.time() - started
        requests = sum(traffic.values(), Tally()).requests
        misses = evaluate(traffic, self._slo).misses if requests else ["no request completed in the step"]
        result = StepResult(users, seconds, requests / seconds, passed=not misses, misses=misses)
        self.stress_steps.append(result)
        logger.info("stress step: %d users, %.1f req/s, SLO %s%s", users, result.requests_per_second,
                    "met" if result.passed else "missed: ", "; ".join(misses))
        if result.passed and users + self.step_users <= self.max_users:
            return True
        knee = find_knee(self.stress_steps)
        if knee is None:
            logger.warning("knee: none, the first step (%d users) already missed the SLO", users)
        else:
            logger.warning("knee: %.1f req/s at %d users%s", knee.requests_per_second, knee.users,
                           "" if not result.passed else " (LOADTEST_MAX_USERS reached, SLO still met)")
        return False
