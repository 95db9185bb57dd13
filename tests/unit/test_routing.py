"""One Tuner for every variant's search: each variant drawn by its own searcher and scheduled by
its own scheduler (`pipelines.study.routing`), driven with real Tune schedulers and `Trial`s."""

from __future__ import annotations

import math
import typing
from typing import Any

import pytest
from ray.tune.experiment import Trial
from ray.tune.schedulers import ASHAScheduler, TrialScheduler
from ray.tune.search import Searcher

from pipelines.report.stats import Sequential
from pipelines.spec import StudySpec, parse_spec
from pipelines.spec.schema import VARIED, SchedulerSpec, SearchSpec
from pipelines.study import routing
from pipelines.study.failures import Divergence
from pipelines.study.space import METRIC, MODE, scheduler, trial_space
from pipelines.trial.phase import OF_TRIAL, is_repeat, repeat_config, varied
from seqmodels.config import TrialConfig

VARIANTS = {"rnn": {"cell": "tanh"}, "gru": {"cell": "gru"}, "lstm": {"cell": "lstm"}}


def _spec(
    seed: int = 0,
    variants: dict[str, Any] = VARIANTS,
    seed_of_search: int | None = None,
    **search: Any,
) -> StudySpec:
    return parse_spec(
        {
            "name": "routing",
            "task": {"name": "adding", "options": {"length": 6}},
            "variants": variants,
            "fixed": {"max_epochs": 4, "batch_size": 32, "seed": seed},
            "search": {
                "space": {"lr": {"loguniform": [1e-3, 1e-1]}},
                **({"seed": seed_of_search} if seed_of_search is not None else {}),
                **search,
            },
        }
    )


