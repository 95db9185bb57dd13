"""A variant that cannot train: the divergence rule, the report without it, the study going on.

The fast tests build reports from fabricated MLflow records. The slow ones run real trials:
Ray Tune over a trainable that raises, NaNs and blows up, in this process; and `seqlab run` on a
study with a variant at lr 1e6 without clipping, which diverges.
"""

from __future__ import annotations

import math
import os
import re
import sys
import warnings
from pathlib import Path
from typing import Any

import pytest
import yaml
from mlflow.tracking import MlflowClient

from pipelines import report
from pipelines.report import RunRecord, StudyRecord
from pipelines.study.failures import DIVERGENCE_FACTOR, Divergence, error_line
from tests.conftest import embedded_env, seqlab

ADDING = Divergence("mse", 1 / 6)


@pytest.mark.parametrize(
    "result,why",
    [
        ({"train/loss": 0.2, "val/loss": 0.15, "training_iteration": 3}, None),
        # an untrained network (outputs 0: MSE 1.17) has learnt nothing yet, not diverged
        ({"train/loss": 1.3, "val/loss": 1.17}, None),
        ({"train/loss": math.nan, "val/loss": 0.15, "training_iteration": 2}, "train/loss is nan"),
        ({"val/loss": math.inf}, "val/loss is inf"),
        ({"val/loss": 1.9e12, "training_iteration": 2}, "val/loss 1.9e+12 at epoch 2 is over"),
        ({"test/mse": 2e3, "test/mae": 40.0}, "test/mse 2e+03 is over 1000x the baseline"),
        ({"test/mse": math.nan}, "test/mse is nan"),
    ],
)
def test_a_run_diverged_when_its_end_is_non_finite_or_far_above_the_baseline(
    result: dict[str, float], why: str | None
) -> None:
    said = ADDING(result)
    assert (said is None) if why is None else (said is not None and said.startswith(why))


def test_a_maximised_metric_has_no_upper_bound_and_val_loss_counts_where_it_is_the_metric() -> None:
    accuracy = Divergence("accuracy", 0.1)
    assert accuracy({"val/loss": 1e9, "test/accuracy": 0.5}) is None
    assert accuracy({"test/accuracy": math.nan}) == "test/accuracy is nan"
    # a language model's val/loss is its cross-entropy; bits per character are not val/loss
    high = DIVERGENCE_FACTOR * 2.0 + 1
    assert Divergence("cross_entropy", 0.02)({"val/loss": high}) is not None
    assert Divergence("bits_per_char", 2.0)({"val/loss": high}) is None
    assert Divergence("bits_per_char", 2.0)({"val/bits_per_char": high}) is not None


def test_an_error_is_one_line_without_colour_codes() -> None:
    assert error_line(ValueError("boom\n  at step 3")) == "ValueError: boom at step 3"
    text = (
        "Failure # 1\nTraceback (most recent call last):\n  \x1b[36mray::x\x1b[39m\nKeyError: 'a'\n"
    )
    assert error_line(text) == "KeyError: 'a'"


def _run(run_id: str, variant: str, kind: str, status: str = "FINISHED", **extra: Any) -> RunRecord:
    return RunRecord(
        run_id=run_id,
        variant=variant,
        kind=kind,
        seed=int(extra.pop("seed", 0)),
        status=status,
        start_time=0,
        params={"lr": "0.01"},
        metrics=extra.pop("metrics", {}),
        history=extra.pop("history", {"val/loss": [0.5, 0.2]}),
        tags=extra.pop("tags", {}),
    )


def _record(runs: list[RunRecord], variants: list[str], left_out: dict[str, str]) -> StudyRecord:
    spec = {
        "name": "study",
        "description": "",
        "variants": {v: {} for v in variants},
        "search": {
            "space": {"lr": {}},
            "trials_per_variant": 2,
            "algorithm": "random",
            "scheduler": {"name": "fifo"},
        },
        "fixed": {"max_epochs": 2},
        "seeds": 3,
    }
    tags = {"dataset.metric": "mse", "dataset.baseline": str(1 / 6)}
    tags |= {f"left_out.{v}": why for v, why in left_out.items()}
    return StudyRecord("study", "parent", tags, spec, runs)


