"""What Ray Tune searches for a study: the nuisance space of each variant, the scheduler that
shares its budget, and the checkpoint policy they need (`routing` draws and schedules each
variant's trials on its own).
"""

from __future__ import annotations

from typing import Any

from ray import tune
from ray.tune.experiment import Trial
from ray.tune.schedulers import (
    ASHAScheduler,
    FIFOScheduler,
    HyperBandScheduler,
    PopulationBasedTraining,
    TrialScheduler,
)

from pipelines.spec import OPTION_SECTIONS, PERTURBABLE, Distribution, StudySpec
from pipelines.spec.schema import MODEL_KEYS, TRAIN_KEYS

# What every search minimises: the trial's validation loss, reported each epoch.
METRIC, MODE = "val/loss", "min"


def search_space(spec: StudySpec, variant: str | None = None) -> dict[str, Any]:
    """The nuisance space as Ray Tune sampling objects (grid: every combination).

    Without `variant`, the space all variants share; with it, the variant's own additions too.
    """
    space = spec.search.variant_space(variant) if variant else spec.search.space
    if spec.search.algorithm == "grid":
        return {key: tune.grid_search(dist.args) for key, dist in space.items()}
    return {key: _sampler(dist) for key, dist in space.items()}


def trial_space(spec: StudySpec, variant: str) -> dict[str, Any]:
    """What Tune samples a trial of `variant` from: its `TrialConfig`, nested, with each
    searched key in its place (Tune samples nested dimensions in place).

    A model hyperparameter goes into `model`, a training one into `train`, and a searched
    option of the variant's cell or architecture (`cell_options.alpha`) into that options
    mapping, next to the options the variant fixes.
    """
    config = spec.trial(variant).nested()
    model, train = config["model"], config["train"]
    for key, sampler in search_space(spec, variant).items():
        section, _, option = key.partition(".")
        if section in OPTION_SECTIONS and option:
            model[section] = {**model[section], option: sampler}
        elif key in MODEL_KEYS:
            model[key] = sampler
        elif key in TRAIN_KEYS:
            train[key] = sampler
        else:  # the seed
            config[key] = sampler
    return config


def searched_keys(spec: StudySpec) -> frozenset[str]:
    """Every key the spec searches, as it writes them (`lr`, `cell_options.alpha`), in any
    variant's space: what a trial's start line shows of what it drew."""
    return frozenset(key for variant in spec.variants for key in spec.search.variant_space(variant))


def _sampler(dist: Distribution) -> Any:
    low_high = dist.args
    match dist.kind:
        case "uniform":
            return tune.uniform(*low_high)
        case "loguniform":
            return tune.loguniform(*low_high)
        case "randint":
            return tune.randint(low_high[0], low_high[1] + 1)  # Tune's upper end is exclusive
        case "choice":
            return tune.choice(dist.args)
    raise ValueError(f"unhandled distribution {dist.kind!r}")


def scheduler(spec: StudySpec) -> TrialScheduler:
    s, max_t = spec.search.scheduler, spec.fixed.max_epochs
    match s.name:
        case "asha":
            return ASHAScheduler(
                time_attr="training_iteration",
                max_t=max_t,
                grace_period=min(s.grace_period, max_t),
                reduction_factor=s.reduction_factor,
            )
        case "hyperband":
            return HyperBand(
                time_attr="training_iteration", max_t=max_t, reduction_factor=s.reduction_factor
            )
        case "pbt":
            space = search_space(spec)
            return PopulationBasedTraining(
                time_attr="training_iteration",
                perturbation_interval=s.perturbation_interval,
                hyperparam_mutations={
                    "train": {k: v for k, v in space.items() if k in PERTURBABLE}
                },
                synch=False,
            )
    return FIFOScheduler()


class HyperBand(HyperBandScheduler):
    """Ray Tune's HyperBand, with brackets that no trial's report would ever process again
    processed when Tune next asks for a trial to run.

    Ray processes a bracket when one of its trials reports at the rung, or leaves it early
    (`on_trial_remove`). Two ways leave a bracket whose every live trial is PAUSED at its rung,
    and none will report again, so the study would wait for ever:
    - a trial told to PAUSE is still saving when the bracket's last trial finishes it:
      `cleanup_full` stops only the trials already PAUSED, and this one becomes PAUSED after;
    - a trial leaves a bracket halved once already: `is_being_processed` stays set after the
      first halving, so `on_trial_remove` no longer processes the bracket.
    Processing such a bracket does what its last report would have done: stops the worse
    trials (all of them, if the bracket is finished) and unpauses the better.
    """

    def choose_trial_to_run(self, tune_controller: Any) -> Any:
        for band in self._hyperbands:
            for bracket in band:
                if bracket is not None and _stuck(bracket):
                    self._process_bracket(tune_controller, bracket)
        return super().choose_trial_to_run(tune_controller)


def _stuck(bracket: Any) -> bool:
    live = bracket.current_trials()
    return (
        bool(live)
        and bracket.cur_iter_done()
        and all(
            t.status == Trial.PAUSED and not t.is_saving and t not in bracket.trials_to_unpause
            for t in live
        )
    )


def checkpoint_every(spec: StudySpec) -> int | None:
    """The spec's `checkpoint_every`, but 1 under PBT: a trial that exploits another restores
    that trial's newest checkpoint, which must be its weights now, not at its best epoch."""
    return 1 if spec.search.scheduler.name == "pbt" else spec.search.checkpoint_every


def keep_checkpoints(spec: StudySpec) -> int:
    """The spec's best-N, but at least 4 under PBT: exploiting trials restore others' files."""
    keep = spec.search.keep_checkpoints
    return max(keep, 4) if spec.search.scheduler.name == "pbt" else keep
