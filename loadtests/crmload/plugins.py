"""Locust plugins of the CRM load tests: the SLO gate, the service-metrics
sampler and the run report. Importing this module (the locustfile does)
registers them.

Options it adds to locust's command line:
  --slo-file      the objectives (default loadtests/slo.toml)
  --report-dir    where report.md, its charts and run.json go (default: the
                  folder of --csv, else var/loadtest/<UTC time>)
  --metrics-urls  the services' /metrics, "name=url,..." (default:
                  $LOADTEST_METRICS_URLS, else the ports of `make up`)

On the master (or a run without workers) it samples the run's statistics and
each service's /metrics while the test runs; when locust quits it judges the
run, prints the verdict, writes the report and sets the exit code: 0 when
every check passed, 1 otherwise (instead of locust's "1 if any request
failed", since the SLO says how many failures are acceptable). What a run is
judged on depends on the shape:
  - every run: each endpoint group's p95, p99 and error ratio over the run;
  - stress: instead, whether a step met the SLO (the knee) and, with
    LOADTEST_MIN_KNEE_RPS, whether the knee is high enough;
  - soak: also, that no service's memory keeps growing after warm-up.
"""
from __future__ import annotations

import dataclasses
import datetime
import json
import os
import sys
import time
from pathlib import Path

import gevent
from locust import events
from locust.runners import WorkerRunner

from crmload import report
from crmload.monitor import MetricsSampler, default_metrics_urls, memory_trends, parse_metrics_urls
from crmload.slo import RequestTallies, SloConfig, Tally, evaluate, find_knee, format_verdict, snapshot, window

DEFAULT_SLO_FILE = Path(__file__).resolve().parents[1] / "slo.toml"
# How often the run's own statistics and the services' /metrics are sampled.
SAMPLE_SECONDS = float(os.environ.get("LOADTEST_SAMPLE_SECONDS", "5"))


@events.init_command_line_parser.add_listener
def _add_options(parser, **_):
    group = parser.add_argument_group("CRM load-test gate and report")
    group.add_argument("--slo-file", default=str(DEFAULT_SLO_FILE),
                       help="TOML file of endpoint groups and their objectives")
    group.add_argument("--report-dir", default="",
                       help="folder for report.md, charts and run.json "
                            "(default: the folder of --csv, else var/loadtest/<time>)")
    group.add_argument("--metrics-urls", default="",
                       help="services' /metrics as name=url,... (default: $LOADTEST_METRICS_URLS, "
                            "else the ports of `make up`)")


class RunRecorder:
    """One row per sampling interval of the traffic in that interval:
    throughput, failures and latency percentiles (exact for the interval,
    from the difference of two histogram snapshots)."""

    def __init__(self, environment, interval: float):
        self.environment = environment
        self.interval = interval
        self.rows: list[dict] = []
        self._previous = (time.time(), snapshot(environment.stats))
        self._greenlet = gevent.spawn(self._run)

    def _run(self):
        while True:
            gevent.sleep(self.interval)
            self.record()

    def stop(self):
        self._greenlet.kill(block=True)
        # The last part-interval, unless it is a sliver: a rate over a few
        # milliseconds would only draw a spike or a drop to zero.
        if time.time() - self._previous[0] >= 1:
            self.record()

    def record(self):
        now, tallies = time.time(), snapshot(self.environment.stats)
        then, earlier = self._previous
        self._previous = (now, tallies)
        elapsed = now - then
        if elapsed <= 0:
            return
        traffic = sum(window(earlier, tallies).values(), Tally())
        # No requests, no percentiles: a gap in the chart, not a 0 ms dip.
        percentile = traffic.percentile if traffic.requests else (lambda _: None)
        self.rows.append({
            "t": now, "users": self.environment.runner.user_count,
            "rps": traffic.requests / elapsed, "failures_per_s": traffic.failures / elapsed,
            "p50": percentile(0.50), "p95": percentile(0.95), "p99": percentile(0.99),
        })


@dataclasses.dataclass
class RunState:
    """What the plugin keeps between test_start and quitting."""

    slo: SloConfig | None = None
    started_at: float | None = None
    ended_at: float | None = None
    recorder: RunRecorder | None = None
    sampler: MetricsSampler | None = None
    # The run's statistics when every user had started (locust's spawning_complete): what came
    # before is the ramp-up (sign-ins, first visits), reported apart and not judged.
    ramp_up: RequestTallies | None = None


_run = RunState()


def _on_master_or_local(environment) -> bool:
    return not isinstance(environment.runner, WorkerRunner)


@events.init.add_listener
def _read_slo_file(environment, **_):
    # Now rather than when the run is judged: a mistake in the file must stop
    # locust before the run, not an hour later. (An exception would only be
    # logged by locust; SystemExit ends it.)
    if not _on_master_or_local(environment):
        return
    path = environment.parsed_options.slo_file
    try:
        _run.slo = SloConfig.load(path)
    except (OSError, ValueError, KeyError, TypeError) as error:
        sys.exit(f"--slo-file {path}: {type(error).__name__}: {error}")


@events.test_start.add_listener
def _start_sampling(environment, **_):
    if not _on_master_or_local(environment):
        return
    options = environment.parsed_options
    urls = parse_metrics_urls(options.metrics_urls) if options.metrics_urls else default_metrics_urls()
    _run.started_at = time.time()
    _run.ended_at = None
    _run.ramp_up = None
    _run.recorder = RunRecorder(environment, SAMPLE_SECONDS)
    _run.sampler = MetricsSampler(urls, SAMPLE_SECONDS)
    _run.sampler.start()


