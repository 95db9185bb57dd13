"""Successive halving replayed on the curves an exhaustive random search recorded.

`asha_efficiency.py` keeps every result of its random search: each configuration's validation
loss after every epoch. This script replays synchronous successive halving on those curves, for
a grid of grace periods and reduction factors, without training anything: all configurations to
the grace period g, the best 1/eta of them (by their loss at that rung) on to g * eta, and so on
up to max_t. It counts the epochs spent until a result first comes within the run's threshold
(2% above the best loss B), as a share of the random search's N x max_t epochs.

The ranking at each rung is the real one, so this asks whether *any* setting of the scheduler
could meet the target on these curves. Synchronous halving is the scheduler with the most
information at each decision; ASHA, which promotes before a rung is full, cannot do better on
the same ranking. The figures are a replay on data already measured, not a new measurement.

    python benchmarks/asha_replay.py [benchmarks/asha_efficiency_n27.json]
                                     [--grace 1 2 3 4 6 9] [--eta 2 3 4] [--target 0.35]
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
Curves = dict[int, dict[int, float]]  # configuration -> epoch -> validation loss


def curves(repeat: dict[str, Any]) -> Curves:
    """Each configuration's loss after each epoch, from the random search's arrivals."""
    out: Curves = {}
    for arrival in repeat["arrivals"]["random"]:
        out.setdefault(arrival["point"], {})[arrival["epoch"]] = arrival["val_loss"]
    return out


def halving(curves: Curves, max_t: int, threshold: float, grace: int, eta: int) -> int | None:
    """Epochs synchronous successive halving spends until a loss <= threshold, or None."""
    alive, spent, done, rung = sorted(curves), 0, 0, min(grace, max_t)
    while True:
        for epoch in range(done + 1, rung + 1):  # every live configuration, epoch by epoch
            for point in alive:
                spent += 1
                if curves[point][epoch] <= threshold:
                    return spent
        if rung == max_t:
            return None
        keep = max(1, math.floor(len(alive) / eta))
        alive = sorted(alive, key=lambda point: curves[point][rung])[:keep]
        done, rung = rung, min(rung * eta, max_t)


def replay(report: dict[str, Any], graces: list[int], etas: list[int]) -> list[dict[str, Any]]:
    """One row per repeat, grace period and reduction factor: the epochs halving spent."""
    rows = []
    for repeat in report["repeats"]:
        recorded = curves(repeat)
        budget = len(recorded) * repeat["max_t"]
        for grace in graces:
            for eta in etas:
                spent = halving(recorded, repeat["max_t"], repeat["threshold"], grace, eta)
                share = None if spent is None else spent / budget
                rows.append(
                    {
                        "seed": repeat["seed"],
                        "grace": grace,
                        "eta": eta,
                        "epochs": spent,
                        "share": share,
                    }
                )
    return rows


def within(repeat: dict[str, Any]) -> str:
    """How many configurations ever come within the threshold, and from which epoch."""
    recorded = curves(repeat)
    firsts = [
        min((e for e, loss in curve.items() if loss <= repeat["threshold"]), default=None)
        for curve in recorded.values()
    ]
    reached = [e for e in firsts if e is not None]
    return (
        f"seed {repeat['seed']}: {len(reached)} of the configurations ever come within 2% of B, "
        f"first at epoch {min(reached, default=None)} of the budget's "
        f"{len(recorded) * repeat['max_t']} epochs"
    )


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument(
        "report",
        nargs="?",
        type=Path,
        default=ROOT / "benchmarks" / "asha_efficiency_n27.json",
        help="a JSON that asha_efficiency.py wrote",
    )
    parser.add_argument("--grace", type=int, nargs="+", default=[1, 2, 3, 4, 6, 9])
    parser.add_argument("--eta", type=int, nargs="+", default=[2, 3, 4])
    parser.add_argument("--target", type=float, default=0.35)
    args = parser.parse_args()
    try:
        report = json.loads(args.report.read_text())
        rows = replay(report, args.grace, args.eta)
    except (OSError, ValueError, KeyError, TypeError) as err:
        print(
            f"asha_replay.py: error: {args.report}: not an asha_efficiency.py report ({err})",
            file=sys.stderr,
        )
        return 2
    print("| seed | grace | eta | epochs to <= 1.02 B | share | meets |")
    print("|---|---:|---:|---:|---:|---|")
    for row in rows:
        share = "-" if row["share"] is None else f"{row['share']:.2f}"
        meets = row["share"] is not None and row["share"] <= args.target
        print(
            f"| {row['seed']} | {row['grace']} | {row['eta']} | {row['epochs'] or 'never'} "
            f"| {share} | {'yes' if meets else 'no'} |"
        )
    for repeat in report["repeats"]:
        print(within(repeat))
    return 0


if __name__ == "__main__":
    sys.exit(main())
