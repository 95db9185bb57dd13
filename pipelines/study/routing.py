"""A study's trials in one Tuner: every variant's search, then each variant's seeded repeats as
soon as its own search is over; each variant still searched and scheduled on its own.

One Tuner for the whole study pays Tune's set-up, and its workers' imports of torch and
Lightning, once per study instead of once per variant and phase. It runs every variant's trials
side by side, so no variant's last trial runs alone while the other CPUs wait, and a variant
whose search is over does not wait for the others' before its repeats start. What must not
change is that a variant's early stopping and its model of the space compare the variant's own
trials only:

- `VariantSearch`, the Tuner's searcher, draws each trial of a variant from that variant's
  space: up front and seeded for random and grid search, from the variant's own Optuna study
  for TPE. It hands out the variants' trials in turn, `trials_per_variant` each. When the last
  of a variant's trials has ended it picks the variant's best (`best_trial`) and hands out that
  configuration's seeded repeats, marked `phase: repeat` in their config.
- `VariantSchedulers`, the Tuner's scheduler, routes each search trial to its variant's own
  instance of the spec's scheduler (ASHA, HyperBand, PBT or FIFO), which sees its variant's
  search trials only, and every repeat to a FIFO scheduler: a repeat always trains to the end.
"""

from __future__ import annotations

import copy
import math
import pickle
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import optuna
from ray.tune.experiment import Trial
from ray.tune.schedulers import FIFOScheduler, TrialScheduler
from ray.tune.search import Searcher
from ray.tune.search.optuna import OptunaSearch
from ray.tune.search.variant_generator import generate_variants
from ray.tune.utils.util import merge_dicts

from pipelines.report.stats import Sequential
from pipelines.trial import phase
from pipelines.trial.phase import OF_TRIAL, is_repeat, repeat_config

REPEATS = "repeats"  # the route of every repeat, whatever its variant


def route(config: Mapping[str, Any]) -> str:
    """Whose scheduler a trial belongs to: its variant's for a search trial, else `REPEATS`."""
    return REPEATS if is_repeat(config) else str(config["variant"])


@dataclass(frozen=True)
class Ended:
    """A search trial that has ended, as the choice of its variant's best sees it."""

    trial_id: str
    config: dict[str, Any]  # its config at its end (PBT may have changed it)
    score: float  # its lowest finite metric, inf when none
    usable: bool  # neither failed nor diverged


def best_trial(ended: Iterable[Ended]) -> Ended | None:
    """The variant's best search trial: the lowest score of any epoch (Tune's `scope="all"`)
    among trials that neither failed nor diverged; None when none has a finite score.

    Ties go to the trial that ended first. Every epoch that lowered a trial's score saved a
    checkpoint (`trainable.Report`), so the best epoch always has one to register.
    """
    best = top_trials(ended, 1)
    return best[0] if best else None


def top_trials(ended: Iterable[Ended], k: int) -> list[Ended]:
    """The variant's `k` best search trials of different configurations, best first, by
    `best_trial`'s rule (fewer when fewer can be used): a random search can draw one
    configuration twice, and repeating it twice would be one configuration's repeats."""
    scored = [e for e in ended if e.usable and math.isfinite(e.score)]
    top: list[Ended] = []
    for trial in sorted(scored, key=lambda e: e.score):  # stable: ties in the order they ended
        if len(top) < k and all(trial.config != other.config for other in top):
            top.append(trial)
    return top


