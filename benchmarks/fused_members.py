"""Fused members against the same members trained one after another: K networks of one shape
(a seq2one LSTM or GRU on float sequences), one training step each, timed as one group step.

- separate: K networks on torch's fast path (cuDNN's on a GPU), each its own forward, backward
  and Adam step, in turn: the best case of K trials on one device, with no process, Lightning
  loop or Ray in the way (so the ratio understates what fusing saves against K real trials);
- fused: one `seqmodels.models.fused.Members` of the K (one vmap of the cell-by-cell forward)
  and one `seqmodels.optim.MemberSteps` step, each member at its own learning rate.

The figure is the ratio of separate to fused time per group step: above 1, fusing trains the K
members faster. Rows interleave within each repeat (in a rotated order), and medians are quoted.

    python benchmarks/fused_members.py [--device cuda] [--members 1 4 16] [--json PATH]
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch
from common import ROOT, argument_parser, publish, report_head, result_path
from torch import nn

sys.path.insert(0, str(ROOT))

from seqmodels.config import ModelConfig  # noqa: E402  (after the project root is on the path)
from seqmodels.models.architectures import build_model  # noqa: E402
from seqmodels.models.fused import Members  # noqa: E402
from seqmodels.optim import MemberSteps  # noqa: E402

RESULT = result_path("fused_members")


def _nets(cell: str, k: int, hidden: int, features: int, device: str) -> list[nn.Module]:
    nets = []
    for seed in range(k):
        torch.manual_seed(seed)
        nets.append(build_model(ModelConfig(cell=cell, hidden_size=hidden), features, 1).to(device))
    return nets


def _separate(nets: list[nn.Module], x: torch.Tensor, y: torch.Tensor) -> Any:
    opts = [torch.optim.Adam(n.parameters(), lr=1e-3 * (1 + i)) for i, n in enumerate(nets)]

    def step() -> None:
        for k, (net, opt) in enumerate(zip(nets, opts, strict=True)):
            opt.zero_grad(set_to_none=True)
            nn.functional.mse_loss(net(x[k]), y[k]).backward()
            opt.step()

    return step


def _fused(nets: list[nn.Module], x: torch.Tensor, y: torch.Tensor) -> Any:
    group = Members(nets)
    steps = MemberSteps(group.stacked, len(nets), lr=[1e-3 * (1 + i) for i in range(len(nets))])

    def step() -> None:
        steps.zero_grad()
        each = ((group(x) - y) ** 2).mean(dim=(1, 2))
        each.sum().backward()
        steps.step(each)

    return step


def _time(step: Any, steps: int, device: str) -> float:
    """Seconds per call of `step`, over `steps` calls after one warm-up."""
    step()
    if device == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    if device == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - start) / steps


def main() -> None:
    parser = argument_parser(__doc__)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--cells", nargs="+", default=["lstm", "gru"])
    parser.add_argument("--members", nargs="+", type=int, default=[1, 4, 16])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--length", type=int, default=30)
    parser.add_argument("--hidden", type=int, default=32)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--json", default=str(RESULT))
    args = parser.parse_args()
    began = time.perf_counter()
    features, device = 2, args.device
    rows: dict[str, dict[str, Any]] = {}
    steps: dict[str, Any] = {}
    for cell in args.cells:
        for k in args.members:
            x = torch.randn(k, args.batch, args.length, features, device=device)
            y = torch.randn(k, args.batch, 1, device=device)
            nets = _nets(cell, k, args.hidden, features, device)
            steps[f"{cell} K={k} separate"] = _separate(nets, x, y)
            steps[f"{cell} K={k} fused"] = _fused(nets, x, y)
    timed: dict[str, list[float]] = {name: [] for name in steps}
    names = list(steps)
    for repeat in range(args.repeats):
        order = names[repeat % len(names) :] + names[: repeat % len(names)]
        for name in order:
            timed[name].append(_time(steps[name], args.steps, device))
    for cell in args.cells:
        for k in args.members:
            separate = statistics.median(timed[f"{cell} K={k} separate"])
            fused = statistics.median(timed[f"{cell} K={k} fused"])
            rows[f"{cell} K={k}"] = {
                "separate_ms_per_group_step": round(1000 * separate, 3),
                "fused_ms_per_group_step": round(1000 * fused, 3),
                "separate_over_fused": round(separate / fused, 3),
            }
    report = {
        **report_head("fused_members"),
        "device": torch.cuda.get_device_name() if device == "cuda" else "cpu",
        "settings": {k: v for k, v in vars(args).items() if k != "json"},
        "rows": rows,
    }
    publish(report, _markdown, Path(args.json), began)


def _markdown(report: dict[str, Any]) -> str:
    lines = [
        f"fused members on {report['device']} ({report['machine']})",
        "",
        "| cell, members | separate ms / group step | fused ms / group step | separate / fused |",
        "|---|---|---|---|",
    ]
    for name, row in report["rows"].items():
        lines.append(
            f"| {name} | {row['separate_ms_per_group_step']} | {row['fused_ms_per_group_step']} "
            f"| {row['separate_over_fused']} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
