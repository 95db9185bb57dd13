"""One Tuner for every variant's search: each variant drawn by its own searcher and scheduled by
its own scheduler (`pipelines.study.routing`), driven with real Tune schedulers and `Trial`s."""

from __future__ import annotations

import typing
from typing import Any

import pytest
from ray.tune.experiment import Trial
from ray.tune.schedulers import ASHAScheduler, TrialScheduler
from ray.tune.search import Searcher

from pipelines.spec import StudySpec, parse_spec
from pipelines.spec.schema import SchedulerSpec, SearchSpec
from pipelines.study import routing
from pipelines.study.space import METRIC, MODE, scheduler, trial_space

VARIANTS = {"rnn": {"cell": "tanh"}, "gru": {"cell": "gru"}, "lstm": {"cell": "lstm"}}


def _spec(seed: int = 0, variants: dict[str, Any] = VARIANTS, **search: Any) -> StudySpec:
    return parse_spec(
        {
            "name": "routing",
            "task": {"name": "adding", "options": {"length": 6}},
            "variants": variants,
            "fixed": {"max_epochs": 4, "batch_size": 32, "seed": seed},
            "search": {"space": {"lr": {"loguniform": [1e-3, 1e-1]}}, **search},
        }
    )


def _searcher(spec: StudySpec) -> routing.VariantSearch:
    return routing.VariantSearch(
        {v: trial_space(spec, v) for v in spec.variants},
        spec.search.trials_per_variant,
        spec.search.algorithm,
        spec.fixed.seed,
        METRIC,
        MODE,
    )


def _suggest_all(searcher: Searcher) -> list[dict[str, Any]]:
    configs = []
    while isinstance(config := searcher.suggest(f"t{len(configs)}"), dict):
        configs.append(config)
    return configs


ALGORITHMS = typing.get_args(SearchSpec.model_fields["algorithm"].annotation)


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_each_variant_gets_its_budget_taking_turns(algorithm: str) -> None:
    space = (
        {"lr": {"choice": [0.01, 0.1]}, "hidden_size": {"choice": [4, 8]}}
        if algorithm == "grid"
        else {"lr": {"loguniform": [1e-3, 1e-1]}}
    )
    spec = _spec(algorithm=algorithm, space=space, trials_per_variant=4)
    configs = _suggest_all(_searcher(spec))
    assert [c["variant"] for c in configs] == list(VARIANTS) * 4  # in turns
    for variant, fixed in VARIANTS.items():
        mine = [c for c in configs if c["variant"] == variant]
        assert all(c["model"]["cell"] == fixed["cell"] for c in mine)
        assert all(1e-3 <= c["train"]["lr"] <= 1e-1 for c in mine)
        if algorithm == "grid":  # every point of the grid once
            points = {(c["train"]["lr"], c["model"]["hidden_size"]) for c in mine}
            assert points == {(lr, h) for lr in (0.01, 0.1) for h in (4, 8)}
        else:
            assert len({c["train"]["lr"] for c in mine}) == 4


def test_random_search_draws_the_same_trials_from_the_same_spec() -> None:
    spec = _spec(trials_per_variant=3)
    first = _suggest_all(_searcher(spec))
    assert _suggest_all(_searcher(_spec(trials_per_variant=3))) == first
    assert _suggest_all(_searcher(_spec(seed=1, trials_per_variant=3))) != first


def test_a_variants_own_search_dimension_is_drawn_for_it_only() -> None:
    spec = _spec(
        variants={**VARIANTS, "rnn": {"cell": "leaky"}},
        trials_per_variant=2,
        per_variant={"rnn": {"cell_options.alpha": {"uniform": [0.1, 0.9]}}},
    )
    for config in _suggest_all(_searcher(spec)):
        alpha = config["model"]["cell_options"].get("alpha")
        if config["variant"] == "rnn":
            assert 0.1 <= alpha <= 0.9
        else:
            assert alpha is None


def test_optuna_learns_from_its_own_variants_results_only() -> None:
    spec = _spec(algorithm="optuna", trials_per_variant=2)
    searcher = _searcher(spec)
    configs = {f"t{i}": searcher.suggest(f"t{i}") for i in range(3)}
    for trial_id, config in configs.items():
        searcher.on_trial_complete(trial_id, {METRIC: config["train"]["lr"], "config": config})
    for variant, study in searcher.optuna.items():
        told = study._ot_study.trials
        assert len(told) == 1 and told[0].params["train/lr"] == pytest.approx(
            next(c["train"]["lr"] for c in configs.values() if c["variant"] == variant)
        )


def test_save_and_restore_go_on_where_the_search_was(tmp_path) -> None:
    spec = _spec(trials_per_variant=3)
    searcher = _searcher(spec)
    before = [searcher.suggest(f"t{i}") for i in range(4)]
    searcher.save(str(tmp_path / "state.pkl"))
    restored = _searcher(spec)
    restored.restore(str(tmp_path / "state.pkl"))
    rest = _suggest_all(restored)
    assert len(before) + len(rest) == 9
    assert rest == _suggest_all(searcher)


class _Controller:
    """The part of Tune's controller a scheduler reads: its trials."""

    def __init__(self) -> None:
        self.trials: list[Trial] = []
        self.search_alg = object()  # a searcher is in place, as with `VariantSearch`

    def get_trials(self) -> list[Trial]:
        return self.trials

    def get_live_trials(self) -> list[Trial]:
        return [t for t in self.trials if t.status in (Trial.RUNNING, Trial.PENDING)]


