"""`space.HyperBand`: a bracket whose live trials are all PAUSED at its rung, with no report to
come, is processed when Tune next asks for a trial, where Ray's HyperBand waits for ever.

Driven with real Tune `Trial`s and the calls Tune's controller makes, in the orders that left a
study's driver spinning: Tune pauses a trial by saving it first, and a bracket's other trial can
finish the bracket while that save is under way; a trial can error out of a bracket already
halved once.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
from ray.tune.experiment import Trial
from ray.tune.schedulers import HyperBandScheduler, TrialScheduler

from pipelines.study.space import METRIC, MODE, HyperBand


class _Controller:
    """What HyperBand calls on Tune's controller, doing what Tune's `stop_trial` does."""

    def __init__(self, scheduler: HyperBandScheduler) -> None:
        self.scheduler = scheduler
        self.trials: list[Trial] = []

    def add(self, number: int) -> Trial:
        trial = Trial("train", config={"n": number}, trial_id=f"t{number}", stub=True)
        trial.set_status(Trial.RUNNING)
        self.trials.append(trial)
        self.scheduler.on_trial_add(self, trial)
        return trial

    def report(self, trial: Trial, epoch: int, loss: float) -> str:
        result = {METRIC: loss, "training_iteration": epoch}
        decision = self.scheduler.on_trial_result(self, trial, result)
        trial.update_last_result(result)
        return decision

    def stop_trial(self, trial: Trial) -> None:
        if trial.status in (Trial.PENDING, Trial.PAUSED):
            self.scheduler.on_trial_remove(self, trial)
        elif trial.status == Trial.RUNNING:
            self.scheduler.on_trial_complete(self, trial, trial.last_result)
        trial.set_status(Trial.TERMINATED)

    def error(self, trial: Trial) -> None:
        self.scheduler.on_trial_error(self, trial)
        trial.set_status(Trial.ERROR)

    def get_trials(self) -> list[Trial]:
        return self.trials

    def get_live_trials(self) -> list[Trial]:
        return [t for t in self.trials if t.status in (Trial.RUNNING, Trial.PENDING)]


def _pause_finishes_during_the_save(tune: _Controller) -> list[Trial]:
    """max_t 4, eta 3: the first bracket holds two trials and ends at epoch 4."""
    first, second = tune.add(0), tune.add(1)
    assert tune.report(first, 4, 0.1) == TrialScheduler.PAUSE
    first.temporary_state.saving_to = object()  # Tune saves a trial before it is PAUSED
    assert tune.report(second, 4, 0.2) == TrialScheduler.STOP  # the bracket is finished
    tune.stop_trial(second)
    first.temporary_state.saving_to = None  # the save resolves: PAUSED, in a finished bracket
    first.set_status(Trial.PAUSED)
    return [first]


def _error_after_a_halving(tune: _Controller) -> list[Trial]:
    """max_t 9, eta 3: three trials fill the first bracket; the second holds five, and halves
    them to two at epoch 3."""
    for number in range(3):
        tune.add(number)
    halved = [tune.add(number) for number in range(3, 8)]
    for trial, loss in zip(halved[:4], (0.1, 0.5, 0.6, 0.7), strict=True):
        assert tune.report(trial, 3, loss) == TrialScheduler.PAUSE
        trial.set_status(Trial.PAUSED)
    assert tune.report(halved[4], 3, 0.2) == TrialScheduler.CONTINUE  # one of the two kept
    best, second = halved[0], halved[4]
    assert tune.scheduler.choose_trial_to_run(tune) is best  # unpaused
    best.set_status(Trial.RUNNING)
    assert tune.report(best, 9, 0.05) == TrialScheduler.PAUSE  # the bracket waits for `second`
    best.set_status(Trial.PAUSED)
    tune.error(second)  # leaves the bracket, but it was halved once: Ray no longer processes it
    return [best]


SCENARIOS: dict[str, tuple[int, Callable[[_Controller], list[Trial]]]] = {
    "paused-while-the-bracket-finished": (4, _pause_finishes_during_the_save),
    "error-after-a-halving": (9, _error_after_a_halving),
}


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_a_bracket_no_report_would_process_is_processed(scenario: str) -> None:
    max_t, play = SCENARIOS[scenario]

    def after(scheduler: HyperBandScheduler) -> tuple[list[Trial], Trial | None]:
        scheduler.set_search_properties(METRIC, MODE)
        tune = _Controller(scheduler)
        stuck = play(tune)
        return stuck, scheduler.choose_trial_to_run(tune)

    # Ray's own scheduler leaves the trial PAUSED and offers nothing to run: the driver spins.
    stuck, offered = after(HyperBandScheduler(time_attr="training_iteration", max_t=max_t))
    assert offered is None and [t.status for t in stuck] == [Trial.PAUSED]
    # Processed, the finished bracket stops its last trial, as its last report would have.
    stuck, offered = after(HyperBand(time_attr="training_iteration", max_t=max_t))
    assert offered is None and [t.status for t in stuck] == [Trial.TERMINATED]
