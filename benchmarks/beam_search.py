"""Beam search over a batch of sources at once, against one source at a time.

`seqmodels.generate.beam_search` searches all B sources together, as B x beam rows of one
decoder batch, and reads one flag back to the host per step. The baseline, run in the same
process on the same network and sources, is the per-source search it replaced: one source at
a time, a Python list per hypothesis, and a read-back of every candidate at every step. Both
must return the same targets; the script checks that before it times anything.

The network is an attention encoder-decoder (GRU, untrained, EOS made unlikely so that every
hypothesis runs to `max_length`: the longest search). Each size is timed `--repeats` times,
the two searches alternating; figures are medians, and the verdict is the ratio of medians.

    python benchmarks/beam_search.py [--device cpu|cuda] [--sources 1 16 64] [--beam 4]
                                     [--max-length 32] [--repeats 5] [--json PATH]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch
from common import machine, result_path, versions, write_atomically

from seqmodels.batch import BOS, EOS, FIRST_SYMBOL, PAD
from seqmodels.config import ModelConfig
from seqmodels.generate import Generated, _lengths_from_head, _select_memory, beam_search
from seqmodels.models import build_model
from seqmodels.models.seq2seq import DecoderState, Seq2SeqArchitecture

ROOT = Path(__file__).resolve().parents[1]
RESULT = result_path("beam_search")


@torch.no_grad()
def per_source(
    net: Seq2SeqArchitecture, x: torch.Tensor, x_len: torch.Tensor, k: int, max_length: int
) -> Generated:
    """The baseline: the beam search seqlab had before, one source at a time."""
    results = [_one(net, x[b : b + 1], x_len[b : b + 1], k, max_length) for b in range(len(x))]
    U = max(len(r) for r in results)
    tokens = torch.full((len(results), U), PAD, dtype=torch.long, device=x.device)
    for b, r in enumerate(results):
        tokens[b, : len(r)] = torch.tensor(r, dtype=torch.long)
    lengths = torch.tensor([len(r) for r in results], dtype=torch.long, device=x.device)
    return Generated(tokens, lengths)


def _one(
    net: Seq2SeqArchitecture, x: torch.Tensor, x_len: torch.Tensor, k: int, max_length: int
) -> list[int]:
    memory = net.encode(x, x_len)
    tau = max_length
    if net.stop == "length":
        length_logits = net.length_logits(memory)
        assert length_logits is not None
        tau = int(_lengths_from_head(length_logits, max_length, True, None)[0])
    state: DecoderState = net.start(memory)
    prefixes: list[list[int]] = [[]]
    scores = x.new_zeros(1, dtype=torch.float)
    last = torch.full((1,), BOS, dtype=torch.long, device=x.device)
    finished: list[tuple[float, list[int]]] = []
    for t in range(tau):
        beams = len(prefixes)
        mem = _select_memory(memory, torch.zeros(beams, dtype=torch.long, device=x.device))
        logits, _, state = net.step(last, mem, state)
        logp = torch.log_softmax(logits, dim=-1) + scores[:, None]
        V = logp.shape[-1]
        top = logp.flatten().topk(min(k, logp.numel()))
        beam_of, token_of = top.indices // V, top.indices % V
        keep: list[int] = []
        new_prefixes, new_scores = [], []
        for score, beam, token in zip(top.values, beam_of, token_of, strict=True):
            prefix = [*prefixes[int(beam)], int(token)]
            if (net.stop == "eos" and int(token) == EOS) or t + 1 == tau:
                finished.append((float(score), prefix))
            else:
                keep.append(int(beam))
                new_prefixes.append(prefix)
                new_scores.append(score)
        if not new_prefixes or len(finished) >= k:
            break
        state = net.select(mem, state, torch.tensor(keep, dtype=torch.long, device=x.device))
        prefixes, scores = new_prefixes, torch.stack(new_scores)
        last = torch.tensor([p[-1] for p in prefixes], dtype=torch.long, device=x.device)
    return max(finished, key=lambda f: f[0])[1]


def timed(search: Any, *args: Any, device: str) -> tuple[float, Generated]:
    if device == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    out = search(*args)
    if device == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start, out


def same(a: Generated, b: Generated) -> bool:
    if not torch.equal(a.lengths, b.lengths):
        return False
    return all(
        a.tokens[i, :n].tolist() == b.tokens[i, :n].tolist() for i, n in enumerate(a.lengths)
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--sources", type=int, nargs="+", default=[1, 16, 64])
    parser.add_argument("--beam", type=int, default=4)
    parser.add_argument("--max-length", type=int, default=32)
    parser.add_argument("--hidden-size", type=int, default=128)
    parser.add_argument("--vocab", type=int, default=40)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--json", type=Path, default=RESULT)
    args = parser.parse_args()
    torch.manual_seed(0)
    torch.set_num_threads(1 if args.device == "cpu" else torch.get_num_threads())
    options = {"embedding_size": 32, "attention_size": 32, "max_length": args.max_length}
    config = ModelConfig("attention", "gru", args.hidden_size, arch_options=options)
    net = build_model(config, args.vocab, args.vocab).to(args.device).eval()
    with torch.no_grad():
        net.out.bias[EOS] = -20.0  # every hypothesis runs to max_length
    began = time.perf_counter()
    rows = []
    for B in args.sources:
        x = torch.randint(FIRST_SYMBOL, args.vocab, (B, 12), device=args.device)
        x_len = torch.full((B,), 12, device=args.device)
        search_args = (net, x, x_len, args.beam, args.max_length)
        _, batched = timed(beam_search, *search_args, device=args.device)  # warm-up, and
        _, reference = timed(per_source, *search_args, device=args.device)  # the check
        if not same(batched, reference):
            raise SystemExit(f"B={B}: the two searches returned different targets")
        times: dict[str, list[float]] = {"per_source": [], "batched": []}
        for _ in range(args.repeats):
            times["per_source"].append(timed(per_source, *search_args, device=args.device)[0])
            times["batched"].append(timed(beam_search, *search_args, device=args.device)[0])
        medians = {name: statistics.median(seconds) for name, seconds in times.items()}
        rows.append(
            {
                "sources": B,
                "per_source_ms": medians["per_source"] * 1e3,
                "batched_ms": medians["batched"] * 1e3,
                "speedup": medians["per_source"] / medians["batched"],
                "runs_ms": {n: [s * 1e3 for s in v] for n, v in times.items()},
            }
        )
    report = {
        "benchmark": "beam_search",
        "machine": machine(),
        "device": torch.cuda.get_device_name() if args.device == "cuda" else "cpu",
        "versions": versions(("torch",)),
        "sizes": {
            "model": f"attention GRU H={args.hidden_size}, vocab {args.vocab}, source length 12",
            "beam": args.beam,
            "max_length": args.max_length,
            "torch_threads": torch.get_num_threads(),
            "repeats": args.repeats,
        },
        "rows": rows,
        "seconds": time.perf_counter() - began,
    }
    lines = [
        f"beam search, beam {args.beam}, {args.max_length} steps, on {report['device']} "
        f"({report['machine']})",
        "",
        "| sources | one at a time, ms | batched, ms | speedup |",
        "|---:|---:|---:|---:|",
    ]
    for row in rows:
        lines.append(
            f"| {row['sources']} | {row['per_source_ms']:.1f} | {row['batched_ms']:.1f} | "
            f"{row['speedup']:.1f}x |"
        )
    print("\n".join(lines))
    print(f"\n{report['seconds']:.0f} s in all; figures in {args.json}")
    write_atomically(args.json, report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
