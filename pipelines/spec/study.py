"""The study spec: one pydantic model, the single source of truth for what a spec may contain.

A spec says only what differs from the defaults. It names the scientific hyperparameter
(`variants`), the nuisance ones (`search.space`) and the fixed ones (`fixed`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from pipelines.spec.task import (
    STRICT,
    SpecError,
    spec_error,
    task_union,
    validated,
)
from seqmodels.config import (
    INFO_FLOW_ARCHITECTURES,
    INFO_FLOW_FIXED_CELLS,
    SEQ2SEQ_ARCHITECTURES,
    TBPTT_ARCHITECTURES,
    TBPTT_FAMILIES,
    WIRINGS,
    ModelConfig,
)
from seqmodels.errors import ConfigError
from seqmodels.tasks import TASKS, Task

ModelSpec = validated(ModelConfig)


class TrainConfig(BaseModel):
    """Training hyperparameters a trial may fix or search, and the chapter's training switches.

    `grad_clip_algorithm`, `tbptt` and `info_flow` are Deep Learning 10.11.1, 10.2.2 and
    10.11.2; `diagnostics` logs 10.7's symptoms. Which variants and tasks `tbptt` and
    `info_flow` fit is checked against the study (`check_training_switches`).
    """

    model_config = STRICT

    lr: float = Field(1e-3, gt=0)
    weight_decay: float = Field(0.0, ge=0)
    batch_size: int = Field(64, ge=1)
    max_epochs: int = Field(10, ge=1)
    grad_clip: float | None = Field(
        1.0, gt=0, description="clip the gradient to this (its norm, or each element); null: off"
    )
    grad_clip_algorithm: Literal["norm", "value"] = Field(
        "norm", description="clip the whole gradient's norm, or each element (10.11.1)"
    )
    tbptt: int | None = Field(
        None,
        ge=1,
        description="truncated BPTT: back-propagate at most this many steps (10.2.2); "
        "null: full BPTT",
    )
    info_flow: float = Field(
        0.0, ge=0, description="weight of Pascanu's information-flow regularizer (10.11.2)"
    )
    diagnostics: bool = Field(
        False, description="log dL/dh(t) against time lag and the recurrent matrix's spectrum"
    )
    seed: int = Field(0, ge=0, description="seed of initialisation and shuffling")
    deterministic: bool = Field(
        True,
        description="only deterministic torch algorithms, so a rerun repeats a trial's numbers; "
        "false: faster, and on a GPU not exactly repeatable",
    )


MODEL_KEYS = frozenset(f.name for f in dataclasses.fields(ModelConfig))
TRAIN_KEYS = frozenset(TrainConfig.model_fields)
HYPERPARAMETERS = sorted(MODEL_KEYS | TRAIN_KEYS)
# What population-based training may change in a running trial: never the network's shape.
PERTURBABLE = frozenset({"lr", "weight_decay", "grad_clip", "batch_size"})
SCIENTIFIC = frozenset(  # what a variant is; never searched
    {"architecture", "cell", "cell_options", "arch_options", "bidirectional"}
)
SWITCHES = frozenset(
    {"diagnostics", "deterministic"}
)  # a study turns them on or off; never searched


class Distribution(BaseModel):
    """One search dimension, written as a one-key mapping: `{loguniform: [1e-4, 1e-2]}`.

    `uniform` and `loguniform` draw floats in [low, high]; `randint` draws integers in
    [low, high], both ends included; `choice` draws one of the listed values.
    """

    model_config = STRICT

    uniform: tuple[float, float] | None = None
    loguniform: tuple[float, float] | None = None
    randint: tuple[int, int] | None = None
    choice: list[Any] | None = None

    @model_validator(mode="after")
    def _one_kind(self) -> Distribution:
        given = [k for k, v in self if v is not None]
        if len(given) != 1:
            raise ValueError(f"give exactly one of: {', '.join(type(self).model_fields)}")
        (kind,) = given
        value = getattr(self, kind)
        if kind in ("uniform", "loguniform", "randint") and not value[0] < value[1]:
            raise ValueError(f"{kind}: low must be < high")
        if kind == "loguniform" and value[0] <= 0:
            raise ValueError("loguniform: low must be > 0")
        if kind == "choice" and not value:
            raise ValueError(f"{kind}: give at least one value")
        return self

    @property
    def kind(self) -> str:
        return next(k for k, v in self if v is not None)

    @property
    def args(self) -> Any:
        return getattr(self, self.kind)


class SchedulerSpec(BaseModel):
    """How the trials of one variant share their budget.

    `fifo` runs every trial to the end; `asha` and `hyperband` stop the worse trials early
    (`grace_period`, `reduction_factor`); `pbt` (population-based training) copies the weights of
    better trials into worse ones every `perturbation_interval` epochs and perturbs their
    continuous hyperparameters, restoring each from its checkpoint.
    """

    model_config = STRICT

    name: Literal["fifo", "asha", "hyperband", "pbt"] = "asha"
    grace_period: int = Field(1, ge=1, description="epochs before a trial may be stopped")
    reduction_factor: float = Field(3.0, gt=1)
    perturbation_interval: int = Field(2, ge=1, description="pbt: epochs between exploits")


OPTION_SECTIONS = ("cell_options", "arch_options")  # a variant's own options a search may add


def grid_points(space: dict[str, Distribution]) -> int:
    """How many configurations a grid search enumerates: the product of the `choice` lengths."""
    points = 1
    for dist in space.values():
        points *= len(dist.args)
    return points


class SearchSpec(BaseModel):
    """The nuisance hyperparameters and the budget, the same for every variant.

    `space` is searched for every variant. `per_variant` adds dimensions for one variant only,
    such as a leaky unit's alpha, which the other variants do not have: keys are training or
    model hyperparameters, or a variant's own options written `cell_options.<option>` or
    `arch_options.<option>`. Every variant still gets `trials_per_variant` trials.
    """

    model_config = STRICT

    space: dict[str, Distribution] = Field(default_factory=dict)
    per_variant: dict[str, dict[str, Distribution]] = Field(
        default_factory=dict,
        description="search additions for one variant: {leaky: {cell_options.alpha: {...}}}",
    )
    trials_per_variant: int = Field(3, ge=1)
    scheduler: SchedulerSpec = Field(default_factory=SchedulerSpec)
    algorithm: Literal["random", "grid", "optuna"] = Field(
        "random",
        description="random sampling; grid: every combination of `choice` values, once; "
        "optuna: Optuna's TPE, which proposes each trial from the results so far",
    )
    max_concurrent: int | None = Field(None, ge=1)
    keep_checkpoints: int = Field(2, ge=1, description="best checkpoints kept per trial")
    checkpoint_every: int | None = Field(
        None,
        ge=1,
        description="a trial checkpoints each epoch that lowers its val/loss, and also every N "
        "epochs: a retried or resumed trial then repeats at most N-1 epochs; null: only "
        "improvements (pbt: every epoch)",
    )

    @field_validator("space")
    @classmethod
    def _known_keys(cls, space: dict[str, Distribution]) -> dict[str, Distribution]:
        for key in space:
            if key in SCIENTIFIC:
                raise ConfigError(key, "scientific: set it per variant, do not search it")
            if key not in HYPERPARAMETERS:
                searchable = ", ".join(k for k in HYPERPARAMETERS if k not in SCIENTIFIC)
                raise ConfigError(key, f"unknown hyperparameter; choose from: {searchable}")
        return space

    @field_validator("per_variant")
    @classmethod
    def _known_addition_keys(
        cls, per_variant: dict[str, dict[str, Distribution]]
    ) -> dict[str, dict[str, Distribution]]:
        for variant, space in per_variant.items():
            for key in space:
                section, _, option = key.partition(".")
                if section in OPTION_SECTIONS and option:
                    continue  # checked against the variant's cell or architecture by StudySpec
                try:
                    cls._known_keys({key: space[key]})
                except ConfigError as err:
                    raise ConfigError(f"{variant}.{err.field}", str(err)) from None
        return per_variant

    def variant_space(self, variant: str) -> dict[str, Distribution]:
        """Every dimension searched for `variant`: the shared space and its own additions."""
        return {**self.space, **self.per_variant.get(variant, {})}

    @model_validator(mode="after")
    def _pbt_has_something_to_perturb(self) -> SearchSpec:
        if self.scheduler.name == "pbt" and not set(self.space) & PERTURBABLE:
            raise ConfigError(
                "scheduler.name",
                "pbt perturbs training hyperparameters while trials run: search at least one "
                f"of {', '.join(sorted(PERTURBABLE))}",
            )
        return self

    @model_validator(mode="after")
    def _grid_is_the_budget(self) -> SearchSpec:
        if self.algorithm != "grid":
            return self
        spaces = {"space": self.space} | {
            f"per_variant.{variant}": space for variant, space in self.per_variant.items()
        }
        for where, space in spaces.items():
            for key, dist in space.items():
                if dist.kind != "choice":
                    raise ConfigError(
                        f"{where}.{key}", "grid search enumerates `choice` values only"
                    )
        for variant, space in self.per_variant.items():
            if grid_points(space) != 1:
                raise ConfigError(
                    f"per_variant.{variant}",
                    "a grid's budget is the same for every variant: additions to one variant "
                    "may hold one value each, or use the random or optuna algorithm",
                )
        points = grid_points(self.space)
        if points != self.trials_per_variant:
            raise ConfigError(
                "trials_per_variant",
                f"grid search runs every combination once: set it to {points}",
            )
        return self


class Resources(BaseModel):
    """What each trial reserves on the Ray cluster."""

    model_config = STRICT

    cpu: float = Field(1.0, gt=0)
    gpu: float = Field(0.0, ge=0)


class StudySpec(BaseModel):
    """A comparison study: which variants, on which task, tuned how, repeated how often."""

    model_config = STRICT

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$", max_length=100)
    description: str = ""
    task: task_union()  # type: ignore[valid-type]
    variants: dict[str, ModelSpec] = Field(min_length=1)  # type: ignore[valid-type]
    search: SearchSpec = Field(default_factory=SearchSpec)
    fixed: TrainConfig = Field(default_factory=TrainConfig)
    seeds: int = Field(3, ge=1, le=1000, description="seeded repeats of each variant's best config")
    resources: Resources = Field(default_factory=Resources)

    @field_validator("variants")
    @classmethod
    def _variant_names(cls, variants: dict[str, Any]) -> dict[str, Any]:
        for name in variants:
            if not name.replace("_", "").replace("-", "").isalnum():
                raise ConfigError(name, "a variant name uses letters, digits, '-' and '_'")
        return variants

    @model_validator(mode="after")
    def _fixed_or_searched(self) -> StudySpec:
        fixed = self.fixed.model_fields_set
        for key in self.search.space:
            if key in fixed:
                raise ConfigError(f"search.space.{key}", "also in fixed; fix it or search it")
        return self

    @model_validator(mode="after")
    def _additions_fit_their_variant(self) -> StudySpec:
        for variant, space in self.search.per_variant.items():
            where = f"search.per_variant.{variant}"
            if variant not in self.variants:
                raise ConfigError(
                    where, f"no such variant; choose from: {', '.join(self.variants)}"
                )
            for key, dist in space.items():
                if key in self.search.space or key in self.fixed.model_fields_set:
                    raise ConfigError(f"{where}.{key}", "also in search.space or fixed")
                section, _, option = key.partition(".")
                if section in OPTION_SECTIONS:
                    _check_option_values(self.variants[variant], section, option, dist)
        return self

    @model_validator(mode="after")
    def _training_switches_fit(self) -> StudySpec:
        check_training_switches(self)
        return self

    def trial_base(self, variant: str) -> dict[str, Any]:
        """The config every trial of `variant` starts from, before the search fills in its space."""
        return {
            **dataclasses.asdict(self.variants[variant]),
            **self.fixed.model_dump(),
            "variant": variant,
        }

    def digest(self) -> str:
        """A content hash of the validated spec: of what differs from the defaults.

        A field at its default value is left out, whether the spec wrote it or not. So a later
        seqlab that adds a field (with a default that keeps the old behaviour) gives an older
        spec the same digest, and a study interrupted before the upgrade can still be resumed.
        A changed default does change the digest of a spec recorded with the old value.
        """
        canonical = json.dumps(self.model_dump(mode="json", exclude_defaults=True), sort_keys=True)
        return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def _check_option_values(
    variant: ModelConfig, section: str, option: str, dist: Distribution
) -> None:
    """Every value `dist` can draw must be a valid `option` of the variant's cell or architecture.

    Raises ConfigError naming the key; the variant itself must leave the option to the search.
    """
    key = f"{section}.{option}"
    given = getattr(variant, section)
    if option in given:
        raise ConfigError(key, f"set to {given[option]!r} by the variant; fix it or search it")
    ends = dist.args if dist.kind == "choice" else list(dist.args)
    for value in ends:
        try:
            ModelConfig(**{**dataclasses.asdict(variant), section: {**given, option: value}})
        except ConfigError as err:
            raise ConfigError(key, f"{value!r}: {err}") from None


def check_training_switches(spec: StudySpec) -> None:
    """Reject `tbptt`, `info_flow` and the other switches where the study cannot honour them.

    Whether fixed or searched (for every variant, or for one in `per_variant`), every value a
    trial of a variant may get is checked against that variant and the task's family. Raises
    ConfigError naming `fixed.<key>`, `search.space.<key>` or `search.per_variant.<v>.<key>`;
    first, on a task with a target at every step, `variants.<v>.architecture` (or
    `.arch_options.output`) for a variant without an output at every step.
    """
    task = TASKS.get(spec.task.name)
    family = task.family
    for name, variant in spec.variants.items():
        _check_reads_the_task(name, variant, task)
        if task.per_step:
            _check_emits_per_step(name, variant, task.name)
        searched = {key: (f"search.space.{key}", d) for key, d in spec.search.space.items()}
        own = spec.search.per_variant.get(name, {})
        searched |= {key: (f"search.per_variant.{name}.{key}", d) for key, d in own.items()}
        switches = sorted(SWITCHES & searched.keys())
        if switches:
            field = searched[switches[0]][0]
            raise ConfigError(field, "a switch, not a hyperparameter: set it in fixed")
        values = {key: [getattr(spec.fixed, key)] for key in ("tbptt", "info_flow")}
        fields = {key: f"fixed.{key}" for key in values}
        for key in ("tbptt", "info_flow", "grad_clip_algorithm"):
            if key in searched:
                fields[key], dist = searched[key]
                values[key] = _searched_values(key, dist, fields[key])
        if any(v is not None for v in values["tbptt"]):
            _check_tbptt(name, variant, spec.task.name, family, fields["tbptt"])
        if any(v != 0 for v in values["info_flow"]):
            _check_info_flow(name, variant, fields["info_flow"])
        # after the switches: their messages say more than the architecture's would
        if not task.per_step and family in ONE_TARGET_FAMILIES:
            _check_emits_one_output(name, variant, task.name)


def _searched_values(key: str, dist: Distribution, field: str) -> list[Any]:
    """The values (or the ends of the range) a search may draw for `key`, checked for type."""
    if key == "grad_clip_algorithm":
        if dist.kind != "choice" or not set(dist.args) <= {"norm", "value"}:
            raise ConfigError(field, "search it with choice among: norm, value")
        return list(dist.args)
    if key == "tbptt":
        if dist.kind not in ("randint", "choice"):
            raise ConfigError(field, "a number of steps: search it with randint or choice")
        values = list(dist.args)
        for value in values:
            if value is not None and (type(value) is not int or value < 1):
                raise ConfigError(field, f"{value!r}: give an integer >= 1, or null (full BPTT)")
        return values
    values = list(dist.args)  # info_flow: a weight >= 0
    for value in values:
        if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
            raise ConfigError(field, f"{value!r}: give a weight >= 0")
    return values


# Architectures whose output at step t depends on inputs after t.
READS_AHEAD = ("bidirectional", "autoencoder")


def _check_reads_the_task(name: str, variant: ModelConfig, task: type[Task]) -> None:
    """The architecture fits what the task's data is: a decoder for a seq2seq task and only
    there, no reading ahead where the target is the next input, an embedding only of token
    ids, and output-to-hidden feedback only of real values."""
    where = f"variants.{name}"
    decodes = variant.architecture in SEQ2SEQ_ARCHITECTURES
    if task.family == "seq2seq" and not decodes:
        raise ConfigError(
            f"{where}.architecture",
            f"task {task.name!r} maps a sequence to a target sequence of its own length; "
            f"choose from: {', '.join(SEQ2SEQ_ARCHITECTURES)}",
        )
    if task.family != "seq2seq" and decodes and not task.per_step:  # per step: said below
        others = [a for a in WIRINGS if a not in SEQ2SEQ_ARCHITECTURES]
        raise ConfigError(
            f"{where}.architecture",
            f"{variant.architecture!r} decodes a target sequence, and task {task.name!r} "
            f"({task.family}) has none; choose from: {', '.join(others)}",
        )
    if task.next_input and (variant.bidirectional or variant.architecture in READS_AHEAD):
        field = "bidirectional" if variant.bidirectional else "architecture"
        raise ConfigError(
            f"{where}.{field}",
            f"task {task.name!r} predicts the next input, and a network that reads ahead of "
            f"step t sees its target there; use recurrent or deep, one direction",
        )
    if task.token_inputs or decodes:
        if task.token_inputs and variant.architecture == "output_recurrent":
            raise ConfigError(
                f"{where}.architecture",
                f"'output_recurrent' feeds its real-valued output o(t-1) back in, and task "
                f"{task.name!r} predicts token ids; use recurrent (pattern 1)",
            )
        return
    if getattr(variant.arch(), "embedding_size", 0):
        raise ConfigError(
            f"{where}.arch_options.embedding_size",
            f"task {task.name!r} reads float features, not token ids: leave it 0",
        )


def fitting_architectures(task: type[Task]) -> list[str]:
    """The architectures a variant on `task` may name, by the same checks a spec gets (`deep`
    where one of its `output`s fits); what `seqlab tasks` lists."""
    fits = []
    for architecture, wiring in WIRINGS.items():
        cell = wiring.cells[0] if wiring.cells else "tanh"
        outputs = ("every_step", "final") if architecture == "deep" else (None,)
        for output in outputs:
            options = {"output": output} if output else {}
            variant = ModelConfig(architecture=architecture, cell=cell, arch_options=options)
            try:
                _check_reads_the_task("v", variant, task)
                if task.per_step:
                    _check_emits_per_step("v", variant, task.name)
                elif task.family in ONE_TARGET_FAMILIES:
                    _check_emits_one_output("v", variant, task.name)
            except ConfigError:
                continue
            fits.append(architecture)
            break
    return fits


# The architectures with an output at every input step, (B, T, O), which a task with a target
# at every step (`Task.per_step`) needs; `deep` only with `arch_options.output: every_step`.
PER_STEP_ARCHITECTURES = ("autoencoder", "bidirectional", "deep", "output_recurrent", "recurrent")


def _check_emits_per_step(name: str, variant: ModelConfig, task: str) -> None:
    """A task with a target at every step needs a variant with an output at every step."""
    if variant.architecture not in PER_STEP_ARCHITECTURES:
        raise ConfigError(
            f"variants.{name}.architecture",
            f"{variant.architecture!r} has no output at every step, and task {task!r} has a "
            f"target at every step; choose from: {', '.join(PER_STEP_ARCHITECTURES)}",
        )
    if variant.architecture == "deep" and variant.arch().output == "final":
        raise ConfigError(
            f"variants.{name}.arch_options.output",
            f"'final' emits one output per sequence, and task {task!r} has a target at every "
            "step; use every_step",
        )


# Families whose tasks, unless `per_step`, have one target per sequence.
ONE_TARGET_FAMILIES = ("regression", "classification")


def _check_emits_one_output(name: str, variant: ModelConfig, task: str) -> None:
    """A task with one target per sequence needs a variant with one output per sequence."""
    per_step = variant.architecture in PER_STEP_ARCHITECTURES
    if variant.architecture == "deep":
        per_step = variant.arch().output == "every_step"
        if per_step:
            raise ConfigError(
                f"variants.{name}.arch_options.output",
                f"'every_step' emits an output at every step, and task {task!r} has one target "
                "per sequence; use final",
            )
    if per_step:
        raise ConfigError(
            f"variants.{name}.architecture",
            f"{variant.architecture!r} emits an output at every step, and task {task!r} has one "
            "target per sequence; choose seq2one, recursive, or deep with arch_options.output: "
            "final (bidirectional: true makes a seq2one read both ways)",
        )


def _check_tbptt(name: str, variant: ModelConfig, task: str, family: str, field: str) -> None:
    """Truncated BPTT needs a target at every step and the per-step `recurrent` architecture."""
    if family not in TBPTT_FAMILIES:
        raise ConfigError(
            field,
            f"task {task!r} ({family}) has no target at every step to truncate; "
            f"truncated BPTT fits the families: {', '.join(TBPTT_FAMILIES)}",
        )
    if variant.architecture not in TBPTT_ARCHITECTURES:
        raise ConfigError(
            field,
            f"variant {name!r} is {variant.architecture!r}; truncated BPTT carries the state "
            f"of the per-step architecture across chunks: {', '.join(TBPTT_ARCHITECTURES)}",
        )
    if variant.bidirectional:
        raise ConfigError(
            field, f"variant {name!r} is bidirectional: its backward pass reads the future"
        )
    if not TASKS.get(task).per_step:  # e.g. `adding`: regression, but one target per sequence
        per_step = [other for other in TASKS.names() if TASKS.get(other).per_step]
        raise ConfigError(
            field,
            f"task {task!r} ({family}) has one target per sequence, no target at every step to "
            f"truncate; truncated BPTT fits the tasks with one: {', '.join(per_step)}",
        )


def _check_info_flow(name: str, variant: ModelConfig, field: str) -> None:
    """Omega reads h(1..tau) step by step: a unidirectional recurrence that reads the input."""
    if variant.architecture not in INFO_FLOW_ARCHITECTURES:
        raise ConfigError(
            field,
            f"variant {name!r} is {variant.architecture!r}; the information-flow regularizer "
            f"fits: {', '.join(INFO_FLOW_ARCHITECTURES)}",
        )
    if variant.bidirectional:
        raise ConfigError(
            field, f"variant {name!r} is bidirectional: Omega needs one direction in time"
        )
    if variant.cell in INFO_FLOW_FIXED_CELLS:
        raise ConfigError(
            field, f"variant {name!r} is {variant.cell!r}: its recurrent weights are not trained"
        )


def load_spec(path: str | Path, overrides: dict[str, Any] | None = None) -> StudySpec:
    """Read and validate a spec file. Raises SpecError (one line, file and field) on any mistake.

    Args:
        path: the spec (YAML).
        overrides: dotted keys to set before validation, e.g. `{"search.trials_per_variant": 5,
            "fixed.max_epochs": 3}`; what the Prefect form and `seqlab run --set` change.
    """
    source = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SpecError(source, "", "no such file") from None
    except (IsADirectoryError, PermissionError, UnicodeDecodeError) as err:
        raise SpecError(source, "", f"cannot read: {err.__class__.__name__}") from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "?"
        problem = getattr(err, "problem", None) or "invalid YAML"
        raise SpecError(source, "", f"YAML syntax error at {where}: {problem}") from None
    if not isinstance(raw, dict):
        raise SpecError(source, "", "a spec is a YAML mapping of keys to values")
    for key, value in (overrides or {}).items():
        _set_dotted(raw, key, value, source)
    return parse_spec(raw, source)


def _set_dotted(raw: dict[str, Any], key: str, value: Any, source: str) -> None:
    """Set `a.b.c` in nested mappings, creating the sections a spec left to their defaults."""
    *sections, last = key.split(".")
    node = raw
    for i, section in enumerate(sections):
        node = node.setdefault(section, {})
        if not isinstance(node, dict):
            raise SpecError(
                source, ".".join(sections[: i + 1]), f"is not a section; cannot set {key}"
            )
    node[last] = value


def parse_spec(raw: dict[str, Any], source: str = "<spec>") -> StudySpec:
    """Validate a spec already read into a dict."""
    try:
        return StudySpec.model_validate(raw)
    except ValidationError as err:
        raise spec_error(source, err) from None
