"""Live progress of a phase's trials: in a terminal a live table (rich); elsewhere a line when a
trial starts or ends, with the best so far."""

from __future__ import annotations

import atexit
import math
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TextIO

from ray.tune import Callback
from ray.tune.experiment import Trial

from pipelines.study.failures import Divergence, trial_error
from pipelines.trial.phase import OF_TRIAL, is_repeat

if TYPE_CHECKING:
    from rich.console import Console
    from rich.live import Live

LIVE_EVERY_S = 0.1  # the live table redraws on a result at most this often


def repeats_group(variant: str) -> str:
    """The group a variant's seeded repeats are counted and labelled in."""
    return f"{variant} repeats"


@dataclass
class _Row:
    """One trial's line in the live table."""

    number: int  # within its group
    variant: str
    group: str  # what its number counts in: its variant, or the phase's label
    epochs: int = 0
    best: float = math.nan
    state: str = "running"


class Progress(Callback):
    """Prints `[variant] trial 2/3 ...` lines; Ray Tune's own tables are switched off.

    `total` is how many trials the phase runs, all labelled `label`; or, when the phase runs
    several variants' trials, each group's own number of them, by the variant's name for its
    search trials and `repeats_group(variant)` for its seeded repeats: each trial is then
    counted, and its lines labelled, by its group. With `shown`, a search trial's start line
    names only those of its parameters (as the spec writes them), the ones its variant's search
    drew; a repeat's names its seed and the search trial whose configuration it retrains.
    A group in `rounds` (seeds added until the verdict is decided) has its total as a range,
    from its first round's size to the most it can run: `trial 3/5-20`.

    `max_epochs` is the training budget of a trial. With `test_metric` (a repeat's
    `test/<metric>`), a trial whose last report holds it reported its test result there, after
    its last epoch: that report is counted as no epoch, and its value is shown when the trial
    ends. With `diverged` (the study's rule), a trial that ends diverged says so, and why, in
    place of its score.

    When the output is a terminal (or `console`, a rich Console, is one), the phase is a live
    table instead, a row per trial (variant, trial, epoch/max, best metric, state) redrawn on
    each event, left on screen when the phase ends; only a failed trial's line is printed,
    above it. Elsewhere (CI, logs, a captured stdout) the lines are printed as they come.
    """

    console: Console | None = None  # None: a Console on `out`, if that is a terminal

    def __init__(
        self,
        label: str,
        total: int | Mapping[str, int],
        metric: str,
        max_epochs: int,
        out: TextIO | None = None,
        every_s: float = 15.0,
        test_metric: str | None = None,
        diverged: Divergence | None = None,
        shown: frozenset[str] | None = None,
        rounds: Mapping[str, int] | None = None,
    ) -> None:
        self.label = label
        self.rounds = dict(rounds or {})  # group -> its first round's size, its total the most
        self.totals = dict(total) if isinstance(total, Mapping) else {label: total}
        self.total = sum(self.totals.values())
        self.shown = shown
        self.metric = metric
        self.max_epochs = max_epochs
        self.test_metric = test_metric
        self.diverged = diverged
        # None: whatever sys.stdout is at print time. Tune pickles its callbacks with the
        # experiment state, and a captured or redirected stream may not pickle.
        self.out = out
        self.every_s = every_s  # a heartbeat line at most this often while trials run
        self.last_line = time.monotonic()
        self.numbers: dict[str, int] = {}  # trial id -> its number within its group
        self.groups: dict[str, str] = {}  # trial id -> its group: its variant, or the label
        self.trial_best: dict[str, float] = {}
        self.done: dict[str, int] = dict.fromkeys(self.totals, 0)  # finished, per group
        self.best = math.inf
        self.rows: dict[str, _Row] = {}
        self._live: Live | None = None  # the live table, once the phase has started in one
        self._plain: bool | None = None  # decided at the phase's first event

    @property
    def finished(self) -> int:
        """Trials of the phase that have ended, every group together."""
        return sum(self.done.values())

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()  # a live display holds locks and the terminal: not pickled
        state.pop("console", None)
        state.update(_live=None, _plain=None)
        return state

    def on_trial_start(
        self, iteration: int, trials: list[Trial], trial: Trial, **info: Any
    ) -> None:
        number, group = self._number(trial)
        if not self._is_plain():
            self._row(trial).state = "running"
        if is_repeat(trial.config):
            drawn = {"seed": trial.config["seed"], "config of": trial.config[OF_TRIAL]}
        else:
            drawn = {_as_written(k): v for k, v in trial.evaluated_params.items()}
            if self.shown is not None:
                drawn = {k: v for k, v in drawn.items() if k in self.shown}
        searched = ", ".join(f"{k}={_short(v)}" for k, v in sorted(drawn.items()))
        self._say(f"trial {number}/{self._of(group)} started  {searched}", trials, group)

    def on_trial_result(
        self, iteration: int, trials: list[Trial], trial: Trial, result: dict, **info: Any
    ) -> None:
        value = float(result.get(self.metric, math.nan))
        if math.isfinite(value):
            self.trial_best[trial.trial_id] = min(value, self.trial_best.get(trial.trial_id, value))
            self.best = min(self.best, value)
        if not self._is_plain():
            row = self._row(trial)
            row.epochs = self._epochs(result)
            row.best = self.trial_best.get(trial.trial_id, math.nan)
            if self._is_test(result):
                row.state = "tested"
            if time.monotonic() - self.last_line >= LIVE_EVERY_S:
                self._draw(trials)
            return
        if time.monotonic() - self.last_line >= self.every_s:
            running = sum(t.status == Trial.RUNNING for t in trials)
            epoch = self._epochs(result)
            number, group = self._number(trial)
            where = "tested" if self._is_test(result) else f"at epoch {epoch}/{self.max_epochs}"
            self._say(
                f"running {running}, done {self.finished}/{self.total}, "
                f"trial {number} {where}, best so far {self.best:.4f}",
                group=group,
            )

    def on_trial_complete(
        self, iteration: int, trials: list[Trial], trial: Trial, **info: Any
    ) -> None:
        number, group = self._number(trial)
        self.done[group] += 1
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
        if not self._is_plain():
            row = self._row(trial)
            row.epochs, row.state = epochs, f"{how}: {score}"
        total = self._of(group)
        self._say(
            f"trial {number}/{total} {how}: {score} | "
            f"done {self.done[group]}/{total}, running {running}, best so far {self.best:.4f}",
            trials,
            group,
        )

    def on_trial_error(
        self, iteration: int, trials: list[Trial], trial: Trial, **info: Any
    ) -> None:
        number, group = self._number(trial)
        self.done[group] += 1
        line, _ = trial_error(trial)  # the traceback goes to its MLflow run and the study's log
        if not self._is_plain():
            self._row(trial).state = "FAILED"
        self._say(f"trial {number}/{self._of(group)} FAILED: {line}", trials, group, always=True)

    def _of(self, group: str) -> str:
        """How many trials `group` runs: a number, or the range its rounds can reach."""
        total = self.totals[group]
        return f"{self.rounds[group]}-{total}" if group in self.rounds else str(total)

    def on_experiment_end(self, trials: list[Trial], **info: Any) -> None:
        if self._live is not None:
            self._draw(trials)
            self._live.stop()  # the last table stays on screen, above what follows
            self._live = None

    def _is_test(self, result: dict) -> bool:
        return self.test_metric is not None and self.test_metric in result

    def _epochs(self, result: dict) -> int:
        """Epochs trained by the time of `result`: Tune counts the test report as one more."""
        reports = int(result.get("training_iteration", 0))
        return reports - 1 if self._is_test(result) else reports

    def _number(self, trial: Trial) -> tuple[int, str]:
        """The trial's number within its group, and the group; a trial first seen (restored
        mid-run) gets the next number of its group."""
        if trial.trial_id not in self.numbers:
            variant = str((trial.config or {}).get("variant", ""))
            if is_repeat(trial.config) and repeats_group(variant) in self.totals:
                variant = repeats_group(variant)
            group = variant if variant in self.totals else self.label
            self.groups[trial.trial_id] = group
            taken = sum(g == group for g in self.groups.values())
            self.numbers[trial.trial_id] = taken
        return self.numbers[trial.trial_id], self.groups[trial.trial_id]

    def _row(self, trial: Trial) -> _Row:
        """The trial's row in the live table."""
        number, group = self._number(trial)
        # Named by its group (its variant, or its variant's repeats), if it is counted in one.
        name = group if group != self.label else str((trial.config or {}).get("variant", group))
        return self.rows.setdefault(trial.trial_id, _Row(number, name, group=group))

    def _say(
        self,
        line: str,
        trials: list[Trial] | None = None,
        group: str | None = None,
        always: bool = False,
    ) -> None:
        """The event's line, labelled by its group, or in a terminal the table redrawn (and
        the line if `always`)."""
        line = f"[{group or self.label}] {line}"
        if self._is_plain():
            print(line, file=self.out or sys.stdout, flush=True)
            self.last_line = time.monotonic()
            return
        if always:
            self._start().console.print(line, markup=False, highlight=False, soft_wrap=True)
        self._draw(trials or [])

    def _is_plain(self) -> bool:
        """Whether this phase prints lines: its output is not a terminal."""
        if self._plain is None:
            if self.console is not None:
                console = self.console
            else:
                stream = self.out or sys.stdout
                if not _isatty(stream):
                    self._plain = True
                    return True
                from rich.console import Console

                console = self.console = Console(file=self.out)  # None: follows sys.stdout
            self._plain = not console.is_terminal or console.is_dumb_terminal
        return self._plain

    def _start(self) -> Live:
        if self._live is None:
            from rich.live import Live

            assert self.console is not None  # set by _is_plain, which said a terminal
            # Stray prints to stdout go above the table; stderr stays stderr.
            self._live = Live(
                console=self.console, auto_refresh=False, transient=False, redirect_stderr=False
            )
            self._live.start()
            atexit.register(self._live.stop)  # a phase that never ended gives the cursor back
        return self._live

    def _draw(self, trials: list[Trial]) -> None:
        self._start().update(self._table(trials), refresh=True)
        self.last_line = time.monotonic()

    def _table(self, trials: list[Trial]) -> Any:
        from rich.table import Table
        from rich.text import Text

        running = sum(t.status == Trial.RUNNING for t in trials)
        best = f", best so far {self.best:.4f}" if math.isfinite(self.best) else ""
        title = f"[{self.label}] done {self.finished}/{self.total}, running {running}{best}"
        table = Table(title=Text(title), title_justify="left", expand=False)
        for name in ("variant", "trial", "epoch", f"best {self.metric}", "state"):
            table.add_column(name, justify="right" if name in ("trial", "epoch") else "left")
        for row in sorted(self.rows.values(), key=lambda r: (r.group, r.number)):
            loss = f"{row.best:.4f}" if math.isfinite(row.best) else "-"
            cells = (
                row.variant,
                f"{row.number}/{self._of(row.group)}",
                f"{row.epochs}/{self.max_epochs}",
                loss,
                row.state,
            )
            table.add_row(*(Text(cell) for cell in cells))
        return table


def _isatty(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # no such method, or a closed stream
        return False


def _short(value: Any) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)


def _as_written(key: str) -> str:
    """A sampled key as a spec writes it: Tune names `TrialConfig`'s nested dimensions by path
    (`train/lr`, `model/cell_options/alpha`); the spec says `lr`, `cell_options.alpha`."""
    section, _, rest = key.partition("/")
    return rest.replace("/", ".") if section in ("model", "train") and rest else key
