"""The live progress lines, driven through Tune's callback hooks with real `Trial` objects."""

from __future__ import annotations

import io
import pickle

from ray.tune.experiment import Trial

from pipelines.study.failures import Divergence
from pipelines.study.progress import Progress

MAX_EPOCHS = 12


def _trial(trial_id: str) -> Trial:
    trial = Trial("train", trial_id=trial_id, evaluated_params={"lr": 0.01}, stub=True)
    trial.set_status(Trial.RUNNING)
    return trial


def _report(progress: Progress, trials: list[Trial], trial: Trial, result: dict) -> None:
    """What Tune does with a result: the trial keeps it, then the callbacks see it."""
    trial.update_last_result(dict(result))
    progress.on_trial_result(0, trials, trial, trial.last_result)


def _complete(progress: Progress, trials: list[Trial], trial: Trial) -> None:
    trial.set_status(Trial.TERMINATED)
    progress.on_trial_complete(0, trials, trial)


def test_a_started_trial_names_what_it_drew_as_the_spec_writes_it() -> None:
    """Tune names the nested `TrialConfig`'s dimensions by path; the line uses the spec's keys."""
    out = io.StringIO()
    progress = Progress("leaky", 1, "val/loss", MAX_EPOCHS, out=out, every_s=0.0)
    drawn = {"train/lr": 0.01, "model/cell_options/alpha": 0.5, "seed": 3}
    trial = Trial("train", trial_id="d", evaluated_params=drawn, stub=True)
    progress.on_trial_start(0, [trial], trial)
    assert out.getvalue().strip() == (
        "[leaky] trial 1/1 started  cell_options.alpha=0.5, lr=0.01, seed=3"
    )


def test_a_repeat_counts_its_epochs_and_shows_its_test_report() -> None:
    out = io.StringIO()
    progress = Progress(
        "repeats", 2, "val/loss", MAX_EPOCHS, out=out, every_s=0.0, test_metric="test/mse"
    )
    trial, other = _trial("a"), _trial("b")
    trials = [trial, other]
    progress.on_trial_start(0, trials, trial)
    for epoch in range(1, MAX_EPOCHS + 1):
        _report(progress, trials, trial, {"training_iteration": epoch, "val/loss": 1.0 / epoch})
    # The repeat's last report: its test metrics, which Tune counts as iteration 13.
    _report(progress, trials, trial, {"training_iteration": MAX_EPOCHS + 1, "test/mse": 0.0123})
    _complete(progress, trials, trial)
    lines = out.getvalue().splitlines()
    assert f"trial 1 at epoch {MAX_EPOCHS}/{MAX_EPOCHS}," in lines[-3]
    assert "trial 1 tested," in lines[-2]
    assert not any(f"/{MAX_EPOCHS + 1}" in line or "epoch 13" in line for line in lines)
    assert lines[-1].startswith(
        "[repeats] trial 1/2 finished: best val/loss 0.0833, test/mse 0.0123"
    )
    assert "done 1/2, running 1" in lines[-1]


def test_a_search_trial_stopped_early_says_at_which_epoch() -> None:
    out = io.StringIO()
    progress = Progress("lstm", 3, "val/loss", MAX_EPOCHS, out=out, every_s=0.0)
    trial = _trial("c")
    progress.on_trial_start(0, [trial], trial)
    for epoch in range(1, 5):
        _report(progress, [trial], trial, {"training_iteration": epoch, "val/loss": 0.5})
    _complete(progress, [trial], trial)
    lines = out.getvalue().splitlines()
    assert lines[0] == "[lstm] trial 1/3 started  lr=0.01"
    assert "trial 1 at epoch 4/12, best so far 0.5000" in lines[-2]
    assert lines[-1].startswith("[lstm] trial 1/3 stopped early at epoch 4: best val/loss 0.5000 |")


def test_a_diverged_trial_says_so_and_why() -> None:
    """A trial that ends with a NaN loss, or far above the baseline, is not 'finished: best'."""
    out = io.StringIO()
    rule = Divergence("mse", 0.167)
    progress = Progress("wild", 2, "val/loss", 3, out=out, every_s=1e9, diverged=rule)
    blown, fine = _trial("d"), _trial("e")
    for trial, losses in ((blown, [0.5, 3e4, 1.9e12]), (fine, [0.5, 0.3, 0.2])):
        progress.on_trial_start(0, [blown, fine], trial)
        for epoch, loss in enumerate(losses, 1):
            result = {"training_iteration": epoch, "val/loss": loss, "train/loss": loss}
            _report(progress, [blown, fine], trial, result)
        _complete(progress, [blown, fine], trial)
    lines = out.getvalue().splitlines()
    assert "trial 1/2 finished: DIVERGED: val/loss 1.9e+12 at epoch 3 is over 1000x" in lines[1]
    assert "trial 2/2 finished: best val/loss 0.2000" in lines[-1]


def test_in_a_terminal_the_phase_is_a_live_table_of_its_trials() -> None:
    """Each trial's row says its state; a failed trial's line is printed once, above the table,
    and nothing is printed as plain lines."""
    from rich.console import Console

    screen = io.StringIO()
    plain = io.StringIO()
    progress = Progress("gru", 3, "val/loss", 4, out=plain, every_s=0.0)
    progress.console = Console(file=screen, force_terminal=True, color_system=None, width=160)
    done, early, failed = _trial("f"), _trial("g"), _trial("h")
    trials = [done, early, failed]
    for trial in trials:
        progress.on_trial_start(0, trials, trial)
    saved = pickle.loads(pickle.dumps(progress))  # as Tune saves its callbacks, mid-phase
    assert [r.state for r in saved.rows.values()] == ["running"] * 3 and saved.console is None
    for epoch in range(1, 5):
        _report(progress, trials, done, {"training_iteration": epoch, "val/loss": 1.0 / epoch})
    _report(progress, trials, early, {"training_iteration": 1, "val/loss": 0.75})
    _complete(progress, trials, done)
    _complete(progress, trials, early)
    failed.set_status(Trial.ERROR)
    progress.on_trial_error(0, trials, failed)
    progress.on_experiment_end(trials)
    # The last frame drawn: what stays on screen once the phase has ended.
    title, *table = screen.getvalue().rsplit("[gru] done", 1)[1].splitlines()
    assert title.startswith(" 3/3, running 0, best so far 0.2500")
    cells = [[cell.strip() for cell in line.split("│")[1:-1]] for line in table]
    rows = {row[1]: row for row in cells if row[:1] == ["gru"]}  # variant, trial, epoch, ...
    assert rows["1/3"] == ["gru", "1/3", "4/4", "0.2500", "finished: best val/loss 0.2500"]
    assert rows["2/3"][2:] == ["1/4", "0.7500", "stopped early at epoch 1: best val/loss 0.7500"]
    assert rows["3/3"][2:] == ["0/4", "-", "FAILED"]
    failures = [line for line in screen.getvalue().splitlines() if "FAILED:" in line]
    assert len(failures) == 1 and "[gru] trial 3/3 FAILED: " in failures[0]
    assert plain.getvalue() == ""  # no line printed as well
