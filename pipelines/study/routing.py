"""Every variant's search in one Tuner, each variant still searched and scheduled on its own.

One Tuner for all variants pays Tune's set-up, and its workers' imports of torch and Lightning,
once per study instead of once per variant, and runs every variant's trials side by side, so no
variant's last trial runs alone while the other CPUs wait. What must not change is that a
variant's early stopping and its model of the space compare the variant's own trials only:

- `VariantSearch`, the Tuner's searcher, draws each trial of a variant from that variant's
  space: up front and seeded for random and grid search, from the variant's own Optuna study
  for TPE. It hands out the variants' trials in turn, `trials_per_variant` each.
- `VariantSchedulers`, the Tuner's scheduler, routes each trial to its variant's own instance
  of the spec's scheduler (ASHA, HyperBand, PBT or FIFO), which sees its variant's trials only.
"""

from __future__ import annotations

import pickle
from collections.abc import Mapping
from typing import Any

import numpy as np
import optuna
from ray.tune.experiment import Trial
from ray.tune.schedulers import TrialScheduler
from ray.tune.search import Searcher
from ray.tune.search.optuna import OptunaSearch
from ray.tune.search.variant_generator import generate_variants
from ray.tune.utils.util import merge_dicts


class VariantSearch(Searcher):
    """The trials of every variant, each drawn from its own variant's space.

    `spaces` maps each variant to the nested config Tune samples a trial of it from
    (`space.trial_space`). With `algorithm` "random" each variant's `trials` configs are drawn
    when the study starts, from a generator seeded by `seed` and the variant's place, so the
    same spec draws the same trials; with "grid" they are the grid's points; with "optuna"
    each variant has an Optuna TPE study of its own, which learns from that variant's results
    only. Variants take turns: the next trial is of the variant with the fewest so far.
    """

    def __init__(
        self,
        spaces: Mapping[str, dict[str, Any]],
        trials: int,
        algorithm: str,
        seed: int,
        metric: str,
        mode: str,
    ) -> None:
        super().__init__(metric=metric, mode=mode)
        self.variants = list(spaces)
        self.drawn: dict[str, list[dict[str, Any]]] = {}  # random and grid: every trial's config
        self.optuna: dict[str, OptunaSearch] = {}
        self.spaces = dict(spaces) if algorithm == "optuna" else {}
        for place, (variant, space) in enumerate(spaces.items()):
            if algorithm == "grid":
                self.drawn[variant] = [config for _, config in generate_variants(space)]
            elif algorithm == "optuna":
                # Optuna announces each study it creates, at INFO: one line per variant.
                optuna.logging.set_verbosity(optuna.logging.WARNING)
                searcher = OptunaSearch(seed=seed)
                searcher.set_search_properties(metric, mode, space)
                self.optuna[variant] = searcher
            else:
                rng = np.random.default_rng([seed, place])
                self.drawn[variant] = [
                    next(generate_variants(space, random_state=rng))[1] for _ in range(trials)
                ]
        self.budget = {v: len(self.drawn[v]) if v in self.drawn else trials for v in spaces}
        self.suggested = dict.fromkeys(self.variants, 0)
        self.variant_of: dict[str, str] = {}  # trial id -> its variant

    @property
    def total(self) -> int:
        """How many trials the search runs, all variants together."""
        return sum(self.budget.values())

    def set_search_properties(
        self, metric: str | None, mode: str | None, config: dict, **spec: Any
    ) -> bool:
        """Tune's Tuner calls this with its own (empty) space: the variants' spaces are ours."""
        self._metric = metric or self._metric
        self._mode = mode or self._mode
        return True

    def suggest(self, trial_id: str) -> dict[str, Any] | str | None:
        waiting = False
        for variant in sorted(self.variants, key=lambda v: self.suggested[v]):  # stable: turns
            if self.suggested[variant] >= self.budget[variant]:
                continue
            config = self._draw(variant, trial_id)
            if config is None:  # its searcher waits for results
                waiting = True
                continue
            self.suggested[variant] += 1
            self.variant_of[trial_id] = variant
            return config
        return None if waiting else Searcher.FINISHED

    def _draw(self, variant: str, trial_id: str) -> dict[str, Any] | None:
        if variant in self.drawn:
            return self.drawn[variant][self.suggested[variant]]
        suggestion = self.optuna[variant].suggest(trial_id)
        if not isinstance(suggestion, dict):
            return None
        return merge_dicts(self.spaces[variant], suggestion)

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        searcher = self.optuna.get(self.variant_of.get(trial_id, ""))
        if searcher is not None:
            searcher.on_trial_result(trial_id, result)

    def on_trial_complete(
        self, trial_id: str, result: dict | None = None, error: bool = False
    ) -> None:
        searcher = self.optuna.get(self.variant_of.get(trial_id, ""))
        if searcher is not None:
            searcher.on_trial_complete(trial_id, result, error)

    def save(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "wb") as f:
            pickle.dump(self.__dict__, f)

    def restore(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "rb") as f:
            self.__dict__.update(pickle.load(f))


