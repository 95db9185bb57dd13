"""Sampling from an RNN's per-step conditional distribution, Deep Learning 10.2.3.

`next_token` draws y(t) from the logits of one step: greedily, with a temperature, or from the
top k. `generate` runs an encoder-decoder until its sequences end, in one of the book's three
ways (`stop`, by default the one the network was built with): the EOS symbol (`eos`), a
Bernoulli stop output (`bernoulli`), or a length output that fixes tau before sampling starts
(`length`). Every network was trained to emit EOS, so `eos` suits any; the other two need the
network's own output. `beam_search` keeps the `beam_size` most likely prefixes instead.
`sample_language_model` continues a prefix with a `Recurrent` language model until EOS, and
`continuation` continues one prompt with any language model.

Generated sequences are (B, U) int64, padded with PAD, and the lengths count the last token
(EOS included when `eos` ends them), like `y_len` in `seqmodels.batch`.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn

from seqmodels.batch import BOS, EOS, PAD
from seqmodels.models.seq2seq import DecoderState, Memory, Seq2SeqArchitecture
from seqmodels.models.sequence import Recurrent

STOPS = ("eos", "bernoulli", "length")  # the ways a generated sequence ends, 10.2.3


class Generated(NamedTuple):
    tokens: torch.Tensor  # (B, U) int64, PAD after each sequence's end
    lengths: torch.Tensor  # (B,) int64


def next_token(
    logits: torch.Tensor,
    greedy: bool = False,
    temperature: float = 1.0,
    top_k: int = 0,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """One draw from softmax(logits / temperature), restricted to the top k when k > 0:
    (B, V) -> (B,). Greedy takes the argmax; a temperature below 1 sharpens, above 1 flattens."""
    if greedy:
        return logits.argmax(-1)
    if temperature <= 0:
        raise ValueError("temperature must be > 0; use greedy=True for the argmax")
    logits = logits / temperature
    if top_k > 0:
        kth = logits.topk(min(top_k, logits.shape[-1]), dim=-1).values[:, -1:]  # (B, 1)
        logits = logits.masked_fill(logits < kth, float("-inf"))
    probs = torch.softmax(logits, dim=-1)
    return torch.multinomial(probs, 1, generator=generator)[:, 0]


def _lengths_from_head(
    length_logits: torch.Tensor, max_length: int, greedy: bool, generator: torch.Generator | None
) -> torch.Tensor:
    """tau from the length output, 1..max_length: (B, max_length + 1) -> (B,)."""
    logits = length_logits[:, : max_length + 1].clone()
    logits[:, 0] = float("-inf")  # a sequence has at least one token
    return next_token(logits, greedy=greedy, generator=generator)


def _stop_of(net: Seq2SeqArchitecture, stop: str | None) -> str:
    """`stop`, or the network's own way where None, checked against the outputs it has."""
    stop = net.stop if stop is None else stop
    if stop not in STOPS:
        raise ValueError(f"stop {stop!r} is not one of: {', '.join(STOPS)}")
    if stop == "bernoulli" and net.stop_head is None:
        raise ValueError("stop 'bernoulli' needs the stop output of a network built with it")
    if stop == "length" and net.length_head is None:
        raise ValueError("stop 'length' needs the length output of a network built with it")
    return stop