class VariantSearch(Searcher):
    """The trials of every variant, each drawn from its own variant's space.

    `spaces` maps each variant to the nested config Tune samples a trial of it from
    (`space.trial_space`). With `algorithm` "random" each variant's `trials` configs are drawn
    when the study starts, from a generator seeded by `seed` and the variant's place, so the
    same spec draws the same trials; with "grid" they are the grid's points; with "optuna"
    each variant has an Optuna TPE study of its own, which learns from that variant's results
    only. Variants take turns: the next trial is of the variant with the fewest so far.

    With `repeat_seeds`, once the last search trial of a variant has ended, its best
    (`best_trial`, judged with `diverged`, the study's divergence rule) is retrained under each
    of those seeds, which draw what `vary` names afresh (`phase.repeat_config`): these repeats
    come before any search trial still to draw. A variant none of whose trials can be used
    gets no repeats (`chosen` does not name it). With `configs` k, its k best trials are each
    retrained under every seed (`repeating`); the verdict rests on the one whose repeats
    validate best (`phase.resting_config`).

    With `rounds` (`report.stats.Sequential`), a variant gets the first `rounds.looks[0]` of
    the seeds; once every variant's search is over and every repeat handed out has ended,
    the rule looks at the repeats' `test_metric`: when every pair of variants is decided the
    study stops, else each variant gets the seeds up to the next look. A variant with a
    diverged repeat takes no part (the study leaves it out). The search is finished when
    every variant's search has ended and no round is to come.
    """

    def __init__(
        self,
        spaces: Mapping[str, dict[str, Any]],
        trials: int,
        algorithm: str,
        seed: int,
        metric: str,
        mode: str,
        repeat_seeds: Sequence[int] = (),
        diverged: Callable[[Mapping[str, Any]], str | None] | None = None,
        vary: Collection[str] = ("init", "order", "data"),
        rounds: Sequential | None = None,
        test_metric: str = "",
        configs: int = 1,
    ) -> None:
        assert mode == "min", "the best trial is the lowest score"
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
        self.repeat_seeds = list(repeat_seeds)
        self.vary = tuple(vary)
        self.rounds = rounds
        self.test_metric = test_metric
        self.looks = rounds.looks if rounds else (len(self.repeat_seeds),)
        self.look = 0  # the look the repeats handed out so far lead to
        self.stopped = rounds is None  # no more rounds to come
        self.configs_repeated = configs
        self.repeating: dict[str, list[str]] = {}  # variant -> the search trials it repeats
        self.repeated: dict[str, dict[str, Any]] = {}  # repeat trial id -> its config
        # variant -> (of_trial, test score, best val/loss) of each repeat ended
        self.outcomes: dict[str, list[tuple[str, float, float]]] = {}
        self.unusable: set[str] = set()  # variants with a repeat that diverged
        self.diverged = diverged
        self.configs: dict[str, dict[str, Any]] = {}  # search trial id -> its config, as drawn
        self.scores: dict[str, float] = {}  # search trial id -> its lowest finite metric yet
        self.ended: dict[str, list[Ended]] = {v: [] for v in self.variants}
        self.chosen: dict[str, str] = {}  # variant -> the trial id its repeats retrain
        self.queued: list[dict[str, Any]] = []  # repeats' configs not handed out yet

    @property
    def total(self) -> int:
        """How many trials the study runs at most, all variants and both phases together."""
        return self.searched + len(self.variants) * self.looks[-1] * self.configs_repeated

    @property
    def searched(self) -> int:
        """How many search trials the study runs, all variants together."""
        return sum(self.budget.values())

    def search_over(self, variant: str) -> bool:
        """Whether every search trial of `variant` has ended."""
        return len(self.ended[variant]) >= self.budget[variant]

    def set_search_properties(
        self, metric: str | None, mode: str | None, config: dict, **spec: Any
    ) -> bool:
        """Tune's Tuner calls this with its own (empty) space: the variants' spaces are ours."""
        self._metric = metric or self._metric
        self._mode = mode or self._mode
        return True

    def suggest(self, trial_id: str) -> dict[str, Any] | str | None:
        if self.queued:
            config = self.queued.pop(0)
            self.repeated[trial_id] = config
            return config
        # Another round may come while repeats run, or while searches are still to end.
        waiting = not all(self.search_over(v) for v in self.variants) or not self.stopped
        for variant in sorted(self.variants, key=lambda v: self.suggested[v]):  # stable: turns
            if self.suggested[variant] >= self.budget[variant]:
                continue
            config = self._draw(variant, trial_id)
            if config is None:  # its searcher waits for results
                waiting = True
                continue
            self.suggested[variant] += 1
            self.configs[trial_id] = config
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
        if trial_id not in self.configs:
            return  # a repeat
        self._score(trial_id, result)
        searcher = self.optuna.get(self.configs[trial_id]["variant"])
        if searcher is not None:
            searcher.on_trial_result(trial_id, result)

    def on_trial_complete(
        self, trial_id: str, result: dict | None = None, error: bool = False
    ) -> None:
        if trial_id in self.repeated:
            self._repeat_ended(self.repeated[trial_id], None if error else result)
            return
        if trial_id not in self.configs:
            return
        variant = self.configs[trial_id]["variant"]
        searcher = self.optuna.get(variant)
        if searcher is not None:
            searcher.on_trial_complete(trial_id, result, error)
        if result:
            self._score(trial_id, result)
        # A trial removed before it ran, or stopped without a result, has no score.
        usable = not error and bool(result) and not (self.diverged and self.diverged(result))
        config = self._final_config(trial_id, result)
        self.ended[variant].append(
            Ended(trial_id, config, self.scores.get(trial_id, math.inf), usable)
        )
        if self.search_over(variant):
            self._queue_repeats(variant)
            self._maybe_look()

    def _score(self, trial_id: str, result: Mapping[str, Any]) -> None:
        value = float(result.get(self._metric or "", math.nan))
        if math.isfinite(value):
            self.scores[trial_id] = min(value, self.scores.get(trial_id, math.inf))

    def _final_config(self, trial_id: str, result: Mapping[str, Any] | None) -> dict[str, Any]:
        """The trial's config at its end (PBT changes it as it goes): the config it was given,
        with each value Tune reported with its last result (as `config/<path>`) in place."""
        config = copy.deepcopy(self.configs[trial_id])
        for key, value in (result or {}).items():
            if key.startswith("config/"):
                *path, leaf = key.split("/")[1:]
                node = config
                for part in path:
                    node = node.setdefault(part, {})
                node[leaf] = value
        return config

    def _queue_repeats(self, variant: str) -> None:
        top = top_trials(self.ended[variant], self.configs_repeated)
        if not top:
            return
        self.chosen[variant] = top[0].trial_id
        self.repeating[variant] = [e.trial_id for e in top]
        self.outcomes[variant] = []
        self._queue_round(variant, 0, self.looks[self.look])

    def _queue_round(self, variant: str, start: int, stop: int) -> None:
        """Each repeated configuration of `variant` under the seeds from `start` to `stop`."""
        configs = {e.trial_id: e.config for e in self.ended[variant]}
        for seed in self.repeat_seeds[start:stop]:
            for trial in self.repeating[variant]:
                self.queued.append(repeat_config(configs[trial], seed, trial, self.vary))

    def _repeat_ended(self, config: Mapping[str, Any], result: Mapping[str, Any] | None) -> None:
        variant, result = config["variant"], result or {}
        if result and self.diverged and self.diverged(result):
            self.unusable.add(variant)
        score = float(result.get(self.test_metric, math.nan))
        loss = float(result.get(self._metric or "", math.nan))  # its best epoch's
        self.outcomes[variant].append((config[OF_TRIAL], score, loss))
        self._maybe_look()

    def resting_scores(self, variant: str) -> list[float]:
        """The test scores of the repeats of the configuration the verdict on `variant` rests
        on (`phase.resting_config`), so far."""
        outcomes = self.outcomes[variant]
        resting = phase.resting_config((trial, loss) for trial, _, loss in outcomes)
        return [s for trial, s, _ in outcomes if trial == resting and math.isfinite(s)]

    def _maybe_look(self) -> None:
        """Once every search is over and every repeat handed out has ended, look at the
        scores: stop, or hand out the next round."""
        if self.stopped or not all(self.search_over(v) for v in self.variants):
            return
        taking_part = [v for v in self.chosen if v not in self.unusable]
        due = {v: self.looks[self.look] * len(self.repeating[v]) for v in taking_part}
        if any(len(self.outcomes[v]) < due[v] for v in taking_part):
            return  # this round's repeats are still running
        assert self.rounds is not None
        scores = {v: self.resting_scores(v) for v in taking_part}
        if self.look == len(self.looks) - 1 or self.rounds.decided(scores):
            self.stopped = True
            return
        self.look += 1
        for variant in taking_part:
            self._queue_round(variant, self.looks[self.look - 1], self.looks[self.look])

    def save(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "wb") as f:
            pickle.dump(self.__dict__, f)

    def restore(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "rb") as f:
            self.__dict__.update(pickle.load(f))