def _repeats(variant: str, scores: list[float]) -> list[RunRecord]:
    return [
        _run(f"{variant}-r{i}", variant, "repeat", seed=i + 1, metrics={"test/mse": s})
        for i, s in enumerate(scores)
    ]


def test_the_report_decides_without_a_failed_and_a_diverged_variant_and_names_them() -> None:
    boom = "every trial failed: ValueError: boom"
    wild = "1 of 3 seeded repeats diverged: test/mse 1.9e+12 is over 1000x the baseline mse 0.1667"
    error = {"error": "ValueError: boom"}
    runs = [
        _run("lstm-t", "lstm", "trial"),
        _run("gru-t", "gru", "trial"),
        _run("wild-t", "wild", "trial"),
        *_repeats("lstm", [0.010, 0.011, 0.012, 0.013]),  # 4 seeds: a rank test can decide
        *_repeats("gru", [0.050, 0.051, 0.052, 0.053]),
        # with its diverged repeat, wild would make the verdict "no significant difference"
        *_repeats("wild", [0.001, 0.001]),
        _run(
            "wild-r2",
            "wild",
            "repeat",
            "FAILED",
            metrics={"test/mse": 1.9e12},
            tags={"diverged": "x"},
        ),
        _run("boom-t0", "boom", "trial", "FAILED", history={}, tags=error),
        _run("boom-t1", "boom", "trial", "FAILED", history={}, tags=error),
    ]
    built = report.build(
        _record(runs, ["lstm", "gru", "wild", "boom"], {"wild": wild, "boom": boom})
    )
    assert built.winner == "lstm"
    assert "Left out of the comparison: wild, boom" in built.summary
    table = built.summary.split("## Left out")[0]
    assert "| lstm |" in table and "| gru |" in table
    assert "wild |" not in table and "boom |" not in table
    left = built.markdown.split("## Left out of the comparison")[1]
    assert f"- **boom**: {boom}" in left and f"- **wild**: {wild}" in left
    assert "trial run `boom-t0` FAILED: ValueError: boom" in left
    assert "trial run `boom-t1` FAILED: ValueError: boom" in left
    assert "repeat run `wild-r2` FAILED, diverged: x" in left
    assert "## Left out of the comparison" in built.summary  # on the terminal too


def test_a_study_whose_every_variant_failed_still_reports() -> None:
    boom = "every trial failed: RuntimeError: out of memory"
    runs = [
        _run(f"{v}-t", v, "trial", "FAILED", history={}, tags={"error": "RuntimeError: x"})
        for v in ("rnn", "lstm")
    ]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no plotting warning reaches the terminal either
        built = report.build(_record(runs, ["rnn", "lstm"], {"rnn": boom, "lstm": boom}))
    assert built.winner is None
    assert built.summary.startswith("## study: **No result:** every variant failed or diverged")
    assert "- **rnn**: every trial failed" in built.markdown
    assert "| rnn | 1 | 0 | 1 | 0 | 0 |" in built.markdown  # the budget table: 1 failed


# ---- real trials -------------------------------------------------------------------------


ENDS = ("well", "raise", "nan", "huge")  # how a fake trial ends, told by its lr: 1, 2, 3 or 4


def _end(lr: Any) -> str:
    return ENDS[int(float(lr)) - 1]


def bad_trainable(config: dict[str, Any]) -> None:
    """One epoch of a fake trial whose config says how it ends: well, raising, NaN, blown up."""
    import tempfile

    from ray import tune

    end = _end(config["train"]["lr"])
    if end == "raise":
        raise ValueError("boom\nat step 3")
    loss = {"well": 0.1, "nan": math.nan, "huge": 1.9e12}[end]
    with tempfile.TemporaryDirectory() as directory:
        Path(directory, "checkpoint").write_text("weights")
        checkpoint = tune.Checkpoint.from_directory(directory)
        tune.report({"train/loss": loss, "val/loss": loss}, checkpoint=checkpoint)


