"""Encoder-decoder architectures, Deep Learning 10.4, on token ids (`seqmodels.batch`).

Sources are x (B, S) int64 with lengths x_len (B,); targets y (B, U) end in EOS and are padded
with PAD. In training the decoder reads BOS, y(1), ..., y(U-1) (teacher forcing) and predicts
y(1..U). `build_model`'s input_size is the source vocabulary size, output_size the target's.

Every decoder exposes one step (`start`, `step`) for generation (`seqmodels.generate`) and a
teacher-forced `forward`. How a sampled sequence ends (10.2.3) is the `stop` option:
`eos` (the EOS symbol), `bernoulli` (a stop output per step, trained alongside) or `length`
(an output that predicts tau from the context before sampling starts).
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn

from seqmodels.batch import BOS
from seqmodels.config import AttentionOptions, DecoderOptions, EncoderDecoderOptions, ModelConfig
from seqmodels.models.architectures import Architecture, recurrence_for, register
from seqmodels.models.layers import at_lengths, reverse_padded
from seqmodels.models.recurrences import Recurrence, RecurrentState


class Memory(NamedTuple):
    """What the encoder hands the decoder, batch-first."""

    states: torch.Tensor  # (B, S, D*H), every source position
    mask: torch.Tensor  # (B, S) bool, True where the source holds a token
    context: torch.Tensor  # (B, D*H), the fixed-size summary C


class DecoderOutput(NamedTuple):
    logits: torch.Tensor  # (B, U, V) next-token logits
    stop_logits: torch.Tensor | None  # (B, U), stop == "bernoulli": "y(t) is the last token"
    length_logits: torch.Tensor | None  # (B, max_length + 1), stop == "length": tau from C


class DecoderState(NamedTuple):
    recurrent: RecurrentState  # the decoder recurrence's own state
    h: torch.Tensor  # (B, H), the last hidden state, which attention queries


class Encoder(nn.Module):
    """Embeds the source and reads it; exact on padded batches.

    The backward direction (when bidirectional) and the reversed source both read each
    sequence reversed within its length, so PADs never come first.
    """

    def __init__(
        self,
        vocab_size: int,
        embedding_size: int,
        forward_rec: Recurrence,
        backward_rec: Recurrence | None,
        reverse_source: bool,
    ) -> None:
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, embedding_size, padding_idx=0)
        self.forward_rec = forward_rec
        self.backward_rec = backward_rec
        self.reverse_source = reverse_source
        self.output_size = forward_rec.output_size * (2 if backward_rec is not None else 1)

    def forward(self, x: torch.Tensor, x_len: torch.Tensor) -> Memory:
        if self.reverse_source:
            x = reverse_padded(x, x_len)
        e = self.embedding(x)  # (B, S, E)
        h = self.forward_rec(e)  # (B, S, H)
        context = at_lengths(h, x_len)  # h(tau) of each sequence, (B, H)
        if self.backward_rec is not None:
            g = reverse_padded(self.backward_rec(reverse_padded(e, x_len)), x_len)  # (B, S, H)
            h = torch.cat([h, g], dim=-1)  # (B, S, 2H)
            context = torch.cat([context, g[:, 0]], dim=-1)  # g(1) has read the whole source
        lengths = x_len.to(x.device, non_blocking=True)  # see seqmodels.batch.HOST_KEYS
        mask = torch.arange(x.shape[1], device=x.device)[None, :] < lengths[:, None]
        return Memory(h, mask, context)


def shift_right(y: torch.Tensor) -> torch.Tensor:
    """Teacher forcing's decoder inputs: BOS, y(1), ..., y(U-1). (B, U) -> (B, U)."""
    return torch.cat([torch.full_like(y[:, :1], BOS), y[:, :-1]], dim=1)


