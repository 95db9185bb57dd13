"""What a spec may say about a network, without torch: the names of the cells and architectures,
their options, the rules that tie them together, and `ModelConfig`, checked against all three.

`seqlab validate` and every spec check read this module alone, so they answer without loading
torch. The networks themselves (`seqmodels.models`) register under the same names; each
registry checks at import that a class takes exactly the options declared here for its name,
so the two cannot drift apart.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from seqmodels.errors import ConfigError, unknown
from seqmodels.options import (
    CELL_OPTIONS,
    ArchOptions,
    AttentionOptions,
    CellOptions,
    DecoderOptions,
    DeepOptions,
    EncoderDecoderOptions,
    ESNOptions,
    GRUOptions,
    LeakyOptions,
    LSTMOptions,
    OutputRecurrentOptions,
    SkipOptions,
    TokenOptions,
    check_range,
    parse_options,
)

# --- what each architecture accepts -----------------------------------------------------------


@dataclass(frozen=True)
class Wiring:
    """What an architecture is and accepts, declared once; the spec, the trainable and the
    LightningModules read these facts here, and nothing finds them out from the data.

    Args:
        options: its options' dataclass.
        cells: the cells that make sense for it (None: every cell).
        check: a check of the rest of a config, which raises ConfigError naming the field.
        per_step: it emits an output at every input step, (B, T, O); None: its options'
            `output` says (`deep`).
        decodes: it decodes a target sequence of its own length (the seq2seq family's).
        reads_ahead: its output at step t depends on inputs after t.
        tokens: it can read token ids (one-hot, or through `embedding_size`), not only floats.
        tbptt: truncated BPTT can carry its state across chunks of the sequence (10.2.2): the
            per-step `recurrent` architecture (pattern 1, `Recurrent.run`).
        info_flow: the information-flow regularizer applies (10.11.2): Omega reads h(1..tau)
            of the network's first recurrence, which these read in one call.
    """

    options: type[ArchOptions] = ArchOptions
    cells: tuple[str, ...] | None = None
    check: Callable[[ModelConfig], None] | None = None
    per_step: bool | None = False
    decodes: bool = False
    reads_ahead: bool = False
    tokens: bool = True
    tbptt: bool = False
    info_flow: bool = False


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
    "seq2one": Wiring(TokenOptions, info_flow=True),
    "recurrent": Wiring(TokenOptions, per_step=True, tbptt=True, info_flow=True),
    "output_recurrent": Wiring(
        OutputRecurrentOptions, check=_output_recurrent, per_step=True, tokens=False
    ),
    "bidirectional": Wiring(TokenOptions, per_step=True, reads_ahead=True),
    "deep": Wiring(DeepOptions, check=_deep, per_step=None, info_flow=True),
    "autoencoder": Wiring(ArchOptions, per_step=True, reads_ahead=True),
    "recursive": Wiring(TokenOptions, cells=("relu", "tanh")),  # a one-step composition
    "encoder_decoder": Wiring(EncoderDecoderOptions, decodes=True),
    "attention": Wiring(AttentionOptions, decodes=True),
}


def _declared(fact: str) -> tuple[str, ...]:
    return tuple(sorted(name for name, wiring in WIRINGS.items() if getattr(wiring, fact)))


# The architectures with each fact, by name, for messages that list the valid choices.
SEQ2SEQ_ARCHITECTURES = _declared("decodes")
READS_AHEAD_ARCHITECTURES = _declared("reads_ahead")
PER_STEP_ARCHITECTURES = tuple(sorted(n for n, w in WIRINGS.items() if w.per_step is not False))
TBPTT_ARCHITECTURES = _declared("tbptt")
TBPTT_FAMILIES = ("lm", "regression")  # regression only where the targets are per step
INFO_FLOW_ARCHITECTURES = _declared("info_flow")
# Omega acts through the recurrent weights, which an echo state network does not train (10.8).
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

    @property
    def wiring(self) -> Wiring:
        """What the architecture is and accepts (`WIRINGS`)."""
        return WIRINGS[self.architecture]

    @property
    def per_step(self) -> bool:
        """Whether the network emits an output at every input step, (B, T, O)."""
        if self.wiring.per_step is not None:
            return self.wiring.per_step
        options = self.arch()
        assert isinstance(options, DeepOptions)  # the one architecture whose options say
        return options.output == "every_step"

    @property
    def reads_ahead(self) -> bool:
        """Whether its output at step t depends on inputs after t."""
        return self.bidirectional or self.wiring.reads_ahead

    def arch(self) -> ArchOptions:
        """The architecture's options, parsed. Raises ConfigError naming `arch_options.<option>`."""
        options_type = WIRINGS[self.architecture].options
        try:
            return parse_options(options_type, self.arch_options, self.architecture, "architecture")
        except ConfigError as err:
            raise ConfigError(f"arch_options.{err.field}".rstrip("."), str(err)) from None


def _bounds(**bounds: float) -> dict[str, Any]:
    """A training field's range, as pydantic's `Field` names it (`gt`, `ge`): `TrainConfig`
    checks it, and the spec's `fixed` section is built with it."""
    return {"bounds": bounds}


@dataclass(frozen=True)
class TrainConfig:
    """How a trial trains: the hyperparameters a spec may fix or search, and the chapter's
    training switches.

    `grad_clip` clips the gradient's norm or each element (`grad_clip_algorithm`, 10.11.1;
    None: off); `tbptt` back-propagates at most this many steps (truncated BPTT, 10.2.2; None:
    full BPTT); `info_flow` weighs Pascanu's information-flow regularizer (10.11.2);
    `diagnostics` logs 10.7's symptoms (dL/dh(t) against time lag, the recurrent matrix's
    spectrum); `deterministic` restricts torch to deterministic algorithms, so a rerun repeats
    a trial's numbers (false: faster, and on a GPU not exactly repeatable).
    Which variants and tasks `tbptt` and `info_flow` fit, the spec checks against the study.
    """

    lr: float = field(default=1e-3, metadata=_bounds(gt=0))
    weight_decay: float = field(default=0.0, metadata=_bounds(ge=0))
    batch_size: int = field(default=64, metadata=_bounds(ge=1))
    max_epochs: int = field(default=10, metadata=_bounds(ge=1))
    grad_clip: float | None = field(default=1.0, metadata=_bounds(gt=0))
    grad_clip_algorithm: Literal["norm", "value"] = "norm"
    tbptt: int | None = field(default=None, metadata=_bounds(ge=1))
    info_flow: float = field(default=0.0, metadata=_bounds(ge=0))
    diagnostics: bool = False
    deterministic: bool = True

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            for bound, limit in f.metadata.get("bounds", {}).items():
                ok = value is None or (value > limit if bound == "gt" else value >= limit)
                check_range(f.name, ok, f"must be {'>' if bound == 'gt' else '>='} {limit:g}")


@dataclass(frozen=True)
class TrialConfig:
    """Everything one trial varies: its variant's network, how it trains, and its seed (of the
    initialisation and the batches' order).

    Tune samples it as a nested mapping (`nested`), and the trainable rebuilds it
    (`from_nested`). MLflow records it flat, one param per field (`params`), as seqlab always
    has, so a run recorded by an older seqlab still reruns and resumes (`from_params`).
    """

    model: ModelConfig
    train: TrainConfig
    variant: str
    seed: int = 0
    # A seeded repeat can keep a source of variance at the study's seed while its own seed
    # draws the others. None: `seed` draws the weights (`init_seed`) and the batches' order
    # (`order_seed`), and the trial trains on the study's data; a `data_seed` names the draw
    # of the training data it trains on instead.
    init_seed: int | None = None
    order_seed: int | None = None
    data_seed: int | None = None

    @property
    def weights_seed(self) -> int:
        """What seeds the initial weights (and every other draw of the global generators)."""
        return self.seed if self.init_seed is None else self.init_seed

    @property
    def batches_seed(self) -> int:
        """What seeds the order of the training batches."""
        return self.seed if self.order_seed is None else self.order_seed

    def _seeds(self) -> dict[str, int]:
        """The seeds set apart from `seed`, by field name."""
        names = ("init_seed", "order_seed", "data_seed")
        return {name: getattr(self, name) for name in names if getattr(self, name) is not None}

    def nested(self) -> dict[str, Any]:
        return {
            "model": dataclasses.asdict(self.model),
            "train": dataclasses.asdict(self.train),
            "variant": self.variant,
            "seed": self.seed,
            **self._seeds(),
        }

    @classmethod
    def from_nested(cls, config: Mapping[str, Any]) -> TrialConfig:
        return cls(
            ModelConfig(**config["model"]),
            TrainConfig(**config["train"]),
            config["variant"],
            config["seed"],
            *(config.get(key) for key in ("init_seed", "order_seed", "data_seed")),
        )

    def params(self) -> dict[str, Any]:
        return {
            **dataclasses.asdict(self.model),
            **dataclasses.asdict(self.train),
            "variant": self.variant,
            "seed": self.seed,
            **self._seeds(),
        }

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> TrialConfig:
        """From flat params, with their types; a field a run predates gets its default, which
        is what that run trained with."""
        model = {k: params[k] for k in _field_names(ModelConfig) if k in params}
        train = {k: params[k] for k in _field_names(TrainConfig) if k in params}
        seeds = (params.get(key) for key in ("init_seed", "order_seed", "data_seed"))
        return cls(
            ModelConfig(**model),
            TrainConfig(**train),
            params["variant"],
            params.get("seed", 0),
            *(None if value is None else int(value) for value in seeds),
        )


def _field_names(cls: type) -> list[str]:
    return [f.name for f in dataclasses.fields(cls)]


__all__ = [
    "CELL_OPTIONS",
    "INFO_FLOW_ARCHITECTURES",
    "INFO_FLOW_FIXED_CELLS",
    "PER_STEP_ARCHITECTURES",
    "READS_AHEAD_ARCHITECTURES",
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
    "TrainConfig",
    "TrialConfig",
    "Wiring",
]
