"""Sequence-in architectures of chapter 10: per-step outputs, output recurrence, bidirectional,
deep and autoencoding networks. Batch-first throughout: inputs (B, T, F) or token ids (B, T)."""

from __future__ import annotations

import torch
from torch import nn

from seqmodels.config import DeepOptions, ModelConfig, OutputRecurrentOptions, TokenOptions
from seqmodels.models.architectures import Architecture, recurrence_for, register
from seqmodels.models.cells import State, StepCell
from seqmodels.models.layers import InputLayer, at_lengths, mlp, reverse_padded
from seqmodels.models.recurrences import (
    Feedforward,
    Recurrence,
    RecurrentState,
    Unrolled,
    build_recurrence,
)

# --- design pattern 1: an output at every step (10.2, eqs 10.8-10.11) -------------------------


@register("recurrent")
class Recurrent(Architecture):
    """Hidden-to-hidden recurrence with an output at every step: design pattern 1 (fig 10.3),
    Deep Learning eqs 10.8-10.11, `o(t) = c + V h(t)`.

    With `embedding_size` > 0 it reads token ids and its outputs are next-token logits: a
    language model. Shapes: `forward(x: (B, T, F) or (B, T), x_len: (B,) | None, y ignored) ->
    (B, T, O)`; the lengths matter only to a bidirectional recurrence, whose backward direction
    starts at each sequence's own end.
    """

    options_type = TokenOptions
    book = "10.2, fig 10.3, eqs 10.8-10.11"
    summary = "hidden-to-hidden recurrence with an output at every step (pattern 1)"

    def __init__(self, inputs: InputLayer, recurrence: Recurrence, output_size: int) -> None:
        super().__init__()
        self.inputs = inputs
        self.recurrence = recurrence
        self.head = nn.Linear(recurrence.output_size, output_size)

    @classmethod
    def from_config(cls, config: ModelConfig, input_size: int, output_size: int) -> Recurrent:
        options: TokenOptions = config.arch()
        inputs = InputLayer(input_size, options.embedding_size)
        return cls(inputs, recurrence_for(config, inputs.output_size), output_size)

    def run(
        self, x: torch.Tensor, state: RecurrentState | None = None
    ) -> tuple[torch.Tensor, RecurrentState]:
        """From `state` on, returning the final state too: for sampling and truncated BPTT."""
        h, state = self.recurrence.run(self.inputs(x), state)  # (B, T, D*H)
        return self.head(h), state  # eq 10.10: o(t) = c + V h(t)

    def forward(
        self, x: torch.Tensor, x_len: torch.Tensor | None = None, y: torch.Tensor | None = None
    ) -> torch.Tensor:
        h, _ = self.recurrence.run(self.inputs(x), x_len=x_len)  # (B, T, D*H)
        return self.head(h)


# --- design pattern 2: output-to-hidden recurrence (10.2.1, fig 10.4) -------------------------


def own_output_probability(progress: float, schedule_end: float) -> float:
    """Scheduled sampling's schedule (Bengio et al. 2015), linear in training progress: the
    probability of feeding the model's own output rises from 0 at the start of training to 1
    at `schedule_end` (a fraction of all training steps) and stays there."""
    return min(1.0, max(0.0, progress) / schedule_end)