def _trial(controller: _Controller, variant: str, number: int) -> Trial:
    trial = Trial("train", config={"variant": variant}, trial_id=f"{variant}{number}", stub=True)
    trial.set_status(Trial.RUNNING)
    controller.trials.append(trial)
    return trial


def test_asha_stops_a_trial_only_by_comparison_with_its_own_variants_trials() -> None:
    """rnn's losses are all worse than every gru trial's. One ASHA shared by both stops each rnn
    trial at its first rung; routed, rnn's better trials go on, judged against rnn's alone."""
    losses = {"gru": [0.10, 0.11, 0.12, 0.13], "rnn": [0.50, 0.60, 0.70, 0.80]}

    def decisions(schedulers: TrialScheduler) -> dict[str, str]:
        schedulers.set_search_properties(METRIC, MODE)
        controller, made = _Controller(), {}
        trials = {
            (v, i): _trial(controller, v, i) for i in range(4) for v in losses
        }  # interleaved, as `VariantSearch` hands them out
        for trial in trials.values():
            schedulers.on_trial_add(controller, trial)
        for (variant, i), trial in trials.items():
            result = {METRIC: losses[variant][i], "training_iteration": 1}
            made[trial.trial_id] = schedulers.on_trial_result(controller, trial, result)
        return made

    def asha() -> ASHAScheduler:
        return ASHAScheduler(time_attr="training_iteration", max_t=4, grace_period=1)

    shared = decisions(asha())
    routed = decisions(routing.VariantSchedulers({v: asha() for v in losses}))
    assert {shared[f"rnn{i}"] for i in range(1, 4)} == {TrialScheduler.STOP}
    assert routed["rnn0"] == TrialScheduler.CONTINUE  # rnn's first is judged by no one
    assert routed["rnn1"] == TrialScheduler.STOP  # worse than rnn0, its own variant's
    losses.pop("rnn")  # gru's trials alone, in a scheduler of their own
    assert decisions(asha()) == {k: v for k, v in routed.items() if k.startswith("gru")}


SCHEDULERS = typing.get_args(SchedulerSpec.model_fields["name"].annotation)


@pytest.mark.parametrize("name", SCHEDULERS)
def test_each_schedulers_instance_sees_its_own_variants_trials_only(name: str) -> None:
    spec = _spec(scheduler={"name": name, "grace_period": 1, "perturbation_interval": 1})
    seen: dict[str, set[str]] = {v: set() for v in VARIANTS}

    class Watching:
        """The spec's scheduler, noting which trials its controller shows it."""

        def __init__(self, variant: str) -> None:
            self.variant, self.inner = variant, scheduler(spec)

        def __getattr__(self, name: str) -> Any:
            return getattr(self.inner, name)

        def _note(self, controller: Any) -> None:
            seen[self.variant] |= {t.config["variant"] for t in controller.get_trials()}
            seen[self.variant] |= {t.config["variant"] for t in controller.get_live_trials()}

        def on_trial_add(self, controller: Any, trial: Trial) -> None:
            self._note(controller)
            self.inner.on_trial_add(controller, trial)

        def on_trial_result(self, controller: Any, trial: Trial, result: dict) -> str:
            self._note(controller)
            return self.inner.on_trial_result(controller, trial, result)

        def choose_trial_to_run(self, controller: Any) -> Trial | None:
            self._note(controller)
            return self.inner.choose_trial_to_run(controller)

    watching: Any = {v: Watching(v) for v in VARIANTS}
    schedulers = routing.VariantSchedulers(watching)
    assert schedulers.set_search_properties(METRIC, MODE)
    controller = _Controller()
    for i in range(2):
        for variant in VARIANTS:
            trial = _trial(controller, variant, i)
            trial.set_status(Trial.PENDING)
            schedulers.on_trial_add(controller, trial)  # PBT refuses a searcher: it sees none
    chosen = schedulers.choose_trial_to_run(controller)
    assert chosen is not None
    chosen.set_status(Trial.RUNNING)
    decision = schedulers.on_trial_result(
        controller, chosen, {METRIC: 0.5, "training_iteration": 1, "config": chosen.config}
    )
    assert decision in (TrialScheduler.CONTINUE, TrialScheduler.PAUSE, TrialScheduler.STOP)
    assert seen == {v: {v} for v in VARIANTS}


@pytest.mark.parametrize(
    "tags",
    [
        {"seqlab.tune.rnn": "/r/a", "seqlab.tune.gru": "/r/b"},  # a Tuner per variant's search
        {"seqlab.tune.search": "/r/s"},  # a Tuner for the search, one for the repeats
        {"seqlab.tune.search": "/r/s", "seqlab.tune.repeats": "/r/t"},
    ],
    ids=["per-variant", "per-phase-searching", "per-phase-repeating"],
)
def test_a_study_of_an_older_tuner_layout_is_not_resumed(tags: dict[str, str]) -> None:
    from pipelines.study import resume

    spec = _spec()
    assert "run the study again" in (resume.older_layout("r1", tags, spec) or "")
    assert resume.older_layout("r1", {resume.TUNER_TAG: "/r/s"}, spec) is None
    assert resume.older_layout("r1", {}, spec) is None  # stopped before its trials began