@torch.no_grad()
def generate(
    net: Seq2SeqArchitecture,
    x: torch.Tensor,
    x_len: torch.Tensor,
    max_length: int | None = None,
    greedy: bool = True,
    temperature: float = 1.0,
    top_k: int = 0,
    generator: torch.Generator | None = None,
    stop: str | None = None,
) -> Generated:
    """Sample target sequences for the sources x (B, S), x_len (B,), ending them by `stop`
    (default: the network's own way, `net.stop`), and at `max_length` (default
    `net.max_length`) at the latest.

    - `eos`: a sequence ends with the step that emits EOS.
    - `bernoulli`: after each token, stop ~ Bernoulli(sigmoid(stop logit)) (greedy: p > 1/2).
    - `length`: tau is drawn from the length output first; exactly tau tokens follow.

    Raises:
        ValueError: `stop` is none of STOPS, or needs an output the network lacks.
    """
    stop = _stop_of(net, stop)
    was_training = net.training
    net.eval()
    max_length = max_length or net.max_length
    B = x.shape[0]
    memory = net.encode(x, x_len)
    state = net.start(memory)
    planned = None
    if stop == "length":
        length_logits = net.length_logits(memory)
        assert length_logits is not None
        planned = _lengths_from_head(length_logits, max_length, greedy, generator)
    token = torch.full((B,), BOS, dtype=torch.long, device=x.device)
    done = torch.zeros(B, dtype=torch.bool, device=x.device)
    lengths = torch.zeros(B, dtype=torch.long, device=x.device)
    tokens = []
    for t in range(max_length):
        logits, stop_logit, state = net.step(token, memory, state)
        token = next_token(logits, greedy, temperature, top_k, generator)
        token = token.masked_fill(done, PAD)
        tokens.append(token)
        lengths = lengths + (~done).long()
        if stop == "eos":
            ends = token == EOS
        elif stop == "bernoulli":
            assert stop_logit is not None
            p = torch.sigmoid(stop_logit)
            ends = p > 0.5 if greedy else torch.bernoulli(p, generator=generator).bool()
        else:
            assert planned is not None
            ends = planned == t + 1
        done = done | ends
        if bool(done.all()):
            break
    net.train(was_training)
    return Generated(torch.stack(tokens, dim=1), lengths)


def _select_memory(memory: Memory, index: torch.Tensor) -> Memory:
    return type(memory)(*(m.index_select(0, index) for m in memory))


@torch.no_grad()
def beam_search(
    net: Seq2SeqArchitecture,
    x: torch.Tensor,
    x_len: torch.Tensor,
    beam_size: int = 4,
    max_length: int | None = None,
    stop: str | None = None,
) -> Generated:
    """The most likely target under a beam of `beam_size` prefixes, for each source.

    Hypotheses end with EOS (`stop` = `eos`), or after the length output's most likely tau
    (`stop` = `length`); `stop` defaults to the network's own way. At each step the beam's
    `beam_size` best extensions are taken; those that end are set aside, and the rest go on,
    so the beam narrows as hypotheses end. A source's search stops when no hypothesis goes on
    or `beam_size` have ended, and the ended hypothesis with the highest log-probability wins.
    With `beam_size` 1 it is greedy decoding. A Bernoulli stop output is sampled with
    `generate` instead.

    All sources search at once, as B x beam_size rows of one decoder batch; a narrowed beam's
    empty places hold a log-probability of -inf. The only read back to the host is whether
    every source has stopped, once a step.
    """
    stop = _stop_of(net, stop)
    if stop == "bernoulli":
        raise ValueError("beam_search ends hypotheses by 'eos' or 'length'; use generate()")
    if beam_size < 1:
        raise ValueError("beam_size must be >= 1")
    was_training = net.training
    net.eval()
    max_length = max_length or net.max_length
    device, B, k = x.device, x.shape[0], beam_size
    memory = net.encode(x, x_len)
    tau = torch.full((B,), max_length, dtype=torch.long, device=device)
    if stop == "length":
        length_logits = net.length_logits(memory)
        assert length_logits is not None
        tau = _lengths_from_head(length_logits, max_length, True, None)
    sources = torch.arange(B, device=device)
    memory = _select_memory(memory, sources.repeat_interleave(k))  # (B k) rows, k per source
    state: DecoderState = net.start(memory)
    scores = torch.full((B, k), float("-inf"), device=device)
    scores[:, 0] = 0.0  # one hypothesis, the empty prefix, to start from
    prefixes = torch.full((B, k, max_length), PAD, dtype=torch.long, device=device)
    last = torch.full((B * k,), BOS, dtype=torch.long, device=device)
    best = torch.full((B,), float("-inf"), device=device)  # the best ended hypothesis so far
    best_prefix = torch.full((B, max_length), PAD, dtype=torch.long, device=device)
    best_length = torch.zeros(B, dtype=torch.long, device=device)
    ended = torch.zeros(B, dtype=torch.long, device=device)  # hypotheses ended, per source
    for t in range(max_length):
        logits, _, state = net.step(last, memory, state)
        V = logits.shape[-1]
        logp = torch.log_softmax(logits, dim=-1).view(B, k, V) + scores[..., None]
        top, flat = logp.view(B, k * V).topk(min(k, k * V), dim=-1)  # (B, k), best first
        beam, token = flat // V, flat % V
        live = top > float("-inf")
        grown = prefixes.gather(1, beam[..., None].expand(-1, -1, max_length)).clone()
        grown[:, :, t] = token
        ends = live & (t + 1 == tau)[:, None]  # tau reached: every hypothesis ends
        if stop == "eos":
            ends = ends | (live & (token == EOS))
        # the best hypothesis ending now; on a tie the earlier one stays, as the first found
        now = top.masked_fill(~ends, float("-inf"))
        now_best, at = now.max(dim=1)
        better = now_best > best
        best = torch.where(better, now_best, best)
        best_prefix = torch.where(better[:, None], grown[sources, at], best_prefix)
        best_length = best_length.masked_fill(better, t + 1)
        ended = ended + ends.sum(dim=1)
        goes_on = live & ~ends
        stopped = ~goes_on.any(dim=1) | (ended >= k)  # (B,)
        scores = top.masked_fill(~goes_on | stopped[:, None], float("-inf"))
        if bool(stopped.all()):
            break
        prefixes = grown
        index = (sources[:, None] * k + beam).flatten()
        state = net.select(memory, state, index)
        last = token.flatten()
    net.train(was_training)
    U = int(best_length.max())
    return Generated(best_prefix[:, :U], best_length)