@pytest.fixture(scope="module")
def study(tmp_path_factory: pytest.TempPathFactory):
    """pipelines.study.flows with a private SEQLAB_HOME, read by Prefect at import."""
    os.environ["SEQLAB_HOME"] = str(tmp_path_factory.mktemp("failures") / "home")
    for var in ("MLFLOW_TRACKING_URI", "RAY_ADDRESS", "PREFECT_API_URL"):
        os.environ.pop(var, None)
    from pipelines.ops import settings

    settings.configure_environment()
    import pipelines.study.flows  # noqa: F401  (the flow and every phase)
    from pipelines import study

    return study


@pytest.mark.slow
def test_tune_results_of_trials_that_raise_nan_and_blow_up(study, capfd) -> None:
    """The flow's helpers on a real Tuner's results, with the study's callbacks and log."""
    import ray.cloudpickle
    from ray import tune

    from pipelines import tracking
    from pipelines.spec import parse_spec
    from pipelines.study import failures
    from pipelines.study.progress import Progress
    from pipelines.tracking import trial_runs

    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])  # workers lack `tests`
    spec = parse_spec(
        {
            "name": "failing",
            "task": {"name": "adding"},
            "variants": {"a": {"cell": "tanh"}, "b": {"cell": "lstm"}},
            "fixed": {"max_epochs": 1},
        }
    )
    client = tracking.client()
    experiment = tracking.ensure_experiment(client, spec.name)
    parent = client.create_run(experiment, tags={"kind": "study"}).info.run_id
    diverged = Divergence("mse", 1 / 6)
    runs = trial_runs.TrialRuns(client, experiment, parent, "trial", diverged)
    run_config = study.tuning.run_config(
        "failing",
        [runs, Progress("a", len(ENDS), "val/loss", 1)],
        checkpoint_config=tune.CheckpointConfig(
            num_to_keep=1, checkpoint_score_attribute="val/loss"
        ),
    )
    space = spec.trial("a").nested()
    space["train"]["lr"] = tune.grid_search([1.0 + i for i in range(len(ENDS))])
    with failures.study_log(spec.name) as log, study.tuning.ray_session():
        tuner = tune.Tuner(
            bad_trainable,
            param_space=space,
            tune_config=tune.TuneConfig(trial_dirname_creator=study.tuning.trial_dirname),
            run_config=run_config,
        )
        results = study.tuning.fit(tuner, parent)
    out = capfd.readouterr()
    terminal = out.out + out.err
    by_end = {_end(r.config["train"]["lr"]): r for r in results}

    # what the terminal shows: one line for the failed trial, no traceback, no colours
    failed = [line for line in terminal.splitlines() if "FAILED" in line]
    assert len(failed) == 1, terminal
    assert re.fullmatch(r"\[a\] trial [1-4]/4 FAILED: ValueError: boom at step 3", failed[0])
    assert "Traceback" not in terminal and "\x1b[" not in terminal and "ERROR" not in terminal
    logged = log.read_text()
    assert "Traceback" in logged and "ValueError: boom" in logged

    # MLflow: the raising trial's run has its error, the diverged ones say why
    status = {
        _end(r.data.params["lr"]): r for r in tracking.child_runs(client, parent, "trial", "a")
    }
    assert status["well"].info.status == "FINISHED" and "diverged" not in status["well"].data.tags
    assert status["raise"].info.status == "FAILED"
    assert status["raise"].data.tags["error"] == "ValueError: boom at step 3"
    error = Path(client.download_artifacts(status["raise"].info.run_id, "error.txt")).read_text()
    assert "in bad_trainable" in error and "\x1b[" not in error  # its frames, no colours
    assert status["nan"].info.status == "FAILED"
    assert status["nan"].data.tags["diverged"] == "train/loss is nan at epoch 1"
    assert status["huge"].data.tags["diverged"].startswith("val/loss 1.9e+12 at epoch 1 is over")

    # the variant's best trial: the one that trained, though NaN and 1.9e12 came too
    outcome = study.search.variant_outcome(spec, "a", results, parent, diverged)
    assert isinstance(outcome, study.search.VariantOutcome)
    assert _end(outcome.trial.train.lr) == "well" and outcome.best_val == pytest.approx(0.1)
    assert outcome.failed == 1 and outcome.run_id == status["well"].info.run_id
    # no trial that can be used: left out, with the error or the divergence in one line
    only = study.search.variant_outcome(spec, "a", [by_end["raise"]], parent, diverged)
    assert only == study.search.LeftOut("a", "every trial failed: ValueError: boom at step 3")
    gone = study.search.variant_outcome(
        spec, "a", [by_end["nan"], by_end["huge"]], parent, diverged
    )
    assert gone == study.search.LeftOut("a", "every trial diverged: train/loss is nan at epoch 1")
    mixed = study.search.variant_outcome(
        spec, "a", [by_end["raise"], by_end["nan"]], parent, diverged
    )
    assert isinstance(mixed, study.search.LeftOut) and "1 of 2 trials failed" in mixed.reason

    # the same results as seeded repeats: a diverged one leaves its variant out
    repeats = [by_end[end] for end in ("well", "huge", "raise", "nan")]
    left = study.repeat.repeats_left_out(["a"], repeats, diverged)
    why = "2 of 4 seeded repeats diverged: val/loss 1.9e+12 at epoch 1 is over 1000x"
    assert len(left) == 1 and left[0].variant == "a" and left[0].reason.startswith(why)
    failing = study.repeat.repeats_left_out(["a", "b"], [by_end["raise"]], diverged)
    assert failing == [
        study.search.LeftOut("a", "every seeded repeat failed: ValueError: boom at step 3")
    ]
    assert study.repeat.repeats_left_out(["a"], [by_end["well"], by_end["raise"]], diverged) == []


