"""What a spec may say about a network, without torch: the names of the cells and architectures,
their options, the rules that tie them together, and `ModelConfig`, checked against all three.

`seqlab validate` and every spec check read this module alone, so they answer without loading
torch. The networks themselves (`seqmodels.models`) register under the same names; each
registry checks at import that a class takes exactly the options declared here for its name,
so the two cannot drift apart.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from seqmodels.errors import ConfigError, unknown
from seqmodels.options import CellOptions, check_range, parse_options

# --- cells' options (seqmodels.models.cells) --------------------------------------------------


@dataclass(frozen=True)
class LeakyOptions(CellOptions):
    alpha: float = 0.5  # the fastest group's alpha; with time_scales > 1 the others are slower
    learn_alpha: bool = False
    time_scales: int = 1

    def __post_init__(self) -> None:
        check_range("alpha", 0 <= self.alpha < 1, "must be in [0, 1)")
        check_range("alpha", self.alpha > 0 or not self.learn_alpha, "must be > 0 when learned")
        check_range("time_scales", self.time_scales >= 1, "must be >= 1")


@dataclass(frozen=True)
class LSTMOptions(CellOptions):
    cell_input: Literal["sigmoid", "tanh"] = "tanh"  # "sigmoid" is eq 10.41; "tanh" is torch's
    peepholes: bool = False
    # The forget gate's bias at initialisation. 1, after the chapter (10.10.1, citing Gers et
    # al. 2000) and Jozefowicz et al. 2015: with torch's default, a bias near 0, f(t) starts
    # near 0.5 and the gradient through s(t) halves at every step, faster than a tanh RNN's
    # vanishes; at 1, f(t) starts near 0.73 and the state remembers from the first epoch.
    forget_bias: float = 1.0


@dataclass(frozen=True)
class GRUOptions(CellOptions):
    reset: Literal["before", "after"] = "after"  # "before" is the book's W(r*h); "after" torch's


@dataclass(frozen=True)
class ESNOptions(CellOptions):
    spectral_radius: float = 0.9
    input_scaling: float = 1.0
    leak_rate: float = 1.0

    def __post_init__(self) -> None:
        check_range("spectral_radius", self.spectral_radius > 0, "must be > 0")
        check_range("input_scaling", self.input_scaling > 0, "must be > 0")
        check_range("leak_rate", 0 < self.leak_rate <= 1, "must be in (0, 1]")


@dataclass(frozen=True)
class SkipOptions(CellOptions):
    delay: int = 2

    def __post_init__(self) -> None:
        check_range("delay", self.delay >= 2, "must be >= 2 (a delay of 1 is the Elman cell)")


CELL_OPTIONS: Mapping[str, type[CellOptions]] = {
    "tanh": CellOptions,
    "relu": CellOptions,
    "leaky": LeakyOptions,
    "lstm": LSTMOptions,
    "gru": GRUOptions,
    "esn": ESNOptions,
    "skip": SkipOptions,
}

# --- architectures' options (seqmodels.models.architectures, sequence, seq2seq, recursive) ----


@dataclass(frozen=True)
class ArchOptions:
    """Base of every architecture's options. An architecture with no options uses it as it is."""


@dataclass(frozen=True)
class TokenOptions(ArchOptions):
    """Options of an architecture that reads float features or token ids."""

    embedding_size: int = 0  # 0: float inputs (B, T, F); > 0: token ids (B, T), embedded

    def __post_init__(self) -> None:
        check_range("embedding_size", self.embedding_size >= 0, "must be >= 0")


@dataclass(frozen=True)
class OutputRecurrentOptions(ArchOptions):
    # what is fed back in training: y(t-1), the model's own o(t-1), or a scheduled mix
    training: Literal["teacher_forcing", "free_running", "scheduled_sampling"] = "teacher_forcing"
    schedule_end: float = 1.0  # scheduled sampling: fraction of training at which p reaches 1
    hidden_to_hidden: bool = False  # False: fig 10.4 as drawn, no W h(t-1) path

    def __post_init__(self) -> None:
        check_range("schedule_end", 0 < self.schedule_end <= 1, "must be in (0, 1]")


