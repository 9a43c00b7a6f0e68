"""docs/performance.md and its chart from one `make bench` run.

    loadtests/.venv/bin/python loadtests/bench/performance_page.py var/bench/latest.json

run_bench.py calls it after every run (in loadtests/.venv, which has matplotlib), so the page
always shows the latest run: the table of both phases, a chart of each scenario's ratio to the
floor and of its latencies, and the command behind every figure.
"""
import json
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
PAGE = ROOT / "docs" / "performance.md"
CHART = ROOT / "docs" / "performance.png"


def number(value, digits=1):
    return "–" if value is None else f"{value:.{digits}f}"


def table(report):
    throughput = ["| scenario | requests/s | p50 ms | p95 ms | p99 ms | errors | ratio to floor | goal | result |",
                  "|---|---:|---:|---:|---:|---:|---:|---|---|"]
    for name, figures in report.items():
        if not isinstance(figures, dict) or "rps" not in figures:
            continue
        verdict = report["verdicts"].get(name)
        goal, result = ("(the floor)", "") if verdict is None else (
            verdict["target"], "PASS" if verdict["met"] else "**MISS**")
        throughput.append(f"| {name} | {number(figures['rps'])} | {number(figures['p50_ms'])} | "
                          f"{number(figures['p95_ms'])} | {number(figures['p99_ms'])} | {figures['errors']} | "
                          f"{number(figures['ratio_to_floor'], 2)} | {goal} | {result} |")
    latency = ["| scenario | requests/s | p50 ms | p95 ms | p99 ms | errors | goal | result |",
               "|---|---:|---:|---:|---:|---:|---|---|"]
    for name, figures in (report.get("latency") or {}).items():
        verdict = report["verdicts"][f"{name} (latency)"]
        latency.append(f"| {name} | {number(figures['rps'])} | {number(figures['p50_ms'])} | "
                       f"{number(figures['p95_ms'])} | {number(figures['p99_ms'])} | {figures['errors']} | "
                       f"{verdict['target']} | {'PASS' if verdict['met'] else '**MISS**'} |")
    return throughput, latency


def chart(report, path):
    names = [name for name, figures in report.items()
             if isinstance(figures, dict) and "ratio_to_floor" in figures and name != "floor"]
    figure, (ratios, latencies) = plt.subplots(1, 2, figsize=(12, 4.5))
    ratios.barh(names, [report[name]["ratio_to_floor"] or 0 for name in names], color="tab:blue")
    for index, name in enumerate(names):
        goal = report["verdicts"].get(name, {}).get("goal_ratio")
        if goal:
            ratios.plot([goal, goal], [index - 0.4, index + 0.4], color="tab:red")
    ratios.invert_yaxis()
    ratios.set_xlabel("requests/s ÷ floor's (closed loop, red: goal)")
    latency = report.get("latency") or {}
    open_names = list(latency)
    positions = range(len(open_names))
    latencies.barh([p - 0.2 for p in positions], [latency[n]["p95_ms"] or 0 for n in open_names], height=0.4,
                   color="tab:orange", label="p95")
    latencies.barh([p + 0.2 for p in positions], [latency[n]["p99_ms"] or 0 for n in open_names], height=0.4,
                   color="tab:red", label="p99")
    latencies.set_yticks(list(positions), open_names)
    latencies.invert_yaxis()
    latencies.set_xscale("log")  # a 20 ms read and a 2 s queue on one axis
    latencies.set_xlabel("ms, log scale (open loop at a quarter of the floor's rate)")
    latencies.legend(loc="lower right")
    figure.suptitle(f"make bench, commit {report['commit'][:12]}")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def page(report, source, chart_name="performance.png"):
    throughput, latency = table(report)
    settings, machine = report["settings"], report["machine"]
    database = settings.get("database", "postgresql")
    on_sqlite = database == "sqlite"
    return "\n".join([
        "# Performance on SQLite, the default stack" if on_sqlite else "# Performance",
        "",
        "Every figure is a ratio to the *floor*, a bare nameko HTTP entrypoint calling a bare RPC echo",
        "(`loadtests/bench/floor_service.py`), measured in the same run on the same machine: absolute",
        "numbers move with the machine and whatever else it runs, ratios much less. The data, the people",
        "and the driver are described in `loadtests/bench/run_bench.py` and `loadtests/bench/dataset.py`.",
        "",
        "Every figure below comes from one command, on an otherwise idle machine:",
        "",
        ("    make bench BENCH_DB=sqlite   # BENCH_SECONDS=20 BENCH_CONNECTIONS=32 by default" if on_sqlite else
         "    make bench        # BENCH_SECONDS=20 BENCH_CONNECTIONS=32 by default"),
        *(["", "The services keep their data in SQLite files, as `make up` runs by default; "
           "[performance.md](performance.md) is the same bench on PostgreSQL."] if on_sqlite else []),
        "",
        f"This page is rewritten by each run, from `{source}`: commit `{report['commit'][:12]}`, "
        f"{machine['cores']} cores, {machine['memory_mb']} MB.",
        "",
        "## Throughput: closed loop",
        "",
        f"{settings['connections']} connections, each one manager or sales rep signed in with their own token, "
        f"{settings['seconds']:g} s after a {settings['warmup_seconds']:g} s warm-up. Every request started in "
        "the window counts, a late answer with its real latency, no answer within 10 s as an error.",
        "",
        *throughput,
        "",
        "## Latency: open loop",
        "",
        f"A fixed arrival rate of {settings.get('latency_rate', 0):g} requests/s (a quarter of the floor's), "
        f"{settings.get('latency_seconds', 0):g} s per scenario, each request timed from when it was due.",
        "",
        *latency,
        "",
        f"![Ratio to the floor and open-loop latency per scenario]({chart_name})",
        "",
    ])


def main(path):
    report = json.loads(Path(path).read_text())
    # A run on SQLite (BENCH_DB=sqlite) has a page of its own beside PostgreSQL's.
    suffix = "" if report["settings"].get("database", "postgresql") == "postgresql" else "-" + report["settings"]["database"]
    page_path, chart_path = PAGE.with_stem(PAGE.stem + suffix), CHART.with_stem(CHART.stem + suffix)
    chart(report, chart_path)
    source = Path(path).resolve()
    page_path.write_text(page(report, source.relative_to(ROOT) if source.is_relative_to(ROOT) else source,
                              chart_path.name))
    print(f"wrote {page_path.relative_to(ROOT)} and {chart_path.relative_to(ROOT)}")


if __name__ == "__main__":
    main(sys.argv[1])
