"""Service-level objectives for load runs: which requests belong to which
endpoint group, and whether a window of traffic met each group's objective.

Locust keeps, per request name, a histogram of response times (milliseconds,
rounded to about two significant digits, mapped to a count). A group's
percentiles come from the sum of its members' histograms: averaging the
members' percentiles would let a fast, busy endpoint hide a slow one.

Everything here is plain Python over plain data, so the SLO gate, the stress
shape and the unit tests share one definition of "met the SLO".
"""
from __future__ import annotations

import fnmatch
import math
import tomllib
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class Tally:
    """Requests, failures and the response-time histogram of some traffic."""

    requests: int = 0
    failures: int = 0
    response_times: Counter = field(default_factory=Counter)

    def __add__(self, other: Tally) -> Tally:
        return Tally(self.requests + other.requests, self.failures + other.failures,
                     self.response_times + other.response_times)

    def __sub__(self, earlier: Tally) -> Tally:
        # Counter subtraction drops buckets that end at zero, which is what a
        # histogram of the traffic between two snapshots should do.
        return Tally(self.requests - earlier.requests, self.failures - earlier.failures,
                     self.response_times - earlier.response_times)

    @property
    def error_ratio(self) -> float:
        return self.failures / self.requests if self.requests else 0.0

    def percentile(self, fraction: float) -> float:
        """The smallest response time that `fraction` of the requests did not
        exceed (nearest rank), 0 for no requests."""
        total = sum(self.response_times.values())
        if not total:
            return 0
        rank = max(1, math.ceil(fraction * total))
        seen = 0
        for response_time in sorted(self.response_times):
            seen += self.response_times[response_time]
            if seen >= rank:
                return response_time
        return max(self.response_times)


# (method, name) -> Tally: one entry per row of locust's statistics table.
RequestTallies = dict[tuple[str, str], Tally]


def snapshot(stats) -> RequestTallies:
    """Copy the cumulative counts out of locust's RequestStats. On a master
    these are the sums of every worker's reports."""
    # (locust's own keys are (name, method): ours read in the order of a request line)
    return {
        (entry.method, entry.name): Tally(entry.num_requests, entry.num_failures, Counter(entry.response_times))
        for entry in stats.entries.values()
    }


def window(earlier: RequestTallies, later: RequestTallies) -> RequestTallies:
    """The traffic between two snapshots of one run."""
    return {key: tally - earlier.get(key, Tally()) for key, tally in later.items()}


@dataclass(frozen=True)
class Objective:
    group: str
    patterns: tuple[str, ...]
    p95_ms: float
    p99_ms: float
    max_error_ratio: float

    def matches(self, method: str, name: str) -> bool:
        label = f"{method} {name}"
        return any(fnmatch.fnmatchcase(label, pattern) for pattern in self.patterns)


@dataclass(frozen=True)
class SloConfig:
    objectives: tuple[Objective, ...]
    # A group with fewer requests in a window has no meaningful p99: it is
    # shown, but neither passes nor fails.
    min_requests: int = 20

    @classmethod
    def load(cls, path: str | Path) -> SloConfig:
        with open(path, "rb") as file:
            return cls.from_dict(tomllib.load(file))

    @classmethod
    def from_dict(cls, data: dict) -> SloConfig:
        objectives = tuple(
            Objective(group["name"], tuple(group["patterns"]), float(group["p95_ms"]),
                      float(group["p99_ms"]), float(group["max_error_ratio"]))
            for group in data["group"]
        )
        return cls(objectives, int(data.get("min_requests", cls.min_requests)))

    def objective_for(self, method: str, name: str) -> Objective | None:
        """The first group whose patterns match: order in the file matters."""
        return next((o for o in self.objectives if o.matches(method, name)), None)