@dataclass(frozen=True)
class DeepOptions(TokenOptions):
    input_layers: int = 0  # deep input-to-hidden: tanh layers before the recurrence
    transition_layers: int = 0  # deep hidden-to-hidden: tanh layers inside every step
    output_layers: int = 0  # deep hidden-to-output: tanh layers before the readout
    skip: bool = False  # skip connections around each deep part and between stacked layers
    output: Literal["every_step", "final"] = "every_step"

    def __post_init__(self) -> None:
        super().__post_init__()
        for name in ("input_layers", "transition_layers", "output_layers"):
            check_range(name, getattr(self, name) >= 0, "must be >= 0")


@dataclass(frozen=True)
class DecoderOptions(ArchOptions):
    embedding_size: int = 32
    reverse_source: bool = False  # read the source backwards (Sutskever et al. 2014)
    stop: Literal["eos", "bernoulli", "length"] = "eos"  # how sampling ends a sequence, 10.2.3
    max_length: int = 64  # longest generated sequence; the length output's classes are 0..this

    def __post_init__(self) -> None:
        check_range("embedding_size", self.embedding_size >= 1, "must be >= 1")
        check_range("max_length", self.max_length >= 1, "must be >= 1")


@dataclass(frozen=True)
class EncoderDecoderOptions(DecoderOptions):
    context: Literal["initial", "input", "both"] = "both"  # where C enters the decoder
    feedback: bool = True  # y(t) -> h(t+1), 10.2.4: without it outputs are independent given C

    def __post_init__(self) -> None:
        super().__post_init__()
        check_range(
            "feedback",
            self.feedback or self.context != "initial",
            "the decoder needs an input: set feedback: true or context: input or both",
        )


@dataclass(frozen=True)
class AttentionOptions(DecoderOptions):
    attention_size: int = 32

    def __post_init__(self) -> None:
        super().__post_init__()
        check_range("attention_size", self.attention_size >= 1, "must be >= 1")


# --- what each architecture accepts -----------------------------------------------------------


@dataclass(frozen=True)
class Wiring:
    """What an architecture accepts: its options, the cells that make sense for it (None:
    every cell), and a check of the rest of a config, which raises ConfigError naming the
    field."""

    options: type[ArchOptions] = ArchOptions
    cells: tuple[str, ...] | None = None
    check: Callable[[ModelConfig], None] | None = None


def _output_recurrent(config: ModelConfig) -> None:
    options = config.arch()
    assert isinstance(options, OutputRecurrentOptions)
    if not options.hidden_to_hidden and config.cell not in ("tanh", "relu"):
        raise ConfigError(
            "cell",
            f"output_recurrent without hidden_to_hidden has no cell of its own; "
            f"choose from: relu, tanh (or set arch_options.hidden_to_hidden: true for "
            f"{config.cell!r})",
        )
    if config.bidirectional:
        raise ConfigError("bidirectional", "output_recurrent feeds outputs forward in time")


def _deep(config: ModelConfig) -> None:
    if config.bidirectional:
        raise ConfigError("bidirectional", "use architecture 'bidirectional' for that")


WIRINGS: Mapping[str, Wiring] = {
    "seq2one": Wiring(TokenOptions),
    "recurrent": Wiring(TokenOptions),
    "output_recurrent": Wiring(OutputRecurrentOptions, check=_output_recurrent),
    "bidirectional": Wiring(TokenOptions),
    "deep": Wiring(DeepOptions, check=_deep),
    "autoencoder": Wiring(ArchOptions),
    "recursive": Wiring(TokenOptions, cells=("relu", "tanh")),  # a one-step composition
    "encoder_decoder": Wiring(EncoderDecoderOptions),
    "attention": Wiring(AttentionOptions),
}