@register("output_recurrent")
class OutputRecurrent(Architecture):
    """Output-to-hidden recurrence (Jordan), Deep Learning 10.2.1 and fig 10.4:
    `h(t) = act(b + W o(t-1) + U x(t))`, `o(t) = c + V h(t)`.

    Only o(t-1) carries the past into the future, so it is less powerful than pattern 1; in
    exchange, teacher forcing (fig 10.6) feeds y(t-1) in place of o(t-1), so in training every
    step can run in parallel. `training` chooses what is fed back in training:
    `teacher_forcing` (y(t-1)), `free_running` (the model's own o(t-1)) or `scheduled_sampling`
    (own output with probability `own_output_probability(progress)`, per sequence and step).
    In evaluation it always runs free, as it must at test time.

    `hidden_to_hidden=False` is the figure's network (cells tanh or relu, one feedforward
    layer per step); `True` keeps the chosen cell's own recurrence and adds o(t-1) to its input,
    which works with every cell. `set_progress` (0 to 1) moves the schedule during training.
    Shapes: `forward(x: (B, T, F), x_len ignored, y: (B, T, O) | None) -> (B, T, O)`.
    """

    options_type = OutputRecurrentOptions
    book = "10.2.1, figs 10.4 and 10.6"
    summary = "output-to-hidden recurrence, trained with teacher forcing (pattern 2)"

    def __init__(
        self,
        recurrence: Recurrence,
        output_size: int,
        training_mode: str = "teacher_forcing",
        schedule_end: float = 1.0,
    ) -> None:
        super().__init__()
        self.recurrence = recurrence
        self.head = nn.Linear(recurrence.output_size, output_size)
        self.output_size = output_size
        self.training_mode = training_mode
        self.schedule_end = schedule_end
        self.progress = 0.0  # fraction of training done (`set_progress`)

    @classmethod
    def from_config(cls, config: ModelConfig, input_size: int, output_size: int) -> OutputRecurrent:
        options: OutputRecurrentOptions = config.arch()
        width = input_size + output_size  # reads [x(t); o(t-1)]
        if options.hidden_to_hidden:
            recurrence = recurrence_for(config, width)
        else:
            recurrence = Feedforward(width, config.hidden_size, config.cell)
        return cls(recurrence, output_size, options.training, options.schedule_end)

    def set_progress(self, progress: float) -> None:
        """Scheduled sampling's clock: `progress`, the fraction of training done, sets the
        probability of feeding the model's own output (`own_output_probability`)."""
        self.progress = progress

    def forward(
        self, x: torch.Tensor, x_len: torch.Tensor | None = None, y: torch.Tensor | None = None
    ) -> torch.Tensor:
        """In training, y(t-1) is fed back as `training` says; without y, and in evaluation, the
        network runs free. Every step reads x(t) alone, so x_len changes nothing."""
        if not self.training or y is None:
            return self._step_by_step(x, None, 1.0)
        if self.training_mode == "teacher_forcing":
            fed = torch.cat([torch.zeros_like(y[:, :1]), y[:, :-1]], dim=1)  # (B, T, O): y(t-1)
            h, _ = self.recurrence.run(torch.cat([x, fed], dim=-1))  # all steps in parallel
            return self.head(h)
        if self.training_mode == "free_running":
            return self._step_by_step(x, y, 1.0)
        return self._step_by_step(x, y, own_output_probability(self.progress, self.schedule_end))

    def _step_by_step(self, x: torch.Tensor, y: torch.Tensor | None, p_own: float) -> torch.Tensor:
        """Feed o(t-1) with probability p_own, else y(t-1); one step at a time."""
        B, T, _ = x.shape
        o = x.new_zeros(B, self.output_size)  # o(0) and y(0): nothing before the first step
        state: RecurrentState | None = None
        outputs = []
        for t in range(T):
            fed = o
            if y is not None and t > 0 and p_own < 1.0:
                own = torch.rand(B, 1, device=x.device) < p_own  # (B, 1), per sequence
                fed = torch.where(own, o, y[:, t - 1])
            h, state = self.recurrence.run(torch.cat([x[:, t : t + 1], fed[:, None]], -1), state)
            o = self.head(h[:, 0])  # (B, O)
            outputs.append(o)
        return torch.stack(outputs, dim=1)  # (B, T, O)


# --- bidirectional RNNs (10.3) ----------------------------------------------------------------


@register("bidirectional")
class Bidirectional(Architecture):
    """Bidirectional RNN, Deep Learning 10.3 (fig 10.11): h(t) reads x(1..t), g(t) reads
    x(t..tau), and `o(t) = c + V [h(t); g(t)]` sees both, most sensitive to inputs near t.

    Each direction of each layer is its own recurrence (on the fast path when the cell has
    one); the backward one reads every sequence reversed within its length, so padded batches
    give each sequence exactly the states it would get alone. Layer l > 0 reads [h; g].
    Shapes: `forward(x: (B, T, F) or (B, T), x_len: (B,) | None, y ignored) -> (B, T, O)`.
    """

    options_type = TokenOptions
    book = "10.3, fig 10.11"
    summary = "forward and backward recurrences; each output sees the past and the future"

    def __init__(
        self, inputs: InputLayer, directions: list[tuple[Recurrence, Recurrence]], output_size: int
    ) -> None:
        super().__init__()
        self.inputs = inputs
        self.layers = nn.ModuleList(nn.ModuleList(pair) for pair in directions)
        self.head = nn.Linear(2 * directions[-1][0].output_size, output_size)

    @classmethod
    def from_config(cls, config: ModelConfig, input_size: int, output_size: int) -> Bidirectional:
        options: TokenOptions = config.arch()
        inputs = InputLayer(input_size, options.embedding_size)
        directions = []
        for layer in range(config.num_layers):
            width = inputs.output_size if layer == 0 else 2 * config.hidden_size
            pair = (
                recurrence_for(config, width, 1, False),
                recurrence_for(config, width, 1, False),
            )
            directions.append(pair)
        return cls(inputs, directions, output_size)

    def states(self, x: torch.Tensor, x_len: torch.Tensor | None = None) -> torch.Tensor:
        """[h(t); g(t)] of the top layer: (B, T, 2H)."""
        z = self.inputs(x)
        for forward, backward in self.layers:
            h = forward(z)  # (B, T, H)
            g = reverse_padded(backward(reverse_padded(z, x_len)), x_len)  # (B, T, H)
            z = torch.cat([h, g], dim=-1)  # (B, T, 2H)
        return z

    def forward(
        self, x: torch.Tensor, x_len: torch.Tensor | None = None, y: torch.Tensor | None = None
    ) -> torch.Tensor:
        return self.head(self.states(x, x_len))


