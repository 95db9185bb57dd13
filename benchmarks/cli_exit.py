"""How long a `seqlab` process takes to exit after it has printed its last line.

A study's process holds torch, Lightning, Ray, Prefect and MLflow, millions of objects. At exit
CPython collects garbage over all of them. The `seqlab` command (`cli.app.entry`, through
`cli.process.freeze_at_exit`) freezes them (`gc.freeze`) after the other exit handlers have run,
so that the collection skips them.

Each round, in a fresh SEQLAB_HOME, runs two commands twice, once each way, in alternating
order:
- `seqlab run SPEC` (the smoke study by default): the heaviest process;
- `seqlab report STUDY` on the study just run: MLflow and matplotlib only.

The baseline is the same `main` without the freeze (`python -c "... sys.exit(main())"`), in the
same round. For every run: the time from its last byte of output to its exit, and its wall time.

    python benchmarks/cli_exit.py [--repeats 3] [--spec experiments/smoke.yaml] [--json PATH]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml
from common import embedded_env, publish, report_head, result_path

ROOT = Path(__file__).resolve().parents[1]
RESULT = result_path("cli_exit")
WITHOUT_FREEZE = "import sys; from pipelines.cli.app import main; sys.exit(main())"
WAYS = {
    "baseline": [sys.executable, "-c", WITHOUT_FREEZE],
    "seqlab": [str(Path(sys.executable).with_name("seqlab"))],
}


def timed(command: list[str], home: Path) -> dict[str, float]:
    """Wall seconds of `command`, and seconds from its last byte of output to its exit."""
    start = time.perf_counter()
    process = subprocess.Popen(
        command,
        cwd=ROOT,
        env=embedded_env(home),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    assert process.stdout is not None
    last, tail = start, b""
    while chunk := process.stdout.read1(65536):
        last, tail = time.perf_counter(), (tail + chunk)[-3000:]
    code = process.wait()
    end = time.perf_counter()
    if code != 0:
        raise SystemExit(f"{' '.join(command)} exited {code}:\n{tail.decode(errors='replace')}")
    return {"wall_s": end - start, "exit_s": end - last}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3, help="rounds, each in a fresh home")
    parser.add_argument("--spec", default="experiments/smoke.yaml")
    parser.add_argument("--json", type=Path, default=RESULT, help="where to write the figures")
    args = parser.parse_args()
    study = yaml.safe_load((ROOT / args.spec).read_text())["name"]
    commands = {"run": ["run", args.spec], "report": ["report", study]}
    runs: dict[str, dict[str, list[dict[str, float]]]] = {
        name: {way: [] for way in WAYS} for name in commands
    }
    began = time.perf_counter()
    for round_ in range(args.repeats):
        ways = list(WAYS) if round_ % 2 == 0 else list(reversed(WAYS))
        for way in ways:  # each way in a home of its own: both runs start the study afresh
            with tempfile.TemporaryDirectory(prefix="seqlab-exit-") as tmp:
                for name, argv in commands.items():
                    runs[name][way].append(timed([*WAYS[way], *argv], Path(tmp) / "home"))
                    row = runs[name][way][-1]
                    print(
                        f"round {round_ + 1} {name} {way}: exit {row['exit_s']:.2f} s, "
                        f"wall {row['wall_s']:.1f} s",
                        file=sys.stderr,
                        flush=True,
                    )
    summary = {}
    for name, by_way in runs.items():
        summary[name] = {
            way: {
                key: statistics.median(run[key] for run in way_runs) for key in ("exit_s", "wall_s")
            }
            for way, way_runs in by_way.items()
        }
        paired = [
            new["wall_s"] / old["wall_s"]
            for new, old in zip(by_way["seqlab"], by_way["baseline"], strict=True)
        ]
        summary[name]["wall_paired_ratios"] = paired
        summary[name]["wall_median_paired_ratio"] = statistics.median(paired)
    report: dict[str, Any] = {
        **report_head("cli_exit"),
        "spec": args.spec,
        "repeats": args.repeats,
        "runs": runs,
        "summary": summary,
    }
    publish(report, markdown, args.json, began)
    return 0


def markdown(report: dict[str, Any]) -> str:
    load = ", ".join(f"{v:.1f}" for v in report["load_average"])
    lines = [
        "```",
        f"{report['machine']}; {report['versions']}; load average at the end {load}",
        f"{report['repeats']} rounds; `seqlab run {report['spec']}`, then `seqlab report`, "
        "each in a fresh home, both ways in alternating order",
        "```",
        "",
        "| command | way | exit s (median) | exit s, runs | wall s (median) "
        "| wall, seqlab / baseline (paired) |",
        "|---|---|---:|---|---:|---|",
    ]
    for name, by_way in report["runs"].items():
        summary = report["summary"][name]
        for way, way_runs in by_way.items():
            exits = ", ".join(f"{run['exit_s']:.2f}" for run in way_runs)
            ratios = (
                ", ".join(f"{r:.3f}" for r in summary["wall_paired_ratios"])
                + f" (median {summary['wall_median_paired_ratio']:.3f})"
                if way == "seqlab"
                else "-"
            )
            lines.append(
                f"| `{name}` | {way} | {summary[way]['exit_s']:.2f} | {exits} "
                f"| {summary[way]['wall_s']:.1f} | {ratios} |"
            )
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