# The architectures that decode a target sequence of its own length: the seq2seq family's.
SEQ2SEQ_ARCHITECTURES = ("encoder_decoder", "attention")

# Truncated BPTT carries the state of a per-step network across chunks of the sequence: the
# `recurrent` architecture (pattern 1, `Recurrent.run`), trained on a target at every step.
TBPTT_ARCHITECTURES = ("recurrent",)
TBPTT_FAMILIES = ("lm", "regression")  # regression only where the targets are per step
# Omega reads h(1..tau) of the network's first recurrence, which these read in one call; it
# acts through the recurrent weights, which an echo state network does not train (10.8).
INFO_FLOW_ARCHITECTURES = ("deep", "recurrent", "seq2one")
INFO_FLOW_FIXED_CELLS = ("esn",)


@dataclass(frozen=True)
class ModelConfig:
    """What a spec's variant says about the network.

    `cell_options` are the chosen cell's own options (`CELL_OPTIONS`), e.g.
    `{cell_input: sigmoid, peepholes: true}` for the book's LSTM. A config torch's `nn.RNN`,
    `nn.LSTM` or `nn.GRU` computes exactly runs on that fast path; any other cell by cell.

    `arch_options` are the chosen architecture's own options (`WIRINGS`), validated the same
    way, e.g. `{context: both, reverse_source: true}` for `encoder_decoder`.
    `seqmodels.models.build_model` builds the network.
    """

    architecture: str = "seq2one"
    cell: str = "tanh"
    hidden_size: int = 64
    num_layers: int = 1
    bidirectional: bool = False
    cell_options: dict[str, Any] = field(default_factory=dict)
    arch_options: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.architecture not in WIRINGS:
            raise ConfigError("architecture", unknown("architecture", self.architecture, WIRINGS))
        if self.cell not in CELL_OPTIONS:
            raise ConfigError("cell", unknown("cell", self.cell, CELL_OPTIONS))
        if self.hidden_size < 1:
            raise ConfigError("hidden_size", "must be >= 1")
        if self.num_layers < 1:
            raise ConfigError("num_layers", "must be >= 1")
        self.options()  # fail now, naming the option, rather than when a trial builds the model
        self.arch()
        wiring = WIRINGS[self.architecture]
        if wiring.cells is not None and self.cell not in wiring.cells:
            raise ConfigError(
                "cell",
                f"architecture {self.architecture!r} cannot use cell {self.cell!r}; "
                f"choose from: {', '.join(wiring.cells)}",
            )
        if wiring.check is not None:
            wiring.check(self)

    def options(self) -> CellOptions:
        """The cell's options, parsed. Raises ConfigError naming `cell_options.<option>`."""
        try:
            return parse_options(CELL_OPTIONS[self.cell], self.cell_options, self.cell)
        except ConfigError as err:
            raise ConfigError(f"cell_options.{err.field}".rstrip("."), str(err)) from None

    def arch(self) -> ArchOptions:
        """The architecture's options, parsed. Raises ConfigError naming `arch_options.<option>`."""
        options_type = WIRINGS[self.architecture].options
        try:
            return parse_options(options_type, self.arch_options, self.architecture, "architecture")
        except ConfigError as err:
            raise ConfigError(f"arch_options.{err.field}".rstrip("."), str(err)) from None


__all__ = [
    "CELL_OPTIONS",
    "INFO_FLOW_ARCHITECTURES",
    "INFO_FLOW_FIXED_CELLS",
    "SEQ2SEQ_ARCHITECTURES",
    "TBPTT_ARCHITECTURES",
    "TBPTT_FAMILIES",
    "WIRINGS",
    "AttentionOptions",
    "ArchOptions",
    "CellOptions",
    "DecoderOptions",
    "DeepOptions",
    "ESNOptions",
    "EncoderDecoderOptions",
    "GRUOptions",
    "LSTMOptions",
    "LeakyOptions",
    "ModelConfig",
    "OutputRecurrentOptions",
    "SkipOptions",
    "TokenOptions",
    "Wiring",
]