# --- deep RNNs (10.5, fig 10.13) --------------------------------------------------------------


class DeepTransition(StepCell):
    """Deep hidden-to-hidden transition, Deep Learning fig 10.13b: an MLP inside the step,
    `h(t) = MLP(cell(x(t), h(t-1)))`; with `skip`, `h(t) = c + MLP(c)` (fig 10.13c), which
    shortens the path from h(t-1) to h(t) that the extra depth lengthens."""

    def __init__(self, inner: StepCell, layers: int, skip: bool) -> None:
        super().__init__(inner.input_size, inner.hidden_size, inner.state_count)
        self.inner = inner
        self.mlp = mlp(inner.hidden_size, inner.hidden_size, layers)
        self.skip = skip

    def project(self, x: torch.Tensor) -> torch.Tensor:
        return self.inner.project(x)

    def initial_state(self, batch_size: int, like: torch.Tensor) -> State:
        return self.inner.initial_state(batch_size, like)

    @property
    def recurrent_weight(self) -> torch.Tensor | None:
        return self.inner.recurrent_weight  # the wrapped cell's W; the MLP comes after it

    def forward(self, ux: torch.Tensor, state: State) -> State:
        c, *rest = self.inner(ux, state)
        h = c + self.mlp(c) if self.skip else self.mlp(c)
        return (h, *rest)  # an LSTM keeps its own cell state s(t)


@register("deep")
class Deep(Architecture):
    """Deep recurrent network, Deep Learning 10.5 and fig 10.13: depth in input-to-hidden,
    hidden-to-hidden (`DeepTransition`) and hidden-to-output, plus `num_layers` stacked
    recurrences (fig 10.13a). `skip` adds residual connections around every deep part and
    between stacked layers, so the shortest path through the depth stays short.

    With `embedding_size` > 0 it reads token ids. With `output: final` the readout sees each
    sequence's own last state, at x_len - 1, so padding never reaches it.
    Shapes: `forward(x: (B, T, F) or (B, T), x_len: (B,) | None, y ignored) -> (B, T, O)`, or
    (B, O) with `output: final`.
    """

    options_type = DeepOptions
    book = "10.5, fig 10.13"
    summary = "depth in input-to-hidden, hidden-to-hidden and hidden-to-output, plus stacking"

    def __init__(
        self,
        input_mlp: nn.Module,
        layers: list[Recurrence],
        output_mlp: nn.Module,
        output_size: int,
        skip: bool = False,
        every_step: bool = True,
        inputs: InputLayer | None = None,
    ) -> None:
        super().__init__()
        self.inputs = inputs if inputs is not None else InputLayer(layers[0].input_size)
        self.input_mlp = input_mlp
        self.layers = nn.ModuleList(layers)
        self.output_mlp = output_mlp
        self.head = nn.Linear(layers[-1].output_size, output_size)
        self.skip = skip
        self.every_step = every_step

    @classmethod
    def from_config(cls, config: ModelConfig, input_size: int, output_size: int) -> Deep:
        options: DeepOptions = config.arch()
        H = config.hidden_size
        inputs = InputLayer(input_size, options.embedding_size)
        input_mlp = mlp(inputs.output_size, H, options.input_layers)
        width = H if options.input_layers else inputs.output_size
        layers: list[Recurrence] = []
        for layer in range(config.num_layers):
            fast = options.transition_layers == 0
            rec = build_recurrence(
                config.cell, config.options(), width if layer == 0 else H, H, fast_path=fast
            )
            if not fast:
                assert isinstance(rec, Unrolled)
                inner = rec.layers[0][0]
                rec.layers[0][0] = DeepTransition(inner, options.transition_layers, options.skip)
            layers.append(rec)
        output_mlp = mlp(H, H, options.output_layers)
        every_step = options.output == "every_step"
        return cls(input_mlp, layers, output_mlp, output_size, options.skip, every_step, inputs)

    def forward(
        self, x: torch.Tensor, x_len: torch.Tensor | None = None, y: torch.Tensor | None = None
    ) -> torch.Tensor:
        x = self.inputs(x)  # (B, T, F)
        z = self.input_mlp(x)
        if self.skip and len(self.input_mlp) and z.shape == x.shape:
            z = z + x
        for i, layer in enumerate(self.layers):
            h = layer(z)  # (B, T, H); unidirectional, so x_len changes nothing here
            z = h + z if self.skip and i > 0 else h  # residual between stacked layers
        if not self.every_step:
            z = at_lengths(z, x_len)  # (B, H): each sequence's h(tau)
        out = self.output_mlp(z)
        if self.skip and len(self.output_mlp):
            out = out + z
        return self.head(out)