def group_tallies(tallies: RequestTallies, config: SloConfig) -> dict[str, Tally]:
    """Merge the per-request tallies into one tally per endpoint group.
    Requests no group matches are left out (slo.toml ends with a catch-all)."""
    groups: dict[str, Tally] = {}
    for (method, name), tally in tallies.items():
        objective = config.objective_for(method, name)
        if objective is not None:
            groups[objective.group] = groups.get(objective.group, Tally()) + tally
    return groups


@dataclass
class GroupResult:
    group: str
    requests: int
    p95_ms: float
    p99_ms: float
    error_ratio: float
    objective: Objective
    misses: list[str]
    enough_data: bool

    @property
    def status(self) -> str:
        if not self.enough_data:
            return "no data"
        return "FAIL" if self.misses else "pass"


@dataclass
class Verdict:
    results: list[GroupResult]

    @property
    def passed(self) -> bool:
        return not any(result.misses for result in self.results)

    @property
    def misses(self) -> list[str]:
        return [f"{r.group}: {miss}" for r in self.results for miss in r.misses]

    def to_dict(self) -> dict:
        return {
            "passed": self.passed,
            "groups": [
                {"group": r.group, "requests": r.requests, "p95_ms": r.p95_ms, "p99_ms": r.p99_ms,
                 "error_ratio": r.error_ratio, "status": r.status, "misses": r.misses,
                 "objective": {"p95_ms": r.objective.p95_ms, "p99_ms": r.objective.p99_ms,
                               "max_error_ratio": r.objective.max_error_ratio}}
                for r in self.results
            ],
        }


def format_verdict(verdict: dict) -> str:
    """A verdict (Verdict.to_dict()) as a fixed-width table for the console."""
    header = f"{'group':<10} {'requests':>9} {'p95 ms':>13} {'p99 ms':>13} {'errors':>15}  status"
    lines = [header, "-" * len(header)]
    for g in verdict["groups"]:
        o = g["objective"]
        lines.append(f"{g['group']:<10} {g['requests']:>9} {g['p95_ms']:>6.0f}/{o['p95_ms']:<6.0f} "
                     f"{g['p99_ms']:>6.0f}/{o['p99_ms']:<6.0f} "
                     f"{g['error_ratio']:>7.2%}/{o['max_error_ratio']:<7.2%}  {g['status']}")
    return "\n".join(lines)


def evaluate(tallies: RequestTallies, config: SloConfig) -> Verdict:
    """Check each endpoint group that saw traffic against its objective."""
    groups = group_tallies(tallies, config)
    results = []
    for objective in config.objectives:
        tally = groups.get(objective.group)
        if tally is None or tally.requests == 0:
            continue
        p95, p99 = tally.percentile(0.95), tally.percentile(0.99)
        enough_data = tally.requests >= config.min_requests
        misses = []
        if enough_data:
            if p95 > objective.p95_ms:
                misses.append(f"p95 {p95:.0f} ms > {objective.p95_ms:.0f} ms")
            if p99 > objective.p99_ms:
                misses.append(f"p99 {p99:.0f} ms > {objective.p99_ms:.0f} ms")
            if tally.error_ratio > objective.max_error_ratio:
                misses.append(f"errors {tally.error_ratio:.2%} > {objective.max_error_ratio:.2%}")
        results.append(GroupResult(objective.group, tally.requests, p95, p99, tally.error_ratio,
                                   objective, misses, enough_data))
    return Verdict(results)


@dataclass
class StepResult:
    """One step of a stress run: its load and whether it met the SLO."""

    users: int
    seconds: float
    requests_per_second: float
    passed: bool
    misses: list[str] = field(default_factory=list)


def find_knee(steps: list[StepResult]) -> StepResult | None:
    """The step with the highest throughput among those before the first
    step that missed the SLO: the most load the system carried within it.
    None when even the first step missed."""
    knee = None
    for step in steps:
        if not step.passed:
            break
        if knee is None or step.requests_per_second > knee.requests_per_second:
            knee = step
    return knee