@torch.no_grad()
def sample_language_model(
    net: Recurrent,
    prefix: torch.Tensor,
    max_length: int,
    greedy: bool = False,
    temperature: float = 1.0,
    top_k: int = 0,
    generator: torch.Generator | None = None,
) -> Generated:
    """Continue `prefix` (B, P) ids with a `Recurrent` language model, one token at a time
    from the state it reached, until EOS or `max_length` new tokens. Returns the new tokens."""
    was_training = net.training
    net.eval()
    logits, state = net.run(prefix)
    B = prefix.shape[0]
    done = torch.zeros(B, dtype=torch.bool, device=prefix.device)
    lengths = torch.zeros(B, dtype=torch.long, device=prefix.device)
    tokens = []
    for _ in range(max_length):
        token = next_token(logits[:, -1], greedy, temperature, top_k, generator)
        token = token.masked_fill(done, PAD)
        tokens.append(token)
        lengths = lengths + (~done).long()
        done = done | (token == EOS)
        if bool(done.all()):
            break
        logits, state = net.run(token[:, None], state)
    net.train(was_training)
    return Generated(torch.stack(tokens, dim=1), lengths)


@torch.no_grad()
def continuation(
    net: nn.Module,
    prefix: torch.Tensor,
    max_length: int,
    greedy: bool = False,
    temperature: float = 1.0,
    top_k: int = 0,
    generator: torch.Generator | None = None,
) -> list[int]:
    """The new tokens a language model draws after `prefix` (1, P), to EOS or `max_length`.

    A `Recurrent` network resumes from its state (`sample_language_model`); any other (deep,
    bidirectional) has none to resume, so it reads the whole sequence again at every step.
    """
    if isinstance(net, Recurrent):
        out = sample_language_model(net, prefix, max_length, greedy, temperature, top_k, generator)
        return out.tokens[0, : int(out.lengths[0])].tolist()
    tokens, new = prefix, []
    for _ in range(max_length):
        logits = net(tokens)[:, -1]  # (1, V): the next token's
        token = next_token(logits, greedy, temperature, top_k, generator)  # (1,)
        new.append(int(token))
        if new[-1] == EOS:
            break
        tokens = torch.cat([tokens, token[:, None]], dim=1)
    return new


__all__ = [
    "STOPS",
    "Generated",
    "beam_search",
    "continuation",
    "generate",
    "next_token",
    "sample_language_model",
]