# --- sequence autoencoder (reading note 2) ----------------------------------------------------


@register("autoencoder")
class SequenceAutoencoder(Architecture):
    """Sequence autoencoder (reading note 2; Deep Learning 10.4 with the input as the target):
    an encoder reads x(1..tau) into h(tau), and a decoder must rebuild x(1..tau) from h(tau)
    alone. The decoder starts from h(tau) and reads it again at every step but sees no x, so
    all it knows about the input passed through the code.

    On a padded batch the code is each sequence's own summary (`Recurrence.final` at x_len);
    the decoder still runs all T steps, and what it emits past x_len is for the loss to mask.
    Token ids (B, T) are read one-hot. Shapes: `forward(x: (B, T, F), x_len: (B,) | None,
    y ignored) -> (B, T, output_size)`, output_size = F to reconstruct; `encode(x, x_len) ->
    (B, D*H)`.
    """

    book = "10.4; reading note 2"
    summary = "encode a sequence into h(tau), then rebuild it from that code alone"

    def __init__(
        self,
        encoder: Recurrence,
        decoder: Recurrence,
        output_size: int,
        inputs: InputLayer | None = None,
    ) -> None:
        super().__init__()
        self.inputs = inputs if inputs is not None else InputLayer(encoder.input_size)
        self.encoder = encoder
        self.decoder = decoder
        self.bridge = nn.Linear(encoder.output_size, decoder.hidden_size)
        self.head = nn.Linear(decoder.output_size, output_size)

    @classmethod
    def from_config(
        cls, config: ModelConfig, input_size: int, output_size: int
    ) -> SequenceAutoencoder:
        inputs = InputLayer(input_size)  # token ids one-hot
        encoder = recurrence_for(config, inputs.output_size)
        decoder = recurrence_for(config, encoder.output_size, bidirectional=False)
        return cls(encoder, decoder, output_size, inputs)

    def encode(self, x: torch.Tensor, x_len: torch.Tensor | None = None) -> torch.Tensor:
        """The code h(tau): (B, T, F) or token ids (B, T) -> (B, D*H)."""
        h = self.encoder(self.inputs(x), x_len)  # (B, T, D*H)
        return self.encoder.final(h, x_len)

    def decode(self, code: torch.Tensor, steps: int) -> torch.Tensor:
        """Rebuild `steps` steps from the code alone: (B, D*H) -> (B, steps, O)."""
        state = self.decoder.state_from_hidden(torch.tanh(self.bridge(code)))
        reread = code[:, None].expand(-1, steps, -1)  # (B, steps, D*H)
        h, _ = self.decoder.run(reread, state)
        return self.head(h)

    def forward(
        self, x: torch.Tensor, x_len: torch.Tensor | None = None, y: torch.Tensor | None = None
    ) -> torch.Tensor:
        return self.decode(self.encode(x, x_len), x.shape[1])


__all__ = [
    "Bidirectional",
    "Deep",
    "DeepTransition",
    "OutputRecurrent",
    "Recurrent",
    "SequenceAutoencoder",
    "own_output_probability",
]