class VariantSchedulers(TrialScheduler):
    """Each search trial scheduled by its own variant's scheduler, which sees that variant's
    search trials only; every repeat by a FIFO scheduler of the repeats.

    So ASHA stops a trial only by comparison with trials of its variant, HyperBand fills its
    brackets with them, and PBT exploits within the variant's population; a repeat is never
    stopped early. `schedulers` maps each variant to its own instance of the spec's scheduler.
    """

    def __init__(self, schedulers: Mapping[str, TrialScheduler]) -> None:
        super().__init__()
        self.schedulers = {**schedulers, REPEATS: FIFOScheduler()}
        self._metric: str | None = None
        self._turn = 0  # whose scheduler picks the next trial to run first

    @property
    def supports_buffered_results(self) -> bool:
        return all(s.supports_buffered_results for s in self.schedulers.values())

    def set_search_properties(self, metric: str | None, mode: str | None, **spec: Any) -> bool:
        results = [s.set_search_properties(metric, mode, **spec) for s in self.schedulers.values()]
        self._metric = metric
        return all(results)

    def _route(self, controller: Any, trial: Trial) -> tuple[TrialScheduler, _Routed]:
        to = route(trial.config)
        return self.schedulers[to], _Routed(controller, to)

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
        """The variants' schedulers are asked in turn, starting one further each time; the
        repeats' when none of theirs has a trial to run.

        Search trials first: the study ends when its slowest variant's search and then that
        variant's repeats have, so the searches are the longer chains; the repeats of variants
        done searching fill the slots that searches leave free (Optuna waiting for results, the
        searches' last trials).
        """
        variants = [v for v in self.schedulers if v != REPEATS]
        for i in range(len(variants)):
            variant = variants[(self._turn + i) % len(variants)]
            trial = self.schedulers[variant].choose_trial_to_run(_Routed(tune_controller, variant))
            if trial is not None:
                self._turn = (self._turn + i + 1) % len(variants)
                return trial
        return self.schedulers[REPEATS].choose_trial_to_run(_Routed(tune_controller, REPEATS))

    def debug_string(self) -> str:
        return "\n".join(f"{v}: {s.debug_string()}" for v, s in self.schedulers.items())


class _Routed:
    """The Tune controller as one scheduler sees it: the trials of its route only (a variant's
    search trials, or the repeats).

    And no search algorithm: PBT refuses to run beside one (its mutations would confuse a
    searcher that models the space), and `VariantSearch` models no PBT variant's space: it
    draws their starting points at random.
    """

    search_alg = None

    def __init__(self, controller: Any, to: str) -> None:
        self._controller = controller
        self._route = to

    def get_trials(self) -> list[Trial]:
        return [t for t in self._controller.get_trials() if route(t.config) == self._route]

    def get_live_trials(self) -> list[Trial]:
        return [t for t in self._controller.get_live_trials() if route(t.config) == self._route]

    def __getattr__(self, name: str) -> Any:
        return getattr(self._controller, name)