def _searcher(spec: StudySpec, seeds: tuple[int, ...] = ()) -> routing.VariantSearch:
    return routing.VariantSearch(
        {v: trial_space(spec, v) for v in spec.variants},
        spec.search.trials_per_variant,
        spec.search.algorithm,
        spec.search_seed,
        METRIC,
        MODE,
        repeat_seeds=seeds,
        diverged=Divergence("mse", 0.1667),
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


def test_search_seed_draws_the_trials_and_defaults_to_the_fixed_seed() -> None:
    def lrs(spec: StudySpec) -> list[float]:
        return [c["train"]["lr"] for c in _suggest_all(_searcher(spec))]

    assert _spec(seed=3).search_seed == 3 and _spec(seed=3, seed_of_search=7).search_seed == 7
    assert lrs(_spec(seed=3, seed_of_search=7)) == lrs(_spec(seed=5, seed_of_search=7))
    assert lrs(_spec(seed=3, seed_of_search=7)) != lrs(_spec(seed=3, seed_of_search=8))
    assert lrs(_spec(seed=3)) == lrs(_spec(seed=4, seed_of_search=3))


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


def _search_all(searcher: routing.VariantSearch) -> dict[str, dict[str, Any]]:
    """Every search trial's config, by trial id, handed out before any has ended."""
    configs: dict[str, dict[str, Any]] = {}
    while isinstance(config := searcher.suggest(f"t{len(configs)}"), dict):
        assert not is_repeat(config)
        configs[f"t{len(configs)}"] = config
    return configs


def test_a_variants_repeats_come_once_its_last_search_trial_has_ended_and_not_before() -> None:
    spec = _spec(trials_per_variant=3)
    searcher = _searcher(spec, seeds=(11, 12))
    configs = _search_all(searcher)
    assert searcher.suggest("early") is None  # no repeat until a variant's search is over
    gru = [t for t, c in configs.items() if c["variant"] == "gru"]
    scores = dict(zip(gru, [0.30, 0.10, 0.20], strict=True))
    for trial_id in gru:  # each reports a worse epoch after its best
        searcher.on_trial_result(trial_id, {METRIC: scores[trial_id], "training_iteration": 1})
    for trial_id in gru[:2]:
        searcher.on_trial_complete(trial_id, {METRIC: 0.9, "training_iteration": 2})
        assert searcher.suggest(f"r-{trial_id}") is None  # gru's search is not over yet
    searcher.on_trial_complete(gru[2], {METRIC: 0.9, "training_iteration": 2})
    repeats = [searcher.suggest("r1"), searcher.suggest("r2")]
    assert searcher.suggest("r3") is None  # the other variants still search
    best = configs[gru[1]]  # the lowest score of any epoch, not of the last
    assert searcher.chosen == {"gru": gru[1]}
    for seed, repeat in zip((11, 12), repeats, strict=True):
        assert isinstance(repeat, dict) and is_repeat(repeat)
        assert repeat[OF_TRIAL] == gru[1] and repeat["seed"] == seed
        seeds = ("seed", "init_seed", "order_seed", "data_seed")
        assert {k: v for k, v in repeat.items() if k not in (*seeds, "phase", OF_TRIAL)} == {
            k: v for k, v in best.items() if k != "seed"
        }
        # by default a repeat's seed draws its weights, its batches' order and its data
        assert [repeat[key] for key in seeds] == [seed] * 4 and varied(repeat) == list(VARIED)


@pytest.mark.parametrize("vary", [["init"], ["order"], ["data"], ["init", "data"]])
def test_a_repeat_keeps_what_the_spec_does_not_vary_at_the_search_trials_seed(
    vary: list[str],
) -> None:
    searched = {"model": {"hidden_size": 8}, "train": {"lr": 0.1}, "variant": "gru", "seed": 0}
    repeat = repeat_config(searched, 7, "t1", vary)
    assert varied(repeat) == vary
    assert repeat["init_seed"] == (7 if "init" in vary else 0)
    assert repeat["order_seed"] == (7 if "order" in vary else 0)
    assert repeat.get("data_seed") == (7 if "data" in vary else None)
    trial = TrialConfig.from_nested(repeat)
    assert TrialConfig.from_params(trial.params()) == trial  # as `seqlab rerun` reads it back
    assert searched["seed"] == 0  # the search trial's config is not changed


def test_failed_and_diverged_trials_are_never_repeated_and_a_variant_of_them_gets_none() -> None:
    spec = _spec(trials_per_variant=2)
    searcher = _searcher(spec, seeds=(5,))
    configs = _search_all(searcher)
    by_variant = {v: [t for t, c in configs.items() if c["variant"] == v] for v in VARIANTS}
    rnn, gru, lstm = by_variant["rnn"], by_variant["gru"], by_variant["lstm"]
    searcher.on_trial_result(rnn[0], {METRIC: 0.01, "training_iteration": 1})
    searcher.on_trial_complete(rnn[0], error=True)  # its good epoch does not count
    searcher.on_trial_complete(rnn[1], {METRIC: 0.2, "training_iteration": 2})
    searcher.on_trial_result(gru[0], {METRIC: 0.01, "training_iteration": 1})
    searcher.on_trial_complete(gru[0], {METRIC: math.nan, "training_iteration": 2})  # diverged
    searcher.on_trial_complete(gru[1], error=True)
    for trial_id in lstm:
        searcher.on_trial_complete(trial_id, None)  # removed before it ran
    (repeat,) = [searcher.suggest("r1")]
    assert isinstance(repeat, dict) and repeat[OF_TRIAL] == rnn[1]
    assert searcher.chosen == {"rnn": rnn[1]}
    assert searcher.suggest("r2") == Searcher.FINISHED


def test_a_repeat_retrains_the_config_the_trial_ended_with() -> None:
    """Under PBT a trial's config changes as it trains; Tune reports it with each result."""
    spec = _spec(variants={"rnn": VARIANTS["rnn"]}, trials_per_variant=1)
    searcher = _searcher(spec, seeds=(3,))
    (trial_id,) = _search_all(searcher)
    searcher.on_trial_complete(
        trial_id, {METRIC: 0.1, "training_iteration": 4, "config/train/lr": 0.0042}
    )
    repeat = searcher.suggest("r")
    assert isinstance(repeat, dict) and repeat["train"]["lr"] == 0.0042
    assert repeat["model"]["cell_options"] == {}  # what the result does not report is kept
    assert searcher.suggest("r2") == Searcher.FINISHED


def test_the_searcher_finishes_when_every_search_is_over_and_every_repeat_handed_out() -> None:
    spec = _spec(trials_per_variant=2)
    searcher = _searcher(spec, seeds=(1, 2, 3))
    assert searcher.total == 3 * 2 + 3 * 3  # what the Tuner's num_samples caps
    configs = _search_all(searcher)
    handed = []
    for number, trial_id in enumerate(configs):
        searcher.on_trial_complete(trial_id, {METRIC: 0.1 + number, "training_iteration": 4})
        while isinstance(config := searcher.suggest(f"r{len(handed)}"), dict):
            handed.append(config)
    assert len(handed) == 9 and all(is_repeat(c) for c in handed)
    assert searcher.suggest("last") == Searcher.FINISHED


class _Controller:
    """The part of Tune's controller a scheduler reads: its trials."""

    def __init__(self) -> None:
        self.trials: list[Trial] = []
        self.search_alg = object()  # a searcher is in place, as with `VariantSearch`

    def get_trials(self) -> list[Trial]:
        return self.trials

    def get_live_trials(self) -> list[Trial]:
        return [t for t in self.trials if t.status in (Trial.RUNNING, Trial.PENDING)]


def _trial(controller: _Controller, variant: str, number: int, repeat: bool = False) -> Trial:
    config = {"variant": variant, **({"phase": "repeat"} if repeat else {})}
    trial_id = f"{variant}{'-repeat' if repeat else ''}{number}"
    trial = Trial("train", config=config, trial_id=trial_id, stub=True)
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
    seen: dict[str, set[tuple[str, bool]]] = {v: set() for v in VARIANTS}

    class Watching:
        """The spec's scheduler, noting which trials its controller shows it."""

        def __init__(self, variant: str) -> None:
            self.variant, self.inner = variant, scheduler(spec)

        def __getattr__(self, name: str) -> Any:
            return getattr(self.inner, name)

        def _note(self, controller: Any) -> None:
            shown = [*controller.get_trials(), *controller.get_live_trials()]
            seen[self.variant] |= {(t.config["variant"], is_repeat(t.config)) for t in shown}

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
    # A variant's repeat runs once no search trial is waiting to, and a FIFO scheduler of the
    # repeats keeps it to the end: no variant's scheduler ever sees it.
    repeat = _trial(controller, "gru", 0, repeat=True)
    repeat.set_status(Trial.PENDING)
    schedulers.on_trial_add(controller, repeat)
    first = schedulers.choose_trial_to_run(controller)
    assert first is not None and not is_repeat(first.config)  # a search trial goes first
    for trial in controller.trials:
        if trial is not repeat and not is_repeat(trial.config):
            trial.set_status(Trial.TERMINATED)
    assert schedulers.choose_trial_to_run(controller) is repeat
    repeat.set_status(Trial.RUNNING)
    result = {METRIC: 99.0, "training_iteration": 1, "config": repeat.config}
    assert schedulers.on_trial_result(controller, repeat, result) == TrialScheduler.CONTINUE
    schedulers.on_trial_complete(controller, repeat, result)
    assert seen == {v: {(v, False)} for v in VARIANTS}


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


def _rounds_searcher(rounds: Sequential) -> routing.VariantSearch:
    spec = _spec(variants={"rnn": VARIANTS["rnn"], "lstm": VARIANTS["lstm"]}, trials_per_variant=1)
    return routing.VariantSearch(
        {v: trial_space(spec, v) for v in spec.variants},
        1,
        "random",
        0,
        METRIC,
        MODE,
        repeat_seeds=range(1, rounds.looks[-1] + 1),
        diverged=Divergence("mse", 0.1667),
        rounds=rounds,
        test_metric="test/mse",
    )


def _run_round(
    searcher: routing.VariantSearch, scores: dict[str, list[float]], ids: list[str]
) -> dict[str, list[int]]:
    """Hand out the repeats the searcher has queued, then end each with the next of its
    variant's `scores`: one round, as Tune would run it; the seeds handed out, by variant."""
    handed: dict[str, list[int]] = {}
    running = []
    while isinstance(config := searcher.suggest(f"r{len(ids)}"), dict):
        assert is_repeat(config)
        ids.append(f"r{len(ids)}")
        running.append((ids[-1], config["variant"]))
        handed.setdefault(config["variant"], []).append(config["seed"])
    for trial_id, variant in running:
        score = scores[variant].pop(0)
        searcher.on_trial_complete(trial_id, {"test/mse": score, METRIC: score})
    return handed


def test_seeds_come_in_rounds_until_every_pair_is_decided() -> None:
    rounds = Sequential((4, 8, 12), alpha=0.05)
    searcher = _rounds_searcher(rounds)
    for i, _ in enumerate(_suggest_all(searcher)):
        searcher.on_trial_complete(f"t{i}", {METRIC: 0.01, "training_iteration": 1})
    # rnn's and lstm's first 8 scores interleave, then lstm's are all lower
    scores = {
        v: [0.10 + 0.01 * i + 0.02 * k for k in range(8)] for i, v in enumerate(("rnn", "lstm"))
    }
    scores["rnn"] += [0.5] * 4
    scores["lstm"] += [0.001] * 4
    ids: list[str] = []
    first = _run_round(searcher, scores, ids)
    assert first == {"rnn": [1, 2, 3, 4], "lstm": [1, 2, 3, 4]}  # 4 cannot decide at 0.05/3
    second = _run_round(searcher, scores, ids)
    assert second == {"rnn": [5, 6, 7, 8], "lstm": [5, 6, 7, 8]}
    assert not searcher.stopped  # 8 overlapping scores each: not decided
    third = _run_round(searcher, scores, ids)
    assert third == {"rnn": [9, 10, 11, 12], "lstm": [9, 10, 11, 12]}
    assert searcher.stopped and searcher.suggest("after") == Searcher.FINISHED


def test_a_study_stops_adding_seeds_once_decided_and_leaves_a_diverged_variant_out() -> None:
    rounds = Sequential((5, 10), alpha=0.05)
    searcher = _rounds_searcher(rounds)
    for i, _ in enumerate(_suggest_all(searcher)):
        searcher.on_trial_complete(f"t{i}", {METRIC: 0.01, "training_iteration": 1})
    scores = {"rnn": [0.10, 0.11, 0.12, 0.13, 0.14], "lstm": [0.01, 0.02, 0.03, 0.04, 0.05]}
    ids: list[str] = []
    assert _run_round(searcher, scores, ids) == {"rnn": [1, 2, 3, 4, 5], "lstm": [1, 2, 3, 4, 5]}
    assert searcher.stopped and searcher.suggest("next") == Searcher.FINISHED
    assert searcher.total == 2 + 2 * 10  # Tune is told the most; the searcher ends it sooner

    searcher = _rounds_searcher(rounds)
    for i, _ in enumerate(_suggest_all(searcher)):
        searcher.on_trial_complete(f"t{i}", {METRIC: 0.01, "training_iteration": 1})
    scores = {"rnn": [0.10, 1e6, 0.12, 0.13, 0.14], "lstm": [0.01, 0.05, 0.03, 0.04, 0.02]}
    _run_round(searcher, scores, [])
    assert searcher.unusable == {"rnn"}  # no pair left to decide: lstm alone
    assert searcher.stopped


def test_each_of_a_variants_best_configurations_is_repeated_and_the_best_validated_decides() -> (
    None
):
    spec = _spec(variants={"rnn": VARIANTS["rnn"], "lstm": VARIANTS["lstm"]}, trials_per_variant=3)
    searcher = routing.VariantSearch(
        {v: trial_space(spec, v) for v in spec.variants},
        3,
        "random",
        0,
        METRIC,
        MODE,
        repeat_seeds=(1, 2),
        diverged=Divergence("mse", 0.1667),
        test_metric="test/mse",
        configs=2,
    )
    configs = {f"t{i}": c for i, c in enumerate(_suggest_all(searcher))}
    scores = iter([0.3, 0.3, 0.1, 0.1, 0.2, 0.2])  # per variant: trials 3rd, 1st, 2nd best
    for trial_id in configs:
        searcher.on_trial_complete(trial_id, {METRIC: next(scores), "training_iteration": 1})
    repeats = {f"r{i}": searcher.suggest(f"r{i}") for i in range(8)}
    assert searcher.total == 6 + 2 * 2 * 2 and all(is_repeat(r) for r in repeats.values())
    for variant in ("rnn", "lstm"):
        mine = [t for t, c in configs.items() if c["variant"] == variant]
        top = searcher.repeating[variant]
        assert top == [mine[1], mine[2]] and searcher.chosen[variant] == mine[1]
        got = sorted((r[OF_TRIAL], r["seed"]) for r in repeats.values() if r["variant"] == variant)
        assert got == sorted((t, s) for t in top for s in (1, 2))
    # rnn's runner-up validates better over its repeats: its test scores are the ones compared
    runner_up = searcher.repeating["rnn"][1]
    for number, (trial_id, repeat) in enumerate(repeats.items()):
        val = 0.05 if repeat[OF_TRIAL] == runner_up else 0.2
        searcher.on_trial_complete(trial_id, {"test/mse": float(number), METRIC: val})
    compared = [float(n) for n, r in enumerate(repeats.values()) if r[OF_TRIAL] == runner_up]
    assert searcher.resting_scores("rnn") == compared and len(compared) == 2
    assert searcher.suggest("after") == Searcher.FINISHED


def test_the_best_configurations_repeated_are_different_configurations() -> None:
    same = {"train": {"lr": 0.01}, "variant": "rnn", "seed": 0}
    ended = [
        routing.Ended("a", same, 0.2, True),
        routing.Ended("b", dict(same), 0.1, True),  # the same configuration, drawn again
        routing.Ended("c", {**same, "train": {"lr": 0.03}}, 0.3, True),
        routing.Ended("d", {**same, "train": {"lr": 0.05}}, 0.05, False),  # diverged
    ]
    assert [e.trial_id for e in routing.top_trials(ended, 2)] == ["b", "c"]
    assert [e.trial_id for e in routing.top_trials(ended, 5)] == ["b", "c"]