DIVERGING = {
    "name": "diverging",
    "description": "An LSTM beside a tanh RNN at lr 1e6 without clipping, which diverges.",
    "task": {
        "name": "adding",
        "options": {"length": 10, "n_train": 128, "n_val": 32, "n_test": 32},
    },
    "variants": {
        "lstm": {"cell": "lstm", "hidden_size": 8},
        "wild": {"cell": "tanh", "hidden_size": 8},
    },
    "search": {
        "per_variant": {"lstm": {"lr": {"choice": [0.01]}}, "wild": {"lr": {"choice": [1e6]}}},
        "trials_per_variant": 1,
    },
    "fixed": {"batch_size": 64, "max_epochs": 1, "grad_clip": None},
    "seeds": 1,
    "resources": {"cpu": 1, "gpu": 0},
}


@pytest.mark.slow
def test_a_diverged_variant_is_left_out_and_the_study_ends_with_exit_1(tmp_path: Path) -> None:
    home = tmp_path / "home"
    path = tmp_path / "diverging.yaml"
    path.write_text(yaml.safe_dump(DIVERGING))
    done = seqlab("run", str(path), env=embedded_env(home), timeout=400)
    terminal = done.stdout + done.stderr
    assert done.returncode == 1, terminal[-3000:]
    assert "Traceback" not in terminal and "\x1b[" not in terminal
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith(
        "seqlab: study 'diverging': 1 of 2 variants left out of the comparison: "
        "wild (every trial diverged); the report says why"
    ), done.stderr
    assert "No winner declared: only lstm is left to compare." in done.stdout
    assert "- **wild**: every trial diverged: val/loss" in done.stdout

    client = MlflowClient(tracking_uri=f"sqlite:///{home / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("diverging")
    runs = client.search_runs([experiment.experiment_id], max_results=100)
    (parent,) = [r for r in runs if r.data.tags.get("kind") == "study"]
    assert parent.info.status == "FINISHED"
    assert parent.data.tags["left_out.wild"].startswith("every trial diverged: val/loss")
    (wild,) = [r for r in runs if r.data.tags.get("variant") == "wild"]  # no repeat of it
    assert (
        wild.info.status == "FAILED" and "is over 1000x the baseline" in wild.data.tags["diverged"]
    )
    repeats = [r for r in runs if r.data.tags.get("kind") == "repeat"]
    assert [r.data.tags["variant"] for r in repeats] == ["lstm"]
    assert client.get_model_version_by_alias("diverging-lstm", "champion")
    assert not client.search_registered_models("name = 'diverging-wild'")
    text = Path(client.download_artifacts(parent.info.run_id, "report.md")).read_text()
    assert f"trial run `{wild.info.run_id}` FAILED, diverged: val/loss" in text
