"""The study spec's schema: one pydantic model, the single source of truth for what a spec may
contain.

A spec says only what differs from the defaults. It names the scientific hyperparameter
(`variants`), the nuisance ones (`search.space`) and the fixed ones (`fixed`). The checks that
tie its sections to each other and to the task are in `pipelines.spec.rules`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import typing
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    Discriminator,
    Field,
    Tag,
    create_model,
    field_validator,
    model_validator,
)

from pipelines.spec.rules import check_option_values, check_training_switches
from pipelines.spec.task import STRICT, task_union, validated
from seqmodels.config import ModelConfig, TrainConfig, TrialConfig
from seqmodels.errors import ConfigError

ModelSpec = validated(ModelConfig)


def _fixed_spec() -> type[BaseModel]:
    """The `fixed` section: `TrainConfig`'s fields, with their ranges, and the trials' `seed`."""
    hints = typing.get_type_hints(TrainConfig)
    fields: dict[str, Any] = {
        f.name: (hints[f.name], Field(f.default, **f.metadata.get("bounds", {})))
        for f in dataclasses.fields(TrainConfig)
    }
    fields["seed"] = (int, Field(0, ge=0, description="seed of initialisation and shuffling"))
    return create_model("FixedSpec", __config__=STRICT, **fields)


FixedSpec = _fixed_spec()

MODEL_KEYS = frozenset(f.name for f in dataclasses.fields(ModelConfig))
TRAIN_KEYS = frozenset(f.name for f in dataclasses.fields(TrainConfig))
HYPERPARAMETERS = sorted(MODEL_KEYS | TRAIN_KEYS | {"seed"})
# What population-based training may change in a running trial: never the network's shape.
PERTURBABLE = frozenset({"lr", "weight_decay", "grad_clip", "batch_size"})
SCIENTIFIC = frozenset(  # what a variant is; never searched
    {"architecture", "cell", "cell_options", "arch_options", "bidirectional"}
)


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
    seed: int | None = Field(
        None,
        description="seeds what draws the trials (random and grid search, Optuna, PBT's "
        "perturbations), so the same spec searches the same trials; null: fixed.seed",
    )
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


# What can vary between a variant's seeded repeats: the initial weights, the order of the
# training batches, and the training data (`seqmodels.tasks.resample`; the test set never does).
Varied = Literal["init", "order", "data"]
VARIED: tuple[str, ...] = typing.get_args(Varied)


class RepeatsSpec(BaseModel):
    """How a variant's seeded repeats differ, which is the spread the verdict's intervals
    measure: each source left out is a share of the variance the verdict does not see."""

    model_config = STRICT

    vary: list[Varied] = Field(
        default_factory=lambda: list(VARIED),
        min_length=1,
        description="what each repeat's seed draws afresh: init (the weights), order (the "
        "batches'), data (the training split; the test set stays the study's)",
    )
    configs: int = Field(
        1,
        ge=1,
        le=20,
        description="each variant's best k search configurations repeated, not the best "
        "alone; the verdict rests on the one whose repeats validate best",
    )

    @field_validator("vary")
    @classmethod
    def _each_once(cls, vary: list[str]) -> list[str]:
        for source in vary:
            if vary.count(source) > 1:
                raise ConfigError(source, "named twice")
        return vary


class AdaptiveSeeds(BaseModel):
    """Seeded repeats in rounds: `min` per variant first, then `step` more at a time, until
    every pair of variants is decided or each has `max` (`report.stats.Sequential`)."""

    model_config = STRICT

    min: int = Field(5, ge=2, le=1000, description="seeds per variant in the first round")
    max: int = Field(20, ge=3, le=1000, description="seeds per variant at most")
    step: int | None = Field(None, ge=1, le=1000, description="seeds added a round; default min")

    @model_validator(mode="after")
    def _rounds(self) -> AdaptiveSeeds:
        if self.max <= self.min:
            raise ConfigError("max", f"must be more than min ({self.min}); or set seeds: N")
        return self

    @property
    def looks(self) -> tuple[int, ...]:
        """The seeds per variant at each look: min, min + step, ..., and max."""
        step = self.step or self.min
        return (*range(self.min, self.max, step), self.max)


class CompareSpec(BaseModel):
    """How the report decides between variants (`pipelines.report.stats`)."""

    model_config = STRICT

    alpha: float = Field(
        0.05, gt=0, le=0.2, description="the study-wide chance of naming a false winner"
    )
    min_effect: float | None = Field(
        None,
        ge=0,
        description="a difference in test metric smaller than this counts as none (in the "
        "metric's units): a region of practical equivalence",
    )


def _seeds_kind(value: Any) -> str:
    """Which form of `seeds` a spec wrote: a mapping is rounds, anything else a count."""
    return "rounds" if isinstance(value, dict | AdaptiveSeeds) else "count"


SEEDS_FORMS = ("count", "rounds")  # the tags of `seeds`' forms: not fields a user wrote


class StudySpec(BaseModel):
    """A comparison study: which variants, on which task, tuned how, repeated how often."""

    model_config = STRICT

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$", max_length=100)
    description: str = ""
    task: task_union()  # type: ignore[valid-type]
    variants: dict[str, ModelSpec] = Field(min_length=1)  # type: ignore[valid-type]
    search: SearchSpec = Field(default_factory=SearchSpec)
    fixed: FixedSpec = Field(default_factory=FixedSpec)  # type: ignore[valid-type]
    # A number: that many seeded repeats. Rounds by default: 5 (with 3 repeats per variant no
    # rank test can reach p < 0.05, `report.stats`), and more until the verdict is decided.
    seeds: Annotated[
        Annotated[int, Tag("count"), Field(ge=1, le=1000)]
        | Annotated[AdaptiveSeeds, Tag("rounds")],
        Discriminator(_seeds_kind),
    ] = Field(
        default_factory=AdaptiveSeeds,
        description="seeded repeats of each variant's best config: a number, or rounds "
        "{min, max, step} that stop when every pair of variants is decided",
    )
    repeats: RepeatsSpec = Field(default_factory=RepeatsSpec)
    resources: Resources = Field(default_factory=Resources)
    compare: CompareSpec = Field(default_factory=CompareSpec)

    @property
    def seed_looks(self) -> tuple[int, ...]:
        """The seeded repeats per variant at each look at their scores: one look at `seeds`,
        or one after each round."""
        return (self.seeds,) if isinstance(self.seeds, int) else self.seeds.looks

    @property
    def search_seed(self) -> int:
        """What seeds the searchers and schedulers: `search.seed`, or `fixed.seed`."""
        return self.fixed.seed if self.search.seed is None else self.search.seed

    @field_validator("variants")
    @classmethod
    def _variant_names(cls, variants: dict[str, Any]) -> dict[str, Any]:
        for name in variants:
            if not name.replace("_", "").replace("-", "").isalnum():
                raise ConfigError(name, "a variant name uses letters, digits, '-' and '_'")
        return variants

    @model_validator(mode="after")
    def _configs_within_the_search(self) -> StudySpec:
        trials = self.search.trials_per_variant
        if self.repeats.configs > trials:
            raise ConfigError("repeats.configs", f"at most search.trials_per_variant ({trials})")
        return self

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
                    check_option_values(self.variants[variant], section, option, dist)
        return self

    @model_validator(mode="after")
    def _training_switches_fit(self) -> StudySpec:
        search = self.search
        fixed = self.fixed.model_dump()
        check_training_switches(
            self.task.name, self.variants, search.space, search.per_variant, fixed
        )
        return self

    def trial(self, variant: str) -> TrialConfig:
        """The config every trial of `variant` starts from, before the search fills in its space."""
        fixed = self.fixed.model_dump()
        seed = fixed.pop("seed")
        model = ModelConfig(**dataclasses.asdict(self.variants[variant]))
        return TrialConfig(model, TrainConfig(**fixed), variant, seed)

    def digest(self) -> str:
        """A content hash of the validated spec: of what differs from the defaults.

        A field at its default value is left out, whether the spec wrote it or not. So a later
        seqlab that adds a field (with a default that keeps the old behaviour) gives an older
        spec the same digest, and a study interrupted before the upgrade can still be resumed.
        A changed default does change the digest of a spec recorded with the old value.
        """
        canonical = json.dumps(self.model_dump(mode="json", exclude_defaults=True), sort_keys=True)
        return hashlib.sha256(canonical.encode()).hexdigest()[:16]