class VariantSchedulers(TrialScheduler):
    """Each trial scheduled by its own variant's scheduler, which sees that variant's trials only.

    So ASHA stops a trial only by comparison with trials of its variant, HyperBand fills its
    brackets with them, and PBT exploits within the variant's population. `schedulers` maps
    each variant to its own instance of the spec's scheduler.
    """

    def __init__(self, schedulers: Mapping[str, TrialScheduler]) -> None:
        super().__init__()
        self.schedulers = dict(schedulers)
        self._metric: str | None = None
        self._turn = 0  # whose scheduler picks the next trial to run first

    @property
    def supports_buffered_results(self) -> bool:
        return all(s.supports_buffered_results for s in self.schedulers.values())

    def set_search_properties(self, metric: str | None, mode: str | None, **spec: Any) -> bool:
        results = [s.set_search_properties(metric, mode, **spec) for s in self.schedulers.values()]
        self._metric = metric
        return all(results)

    def _route(self, controller: Any, trial: Trial) -> tuple[TrialScheduler, _OneVariant]:
        variant = trial.config["variant"]
        return self.schedulers[variant], _OneVariant(controller, variant)

    def on_trial_add(self, tune_controller: Any, trial: Trial) -> None:
        scheduler, view = self._route(tune_controller, trial)
        scheduler.on_trial_add(view, trial)

    def on_trial_error(self, tune_controller: Any, trial: Trial) -> None:
        scheduler, view = self._route(tune_controller, trial)
        scheduler.on_trial_error(view, trial)

    def on_trial_result(self, tune_controller: Any, trial: Trial, result: dict) -> str:
        scheduler, view = self._route(tune_controller, trial)
        return scheduler.on_trial_result(view, trial, result)

    def on_trial_complete(self, tune_controller: Any, trial: Trial, result: dict) -> None:
        scheduler, view = self._route(tune_controller, trial)
        scheduler.on_trial_complete(view, trial, result)

    def on_trial_remove(self, tune_controller: Any, trial: Trial) -> None:
        scheduler, view = self._route(tune_controller, trial)
        scheduler.on_trial_remove(view, trial)

    def choose_trial_to_run(self, tune_controller: Any) -> Trial | None:
        """The variants' schedulers are asked in turn, starting one further each time."""
        variants = list(self.schedulers)
        for i in range(len(variants)):
            variant = variants[(self._turn + i) % len(variants)]
            trial = self.schedulers[variant].choose_trial_to_run(
                _OneVariant(tune_controller, variant)
            )
            if trial is not None:
                self._turn = (self._turn + i + 1) % len(variants)
                return trial
        return None

    def debug_string(self) -> str:
        return "\n".join(f"{v}: {s.debug_string()}" for v, s in self.schedulers.items())


class _OneVariant:
    """The Tune controller as one variant's scheduler sees it: that variant's trials only.

    And no search algorithm: PBT refuses to run beside one (its mutations would confuse a
    searcher that models the space), and `VariantSearch` models no PBT variant's space: it
    draws their starting points at random.
    """

    search_alg = None

    def __init__(self, controller: Any, variant: str) -> None:
        self._controller = controller
        self._variant = variant

    def get_trials(self) -> list[Trial]:
        return [t for t in self._controller.get_trials() if t.config["variant"] == self._variant]

    def get_live_trials(self) -> list[Trial]:
        live = self._controller.get_live_trials()
        return [t for t in live if t.config["variant"] == self._variant]

    def __getattr__(self, name: str) -> Any:
        return getattr(self._controller, name)
