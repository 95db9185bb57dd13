"""Budget curves against epochs spent, ASHA against FIFO: each search's expected best validation
loss after n trials (Dodge et al. 2019, the report's own `budget.expected_best`), drawn against
the epochs that n of its trials cost, from the trials `asha_efficiency.py` recorded: the same N
configurations of the adding problem run once under FIFO for max_t epochs each, and once under
ASHA.

Target: at 35% of the full FIFO search's epochs, ASHA's expected best lies within the full
search's 90% band, the 5th to 95th percentile of the best of its N trials
(`budget.best_of_quantiles`). A search's n trials cost n times its trials' mean epochs: FIFO's
max_t each, ASHA's fewer (it stops most early). Trains nothing: it reads the `arrivals` of
asha_efficiency's report.

    python benchmarks/budget_asha.py [REPORT.json] [--json PATH]
"""

from __future__ import annotations

import json
import math
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from common import ROOT, argument_parser, publish, report_head, result_path

sys.path.insert(0, str(ROOT))

from pipelines.report import budget  # noqa: E402  (after the project root is on the path)

RESULT = result_path("budget_asha")
RECORDED = ROOT / "benchmarks" / "asha_efficiency_n27.json"
SHARE = 0.35  # of the full FIFO search's epochs
BAND = (0.05, 0.95)


def trials(arrivals: list[dict[str, Any]]) -> dict[int, tuple[float, int]]:
    """Each configuration's best val/loss over the epochs it ran, and how many it ran."""
    seen: dict[int, list[dict[str, Any]]] = {}
    for arrival in arrivals:
        seen.setdefault(arrival["point"], []).append(arrival)
    return {
        point: (min(a["val_loss"] for a in epochs), max(a["epoch"] for a in epochs))
        for point, epochs in seen.items()
    }


def compare(repeat: dict[str, Any]) -> dict[str, Any]:
    """One recorded repeat: both searches' curves, and ASHA at 35% of FIFO's epochs."""
    fifo, asha = (trials(repeat["arrivals"][name]) for name in ("random", "asha"))
    n = len(fifo)
    fifo_scores, asha_scores = [s for s, _ in fifo.values()], [s for s, _ in asha.values()]
    fifo_cost = statistics.mean(e for _, e in fifo.values())
    asha_cost = statistics.mean(e for _, e in asha.values())
    fifo_mean, _ = budget.expected_best(fifo_scores, n, "min")
    asha_mean, _ = budget.expected_best(asha_scores, n, "min")
    # the worse end (the 5% of draws of N trials that do worst), then the better end
    worse, better = budget.best_of_quantiles(fifo_scores, n, BAND, "min")
    epochs = SHARE * n * fifo_cost
    asha_n = min(n, math.floor(epochs / asha_cost))
    fifo_n = max(1, math.floor(epochs / fifo_cost))
    at_share = float(asha_mean[asha_n - 1])
    return {
        "seed": repeat["seed"],
        "configs": n,
        "fifo_epochs": n * fifo_cost,
        "asha_epochs_per_trial": asha_cost,
        "budget_epochs": epochs,
        "band": [float(worse), float(better)],  # the full search's 90%: worse end, better end
        "fifo_full_expected_best": float(fifo_mean[-1]),
        "asha_trials_at_budget": asha_n,
        "asha_expected_best_at_budget": at_share,
        "fifo_trials_at_budget": fifo_n,
        "fifo_expected_best_at_budget": float(fifo_mean[fifo_n - 1]),
        "within": bool(at_share <= worse),
        "curves": {
            "fifo": [[k * fifo_cost, float(v)] for k, v in enumerate(fifo_mean, start=1)],
            "asha": [[k * asha_cost, float(v)] for k, v in enumerate(asha_mean, start=1)],
        },
    }


def markdown(report: dict[str, Any]) -> str:
    lines = [
        f"{report['machine']}; recorded by asha_efficiency on {report['recorded']['machine']}",
        "",
        "| seed | epochs at 35% | ASHA: trials, expected best | FIFO: trials, expected best "
        "| full FIFO search: 90% band of its best | ASHA within |",
        "|---|---:|---|---|---|---|",
    ]
    for row in report["repeats"]:
        worse, better = row["band"]
        lines.append(
            f"| {row['seed']} | {row['budget_epochs']:.0f} of {row['fifo_epochs']:.0f} "
            f"| {row['asha_trials_at_budget']} ({row['asha_epochs_per_trial']:.1f} epochs "
            f"each), {row['asha_expected_best_at_budget']:.3g} "
            f"| {row['fifo_trials_at_budget']}, {row['fifo_expected_best_at_budget']:.3g} "
            f"| {better:.3g} to {worse:.3g} | {'yes' if row['within'] else 'no'} |"
        )
    summary = report["summary"]
    lines += ["", f"within the band in {summary['within']} of {summary['repeats']} repeats"]
    return "\n".join(lines)


def main() -> None:
    began = time.perf_counter()
    parser = argument_parser(__doc__)
    parser.add_argument("report", nargs="?", type=Path, default=RECORDED)
    parser.add_argument("--json", type=Path, default=RESULT, help="where to write the figures")
    args = parser.parse_args()
    recorded = json.loads(args.report.read_text())
    rows = [compare(repeat) for repeat in recorded["repeats"]]
    report = {
        **report_head("budget_asha"),
        "recorded": {"report": args.report.name, "machine": recorded["machine"]},
        "sizes": recorded["sizes"],
        "summary": {
            "share": SHARE,
            "within": sum(row["within"] for row in rows),
            "repeats": len(rows),
        },
        "repeats": rows,
    }
    publish(report, markdown, args.json, began)


if __name__ == "__main__":
    main()
