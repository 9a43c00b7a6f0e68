"""The report every load run leaves behind: report.md with the verdict at the
top and PNG charts below it, written next to run.json (everything the report
is made from, so it can be made again).

    loadtests/.venv/bin/python -m crmload.report var/loadtest/<stamp>

(from loadtests/, or with loadtests/ on PYTHONPATH) rewrites report.md and the
charts from that folder's run.json.

run.json holds: shape, host, started_at, ended_at (unix times), passed,
findings (the reasons a run failed, one sentence each), verdict (slo.Verdict's
to_dict), timeline (one row per sampling interval: t, users, rps,
failures_per_s, p50, p95, p99), resources (monitor.MetricsSampler samples),
memory_trends, stress (steps and knee, stress runs only), user_exceptions.
"""
from __future__ import annotations

import datetime
import json
import math
import sys
from pathlib import Path

from matplotlib.figure import Figure

from crmload.monitor import cpu_percent_series

CHARTS = {
    "throughput.png": "Requests per second and users",
    "latency.png": "Response time percentiles",
    "errors.png": "Failed requests",
    "resources.png": "CPU and memory per service",
}


def write_report(report_dir: str | Path, run: dict) -> Path:
    """Write run.json, the charts and report.md into report_dir; return the
    path of report.md."""
    report_dir = Path(report_dir)
    report_dir.mkdir(parents=True, exist_ok=True)
    (report_dir / "run.json").write_text(json.dumps(run, indent=1))
    _write_charts(report_dir, run)
    report = report_dir / "report.md"
    report.write_text(render_markdown(run))
    return report


def render_markdown(run: dict) -> str:
    lines = []
    if run["passed"]:
        lines += ["# Load test: ✅ PASS", "",
                  "**The system held: every check of this run passed.**", ""]
    else:
        lines += ["# Load test: ❌ FAIL", "", "**The system did not hold:**", ""]
        lines += [f"- {finding}" for finding in run["findings"]] + [""]

    lines += _summary(run)
    lines += _verdict_table(run["verdict"], stress=bool(run.get("stress")))
    if run.get("ramp_up"):
        lines += _verdict_table(run["ramp_up"], stress=False, title="Ramp-up (sign-ins and first visits; not judged)")
    if run.get("stress"):
        lines += _stress_table(run["stress"])
    if run.get("memory_trends"):
        lines += ["## Memory after warm-up", "",
                  "| service | samples | start MB | end MB | growth | verdict |",
                  "|---|---:|---:|---:|---:|---|"]
        lines += [f"| {t['service']} | {t['samples']} | {t['start_mb']:.0f} | {t['end_mb']:.0f} | "
                  f"{t['growth_ratio']:+.1%} | {'**keeps growing**' if t['growing'] else 'steady'} |"
                  for t in run["memory_trends"]] + [""]
    lines += ["## Charts", ""]
    lines += [f"### {title}\n\n![{title}]({name})\n" for name, title in CHARTS.items()]
    return "\n".join(lines)


def _summary(run: dict) -> list[str]:
    timeline = run["timeline"]
    seconds = run["ended_at"] - run["started_at"]
    started = datetime.datetime.fromtimestamp(run["started_at"], datetime.UTC)
    requests = sum(g["requests"] for g in run["verdict"]["groups"])
    rows = [
        ("shape", run.get("shape") or "fixed user count"),
        ("target", run.get("host") or "-"),
        ("started", started.strftime("%Y-%m-%d %H:%M:%S UTC")),
        ("duration", f"{seconds / 60:.1f} min"),
        ("peak users", max((row["users"] for row in timeline), default=0)),
        ("requests", f"{requests} ({requests / seconds:.1f}/s on average)" if seconds > 0 else requests),
        ("peak requests/s", f"{max((row['rps'] for row in timeline), default=0):.1f}"),
    ]
    if run.get("user_exceptions"):
        rows.append(("exceptions in locust users", run["user_exceptions"]))
    return ["| run | |", "|---|---|", *(f"| {key} | {value} |" for key, value in rows), ""]


def _verdict_table(verdict: dict, stress: bool, title="SLO verdict (steady state, once every user had started)"):
    lines = [f"## {title}", ""]
    if stress:
        lines += ["For information: a stress run breaks the SLO on purpose and is judged on its knee.", ""]
    lines += ["| group | requests | p95 ms (objective) | p99 ms (objective) | errors (max) | status |",
              "|---|---:|---:|---:|---:|---|"]
    for g in verdict["groups"]:
        o = g["objective"]
        status = "**FAIL**" if g["status"] == "FAIL" else g["status"]
        lines.append(f"| {g['group']} | {g['requests']} | {g['p95_ms']:.0f} ({o['p95_ms']:.0f}) | "
                     f"{g['p99_ms']:.0f} ({o['p99_ms']:.0f}) | {g['error_ratio']:.2%} "
                     f"({o['max_error_ratio']:.2%}) | {status} |")
    if not verdict["groups"]:
        lines.append("| (no requests) | | | | | |")
    return lines + [""]