def teacher_forcing_inputs(
    x: torch.Tensor, x_len: torch.Tensor | None, y: torch.Tensor | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """The source lengths (None: every source fills all S positions) and the target that
    teacher forcing reads, which an encoder-decoder's `forward` cannot do without."""
    if y is None:
        raise ValueError(
            "an encoder-decoder's forward is teacher-forced on y; to decode without "
            "it, use seqmodels.generate"
        )
    if x_len is None:
        x_len = torch.full((x.shape[0],), x.shape[1], dtype=torch.long)  # on the host, as a batch's
    return x_len, y


class Seq2SeqArchitecture(Architecture):
    """Base of encoder-decoders: the stop and length outputs, and a step-by-step `forward`.

    Subclasses provide `encode`, `start` and `step`; `forward(x, x_len, y)` returns the
    teacher-forced `DecoderOutput` (`seqmodels.generate` decodes without y).
    """

    options_type = DecoderOptions

    def __init__(
        self, hidden_size: int, context_size: int, vocab_size: int, stop: str, max_length: int
    ) -> None:
        super().__init__()
        self.vocab_size = vocab_size
        self.stop = stop
        self.max_length = max_length
        self.stop_head = nn.Linear(hidden_size, 1) if stop == "bernoulli" else None
        self.length_head = nn.Linear(context_size, max_length + 1) if stop == "length" else None

    def encode(self, x: torch.Tensor, x_len: torch.Tensor) -> Memory:
        raise NotImplementedError  # pragma: no cover - abstract

    def start(self, memory: Memory) -> DecoderState:
        raise NotImplementedError  # pragma: no cover - abstract

    def step(
        self, token: torch.Tensor, memory: Memory, state: DecoderState
    ) -> tuple[torch.Tensor, torch.Tensor | None, DecoderState]:
        """One decoder step from the previous token (B,): (logits (B, V), stop logit (B,) or
        None, next state)."""
        raise NotImplementedError  # pragma: no cover - abstract

    def length_logits(self, memory: Memory) -> torch.Tensor | None:
        """Logits of tau, predicted from C before any token: (B, max_length + 1)."""
        return None if self.length_head is None else self.length_head(memory.context)

    def select(self, memory: Memory, state: DecoderState, index: torch.Tensor) -> DecoderState:
        """The decoder state of rows `index`, for beam search."""
        recurrent = self.decoder.select_state(state.recurrent, index)
        return DecoderState(recurrent, state.h.index_select(0, index))

    def forward(
        self, x: torch.Tensor, x_len: torch.Tensor | None = None, y: torch.Tensor | None = None
    ) -> DecoderOutput:
        x_len, y = teacher_forcing_inputs(x, x_len, y)
        memory = self.encode(x, x_len)
        state = self.start(memory)
        logits, stops = [], []
        for token in shift_right(y).unbind(1):
            step_logits, stop, state = self.step(token, memory, state)
            logits.append(step_logits)
            stops.append(stop)
        stop_logits = torch.stack(stops, 1) if self.stop_head is not None else None
        return DecoderOutput(torch.stack(logits, 1), stop_logits, self.length_logits(memory))


def build_encoder(config: ModelConfig, vocab_size: int, options: DecoderOptions) -> Encoder:
    E = options.embedding_size
    backward = recurrence_for(config, E, bidirectional=False) if config.bidirectional else None
    forward_rec = recurrence_for(config, E, bidirectional=False)
    return Encoder(vocab_size, E, forward_rec, backward, options.reverse_source)


@register("encoder_decoder")
class EncoderDecoder(Seq2SeqArchitecture):
    """RNN encoder-decoder, Deep Learning 10.4 (fig 10.12): the encoder's final state is a
    fixed-size context C; the decoder gets C as its initial state, as an input at every step,
    or both (`context`), and with `feedback` also reads y(t-1), the output-to-hidden
    connection of 10.2.4 that lets it model any distribution over y given C.

    Shapes: `forward(x: (B, S), x_len: (B,), y: (B, U)) -> DecoderOutput`, logits (B, U, V).
    """

    options_type = EncoderDecoderOptions
    book = "10.4, fig 10.12"
    summary = "encoder-decoder: a fixed-size context C from the encoder conditions the decoder"

    def __init__(
        self,
        encoder: Encoder,
        decoder: Recurrence,
        vocab_size: int,
        embedding_size: int,
        context: str = "both",
        feedback: bool = True,
        stop: str = "eos",
        max_length: int = 64,
    ) -> None:
        super().__init__(decoder.hidden_size, encoder.output_size, vocab_size, stop, max_length)
        self.encoder = encoder
        self.decoder = decoder
        self.context = context
        self.embedding = (
            nn.Embedding(vocab_size, embedding_size, padding_idx=0) if feedback else None
        )
        self.bridge = nn.Linear(encoder.output_size, decoder.hidden_size)
        self.out = nn.Linear(decoder.output_size, vocab_size)

    @classmethod
    def from_config(cls, config: ModelConfig, input_size: int, output_size: int) -> EncoderDecoder:
        options: EncoderDecoderOptions = config.arch()
        encoder = build_encoder(config, input_size, options)
        width = options.embedding_size if options.feedback else 0
        width += encoder.output_size if options.context != "initial" else 0
        decoder = recurrence_for(config, width, bidirectional=False)
        return cls(
            encoder,
            decoder,
            output_size,
            options.embedding_size,
            options.context,
            options.feedback,
            options.stop,
            options.max_length,
        )

    def encode(self, x: torch.Tensor, x_len: torch.Tensor) -> Memory:
        return self.encoder(x, x_len)

    def start(self, memory: Memory) -> DecoderState:
        C = memory.context
        h0 = torch.tanh(self.bridge(C))  # (B, H)
        if self.context == "input":
            h0 = torch.zeros_like(h0)  # C reaches the decoder only through its inputs
        return DecoderState(self.decoder.state_from_hidden(h0), h0)

    def _inputs(self, tokens: torch.Tensor, memory: Memory) -> torch.Tensor:
        """The decoder's inputs [embed(y(t-1)); C]: (B, U) -> (B, U, width)."""
        parts = []
        if self.embedding is not None:
            parts.append(self.embedding(tokens))  # (B, U, E)
        if self.context != "initial":
            parts.append(memory.context[:, None].expand(-1, tokens.shape[1], -1))  # (B, U, D*H)
        return torch.cat(parts, dim=-1)

    def step(
        self, token: torch.Tensor, memory: Memory, state: DecoderState
    ) -> tuple[torch.Tensor, torch.Tensor | None, DecoderState]:
        h, recurrent = self.decoder.run(self._inputs(token[:, None], memory), state.recurrent)
        h = h[:, 0]  # (B, H)
        stop = self.stop_head(h)[:, 0] if self.stop_head is not None else None
        return self.out(h), stop, DecoderState(recurrent, h)

    def forward(
        self, x: torch.Tensor, x_len: torch.Tensor | None = None, y: torch.Tensor | None = None
    ) -> DecoderOutput:
        """Teacher forcing: every decoder input is known, so the decoder runs in one call (on
        the fast path where the cell has one) instead of step by step."""
        x_len, y = teacher_forcing_inputs(x, x_len, y)
        memory = self.encode(x, x_len)
        state = self.start(memory)
        h, _ = self.decoder.run(self._inputs(shift_right(y), memory), state.recurrent)
        stop = self.stop_head(h)[..., 0] if self.stop_head is not None else None  # (B, U)
        return DecoderOutput(self.out(h), stop, self.length_logits(memory))


class AdditiveAttention(nn.Module):
    """Bahdanau et al. (2015) attention, Deep Learning 10.4 and 12.4.5.1:
    `e(j) = v^T tanh(W s + U h(j))`, `alpha = softmax(e)` over the valid source positions,
    `c = sum_j alpha(j) h(j)`: a context of variable length instead of one vector C."""

    def __init__(self, query_size: int, key_size: int, attention_size: int) -> None:
        super().__init__()
        self.W = nn.Linear(query_size, attention_size, bias=False)
        self.U = nn.Linear(key_size, attention_size)
        self.v = nn.Linear(attention_size, 1, bias=False)

    def forward(
        self, query: torch.Tensor, keys: torch.Tensor, values: torch.Tensor, mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """query (B, Q), keys = U h (B, S, A), values (B, S, D), mask (B, S) -> c (B, D),
        alpha (B, S)."""
        e = self.v(torch.tanh(self.W(query)[:, None] + keys))[..., 0]  # (B, S)
        e = e.masked_fill(~mask, float("-inf"))  # padded positions get no weight at all
        alpha = torch.softmax(e, dim=-1)
        return torch.bmm(alpha[:, None], values)[:, 0], alpha  # (B, D), (B, S)


class AttentionMemory(NamedTuple):
    states: torch.Tensor
    mask: torch.Tensor
    context: torch.Tensor
    keys: torch.Tensor  # (B, S, A): U h(j), computed once per source instead of once per step


@register("attention")
class AttentionEncoderDecoder(Seq2SeqArchitecture):
    """Encoder-decoder with additive attention (Bahdanau et al. 2015), Deep Learning 10.4:
    at each step the decoder reads `[embed(y(t-1)); c(t)]`, where c(t) attends over every
    encoder state with the query s(t-1), and predicts y(t) from [s(t); c(t)]. Padded source
    positions are masked by x_len. The encoder is bidirectional when the config says so.

    Shapes: `forward(x: (B, S), x_len: (B,), y: (B, U)) -> DecoderOutput`, logits (B, U, V).
    """

    options_type = AttentionOptions
    book = "10.4; 12.4.5.1, fig 12.6"
    summary = "encoder-decoder with additive attention over every source state (Bahdanau)"

    def __init__(
        self,
        encoder: Encoder,
        decoder: Recurrence,
        vocab_size: int,
        embedding_size: int,
        attention_size: int = 32,
        stop: str = "eos",
        max_length: int = 64,
    ) -> None:
        super().__init__(decoder.hidden_size, encoder.output_size, vocab_size, stop, max_length)
        self.encoder = encoder
        self.decoder = decoder
        self.embedding = nn.Embedding(vocab_size, embedding_size, padding_idx=0)
        self.attention = AdditiveAttention(decoder.hidden_size, encoder.output_size, attention_size)
        self.bridge = nn.Linear(encoder.output_size, decoder.hidden_size)
        self.out = nn.Linear(decoder.hidden_size + encoder.output_size, vocab_size)

    @classmethod
    def from_config(
        cls, config: ModelConfig, input_size: int, output_size: int
    ) -> AttentionEncoderDecoder:
        options: AttentionOptions = config.arch()
        encoder = build_encoder(config, input_size, options)
        width = options.embedding_size + encoder.output_size
        decoder = recurrence_for(config, width, bidirectional=False)
        return cls(
            encoder,
            decoder,
            output_size,
            options.embedding_size,
            options.attention_size,
            options.stop,
            options.max_length,
        )

    def encode(self, x: torch.Tensor, x_len: torch.Tensor) -> AttentionMemory:
        states, mask, context = self.encoder(x, x_len)
        return AttentionMemory(states, mask, context, self.attention.U(states))

    def start(self, memory: Memory) -> DecoderState:
        s0 = torch.tanh(self.bridge(memory.context))  # (B, H)
        return DecoderState(self.decoder.state_from_hidden(s0), s0)

    def step(
        self, token: torch.Tensor, memory: AttentionMemory, state: DecoderState
    ) -> tuple[torch.Tensor, torch.Tensor | None, DecoderState]:
        c, _ = self.attention(state.h, memory.keys, memory.states, memory.mask)  # (B, D*H)
        inputs = torch.cat([self.embedding(token), c], dim=-1)[:, None]  # (B, 1, E + D*H)
        s, recurrent = self.decoder.run(inputs, state.recurrent)
        s = s[:, 0]  # (B, H)
        stop = self.stop_head(s)[:, 0] if self.stop_head is not None else None
        return self.out(torch.cat([s, c], dim=-1)), stop, DecoderState(recurrent, s)

    def attention_weights(
        self, x: torch.Tensor, x_len: torch.Tensor, y: torch.Tensor
    ) -> torch.Tensor:
        """alpha(t, j) under teacher forcing: (B, U, S), zero on padded source positions."""
        memory = self.encode(x, x_len)
        state = self.start(memory)
        weights = []
        for token in shift_right(y).unbind(1):
            weights.append(self.attention(state.h, memory.keys, memory.states, memory.mask)[1])
            _, _, state = self.step(token, memory, state)
        return torch.stack(weights, dim=1)


__all__ = [
    "AdditiveAttention",
    "AttentionEncoderDecoder",
    "DecoderOutput",
    "DecoderState",
    "EncoderDecoder",
    "Memory",
    "Seq2SeqArchitecture",
    "shift_right",
]
