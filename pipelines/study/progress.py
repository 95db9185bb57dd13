"""Live progress on the terminal: a line when a trial starts or ends, with the best so far."""

from __future__ import annotations

import math
import sys
import time
from typing import Any, TextIO

from ray.tune import Callback
from ray.tune.experiment import Trial

from pipelines.study.failures import Divergence, trial_error


class Progress(Callback):
    """Prints `[variant] trial 2/3 ...` lines; Ray Tune's own tables are switched off.

    `max_epochs` is the training budget of a trial. With `test_metric` (a repeat's
    `test/<metric>`), a trial's last report is its test result, after its last epoch: it is
    counted as no epoch, and its value is shown when the trial ends. With `diverged` (the
    study's rule), a trial that ends diverged says so, and why, in place of its score.
    """

    def __init__(
        self,
        variant: str,
        total: int,
        metric: str,
        max_epochs: int,
        out: TextIO | None = None,
        every_s: float = 15.0,
        test_metric: str | None = None,
        diverged: Divergence | None = None,
    ) -> None:
        self.variant = variant
        self.total = total
        self.metric = metric
        self.max_epochs = max_epochs
        self.test_metric = test_metric
        self.diverged = diverged
        # None: whatever sys.stdout is at print time. Tune pickles its callbacks with the
        # experiment state, and a captured or redirected stream may not pickle.
        self.out = out
        self.every_s = every_s  # a heartbeat line at most this often while trials run
        self.last_line = time.monotonic()
        self.numbers: dict[str, int] = {}
        self.trial_best: dict[str, float] = {}
        self.finished = 0
        self.best = math.inf

    def on_trial_start(
        self, iteration: int, trials: list[Trial], trial: Trial, **info: Any
    ) -> None:
        number = self.numbers.setdefault(trial.trial_id, len(self.numbers) + 1)
        searched = ", ".join(f"{k}={_short(v)}" for k, v in sorted(trial.evaluated_params.items()))
        self._say(f"trial {number}/{self.total} started  {searched}")

    def on_trial_result(
        self, iteration: int, trials: list[Trial], trial: Trial, result: dict, **info: Any
    ) -> None:
        value = float(result.get(self.metric, math.nan))
        if math.isfinite(value):
            self.trial_best[trial.trial_id] = min(value, self.trial_best.get(trial.trial_id, value))
            self.best = min(self.best, value)
        if time.monotonic() - self.last_line >= self.every_s:
            running = sum(t.status == Trial.RUNNING for t in trials)
            epoch = self._epochs(result)
            number = self.numbers.get(trial.trial_id, "?")
            where = "tested" if self._is_test(result) else f"at epoch {epoch}/{self.max_epochs}"
            self._say(
                f"running {running}, done {self.finished}/{self.total}, "
                f"trial {number} {where}, best so far {self.best:.4f}"
            )

    def on_trial_complete(
        self, iteration: int, trials: list[Trial], trial: Trial, **info: Any
    ) -> None:
        self.finished += 1
        last = trial.last_result or {}
        epochs = self._epochs(last)
        how = "finished" if epochs >= self.max_epochs else f"stopped early at epoch {epochs}"
        tested = (
            f", {self.test_metric} {float(last[self.test_metric]):.4f}"
            if self._is_test(last)
            else ""
        )
        running = sum(t.status == Trial.RUNNING for t in trials if t is not trial)
        why = self.diverged(last) if self.diverged is not None else None
        score = (
            f"DIVERGED: {why}"
            if why
            else f"best {self.metric} {self.trial_best.get(trial.trial_id, math.nan):.4f}{tested}"
        )
        self._say(
            f"trial {self.numbers.get(trial.trial_id, '?')}/{self.total} {how}: {score} | "
            f"done {self.finished}/{self.total}, running {running}, best so far {self.best:.4f}"
        )

    def on_trial_error(
        self, iteration: int, trials: list[Trial], trial: Trial, **info: Any
    ) -> None:
        self.finished += 1
        line, _ = trial_error(trial)  # the traceback goes to its MLflow run and the study's log
        self._say(f"trial {self.numbers.get(trial.trial_id, '?')}/{self.total} FAILED: {line}")

    def _is_test(self, result: dict) -> bool:
        return self.test_metric is not None and self.test_metric in result

    def _epochs(self, result: dict) -> int:
        """Epochs trained by the time of `result`: Tune counts the test report as one more."""
        reports = int(result.get("training_iteration", 0))
        return reports - 1 if self._is_test(result) else reports

    def _say(self, line: str) -> None:
        print(f"[{self.variant}] {line}", file=self.out or sys.stdout, flush=True)
        self.last_line = time.monotonic()


def _short(value: Any) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)