@events.spawning_complete.add_listener
def _end_of_ramp_up(user_count, **_):
    environment = _run.recorder.environment if _run.recorder else None
    if environment is None or not _on_master_or_local(environment) or _run.ramp_up is not None:
        return
    _run.ramp_up = snapshot(environment.stats)


@events.test_stop.add_listener
def _stop_sampling(environment, **_):
    if not _on_master_or_local(environment) or _run.recorder is None or _run.ended_at:
        return
    _run.recorder.stop()
    _run.sampler.stop()
    _run.ended_at = time.time()


@events.quitting.add_listener
def _judge_and_report(environment, **_):
    if not _on_master_or_local(environment) or _run.recorder is None:
        return
    _stop_sampling(environment)
    run = judge(environment, _run.slo, _run)
    report_dir = resolve_report_dir(environment.parsed_options)
    path = report.write_report(report_dir, run)
    if run.get("stress"):
        (report_dir / "knee.json").write_text(json.dumps(run["stress"]["knee"], indent=1))
    _print_verdict(run, path)
    environment.process_exit_code = 0 if run["passed"] else 1


def judge(environment, config: SloConfig, state: RunState) -> dict:
    """Everything the report shows, with the verdict and its reasons. The verdict is the steady
    state's, once every user had started; the ramp-up before it is shown apart."""
    final = snapshot(environment.stats)
    findings = []
    if state.ramp_up is None:
        findings.append("the run ended before every user had started: there was no steady state to judge")
        steady, ramp_up = {}, final
    else:
        steady, ramp_up = window(state.ramp_up, final), state.ramp_up
    verdict = evaluate(steady, config)
    shape = environment.shape_class
    run = {
        "shape": type(shape).__name__ if shape else None,
        "host": environment.host,
        "started_at": state.started_at, "ended_at": state.ended_at,
        "verdict": verdict.to_dict(),
        "ramp_up": evaluate(ramp_up, config).to_dict(),
        "timeline": state.recorder.rows,
        "resources": state.sampler.samples,
        "user_exceptions": sum(e["count"] for e in environment.runner.exceptions.values()),
    }

    steps = getattr(shape, "stress_steps", None)
    if steps is not None:
        # A stress run ends by breaking the SLO on purpose: it is judged on
        # the load it carried before that, not on the whole run.
        knee = find_knee(steps)
        run["stress"] = {"steps": [dataclasses.asdict(s) for s in steps],
                         "knee": dataclasses.asdict(knee) if knee else None}
        if knee is None:
            first_misses = "; ".join(steps[0].misses) if steps else "no step completed"
            findings.append(f"stress: no step met the SLO ({first_misses})")
        elif knee.requests_per_second < shape.min_knee_rps:
            findings.append(f"stress: knee {knee.requests_per_second:.1f} req/s is below the required "
                            f"{shape.min_knee_rps:.1f} req/s (LOADTEST_MIN_KNEE_RPS)")
    else:
        findings += [f"SLO missed by {miss}" for miss in verdict.misses]
        if not any(result.enough_data for result in verdict.results):
            # A run that sent (almost) nothing has shown nothing: it must not pass.
            findings.append("no endpoint group saw enough requests to be judged "
                            f"(fewer than {config.min_requests} each): the run tested nothing")

    warmup = getattr(shape, "memory_warmup_seconds", None)
    if warmup is not None:
        trends = memory_trends(state.sampler.samples, state.started_at, warmup, shape.max_memory_growth)
        run["memory_trends"] = [dataclasses.asdict(t) for t in trends]
        findings += [f"memory keeps growing: {t.describe()}" for t in trends if t.growing]
        if not trends:
            findings.append("soak: too few /metrics samples after warm-up to judge memory "
                            f"(unreachable: {state.sampler.unreachable or 'none'})")

    run["findings"] = findings
    run["passed"] = not findings
    return run


def resolve_report_dir(options) -> Path:
    if options.report_dir:
        return Path(options.report_dir)
    if options.csv_prefix and os.path.dirname(options.csv_prefix):
        return Path(os.path.dirname(options.csv_prefix))
    stamp = datetime.datetime.now(datetime.UTC).strftime("%Y%m%dT%H%M%SZ")
    return Path("var/loadtest") / stamp


def _print_verdict(run: dict, report_path: Path) -> None:
    # print, not the logger: the verdict is the run's answer and must show
    # even with --loglevel WARNING.
    lines = ["", "=" * 72, f"LOAD TEST {'PASSED' if run['passed'] else 'FAILED'}", ""]
    if run.get("stress"):
        lines.append("(the whole run, for information: a stress run breaks the SLO on purpose "
                     "and is judged on its knee)")
    lines.append("steady state, once every user had started:")
    lines.append(format_verdict(run["verdict"]))
    lines.append("ramp-up (sign-ins and first visits; shown, not judged):")
    lines.append(format_verdict(run["ramp_up"]))
    if run.get("stress"):
        knee = run["stress"]["knee"]
        lines.append("knee: " + (f"{knee['requests_per_second']:.1f} req/s at {knee['users']} users"
                                 if knee else "none (the first step missed the SLO)"))
    lines += [f"  - {finding}" for finding in run["findings"]]
    lines += [f"report: {report_path}", "=" * 72, ""]
    print("\n".join(lines), flush=True)