def _stress_table(stress: dict) -> list[str]:
    knee = stress.get("knee")
    if knee:
        headline = (f"**Knee: {knee['requests_per_second']:.1f} requests/s at {knee['users']} users** "
                    "(the highest step throughput that met the SLO).")
    else:
        headline = "**No knee: the first step already missed the SLO.**"
    lines = ["## Stress steps", "", headline, "",
             "| users | requests/s | SLO | misses |", "|---:|---:|---|---|"]
    lines += [f"| {s['users']} | {s['requests_per_second']:.1f} | {'met' if s['passed'] else '**missed**'} | "
              f"{'; '.join(s['misses'])} |" for s in stress["steps"]]
    return lines + [""]


def _write_charts(report_dir: Path, run: dict) -> None:
    t0 = run["started_at"]
    timeline = run["timeline"]
    minutes = [(row["t"] - t0) / 60 for row in timeline]

    figure, axes = _figure()
    axes.plot(minutes, [row["rps"] for row in timeline], label="requests/s", color="tab:blue")
    users_axes = axes.twinx()
    users_axes.step(minutes, [row["users"] for row in timeline], where="post", color="tab:gray",
                    linestyle="--", label="users")
    users_axes.set_ylabel("users")
    knee = (run.get("stress") or {}).get("knee")
    if knee:
        axes.axhline(knee["requests_per_second"], color="tab:green", linestyle=":",
                     label=f"knee {knee['requests_per_second']:.1f} req/s")
    axes.set_ylabel("requests/s")
    _legend(axes, users_axes)
    _save(figure, axes, report_dir / "throughput.png", CHARTS["throughput.png"])

    figure, axes = _figure()
    for key, colour in (("p50", "tab:green"), ("p95", "tab:orange"), ("p99", "tab:red")):
        axes.plot(minutes, [_gap_if_none(row[key]) for row in timeline], label=key, color=colour)
    axes.set_ylabel("ms")
    axes.legend(loc="upper left")
    _save(figure, axes, report_dir / "latency.png", CHARTS["latency.png"])

    figure, axes = _figure()
    axes.plot(minutes, [row["failures_per_s"] for row in timeline], color="tab:red", label="failures/s")
    ratio_axes = axes.twinx()
    ratio_axes.plot(minutes, [100 * row["failures_per_s"] / row["rps"] if row["rps"] else 0
                              for row in timeline], color="tab:purple", linestyle=":", label="% of requests")
    axes.set_ylabel("failures/s")
    ratio_axes.set_ylabel("% of requests")
    _legend(axes, ratio_axes)
    _save(figure, axes, report_dir / "errors.png", CHARTS["errors.png"])

    _write_resources_chart(report_dir / "resources.png", run["resources"], t0)


def _write_resources_chart(path: Path, samples: list[dict], t0: float) -> None:
    figure = Figure(figsize=(10, 7), layout="constrained")
    cpu_axes, memory_axes = figure.subplots(2, 1, sharex=True)
    for service, points in sorted(cpu_percent_series(samples).items()):
        cpu_axes.plot([(t - t0) / 60 for t, _ in points], [p for _, p in points], label=service)
    services = sorted({s["service"] for s in samples})
    for service in services:
        own = [s for s in samples if s["service"] == service]
        memory_axes.plot([(s["t"] - t0) / 60 for s in own], [s["rss_bytes"] / 2**20 for s in own],
                         label=service)
    cpu_axes.set_ylabel("CPU % of one core")
    memory_axes.set_ylabel("resident memory MB")
    memory_axes.set_xlabel("minutes since start")
    for axes in (cpu_axes, memory_axes):
        axes.grid(alpha=0.3)
        if services:
            axes.legend(loc="upper left", fontsize="small")
    if not services:
        cpu_axes.text(0.5, 0.5, "no /metrics samples", ha="center", transform=cpu_axes.transAxes)
    cpu_axes.set_title(CHARTS["resources.png"])
    figure.savefig(path, dpi=90)


def _gap_if_none(value):
    return math.nan if value is None else value


def _figure():
    figure = Figure(figsize=(10, 4), layout="constrained")
    return figure, figure.subplots()


def _legend(left, right):
    handles, labels = left.get_legend_handles_labels()
    more_handles, more_labels = right.get_legend_handles_labels()
    left.legend(handles + more_handles, labels + more_labels, loc="upper left")


def _save(figure, axes, path: Path, title: str) -> None:
    axes.set_title(title)
    axes.set_xlabel("minutes since start")
    axes.grid(alpha=0.3)
    figure.savefig(path, dpi=90)


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python -m crmload.report REPORT_DIR  (the folder with run.json)")
    folder = Path(sys.argv[1])
    print(write_report(folder, json.loads((folder / "run.json").read_text())))
