"""The study's Prefect flow: a spec's five phases, in order.

1. data: the task's dataset, prepared once into the store (`pipelines.data.prepare`);
2. search: each variant's nuisance space searched with an equal budget (`search`);
3. repeat: each variant's best configuration retrained under fresh seeds (`repeat`), as soon
   as that variant's search is over: phases 2 and 3 run in one Tuner (`trials`);
4. register: each variant's best trial tested and registered as its champion (`register`);
5. report: the comparison's statistics, from MLflow alone (`register.publish_report`).

A suite (`run_suite`) runs one such study per task, then its report across the tasks.

Import this module only after `settings.configure_environment()`: Prefect reads its settings
at import time.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from prefect import flow

from pipelines.data.prepare import study_dataset
from pipelines.spec import StudySpec, SuiteSpec
from pipelines.study import failures, parent, tuning
from pipelines.study.register import publish_report, publish_suite_report, register_champions
from pipelines.study.repeat import repeat_seeds
from pipelines.study.timings import PhaseSpan, Timings
from pipelines.study.trials import tune_trials

# `mlflow.pytorch` calls logging.basicConfig() on import. That root handler would print every
# Prefect record a second time, in the bare "INFO:prefect:..." format; Prefect has its own.
logging.getLogger().handlers.clear()


@dataclass
class StudyResult:
    """What `run_study` returns: where the runs are, the table, and where the time went."""

    study: str
    experiment_id: str
    parent_run_id: str
    table: str
    winner: str | None
    phases: dict[str, float]
    train_seconds: float
    spans: dict[str, PhaseSpan]  # the search's and the repeats', which overlap
    began_at: float  # time.time() when the flow body began: after Prefect's start-up
    left_out: dict[str, str] = field(default_factory=dict)  # variant -> why, in one line


@flow(name="run_study", log_prints=False)
def run_study(
    spec: StudySpec,
    source: str = "",
    resume_run_id: str | None = None,
    within: parent.Within | None = None,
) -> StudyResult:
    """Run a comparison study: prepare data, tune every variant, repeat the best under fresh
    seeds, test and register, report.

    With `resume_run_id` (an interrupted study's parent run) it continues that study: each
    phase's Tuner is restored from the state Tune saved, so no finished trial runs again and
    every trial keeps its MLflow run; champions already registered are not registered again.
    A variant that cannot train (every trial failed or diverged, or a repeat diverged) is left
    out: the others are repeated, registered and compared without it.

    `within`: the study is one task's of a suite (`run_suite`), its parent run the suite's child.
    """
    with Timings().measuring() as timings:
        draws = repeat_seeds(spec) if "data" in spec.repeats.vary else []
        dataset = study_dataset(spec.task, draws)
        with parent.study_run(spec, source, dataset, resume_run_id, within) as study:
            with failures.study_log(spec.name):  # the study's log file, up to its report
                with tuning.ray_session():
                    trained = tune_trials(spec, dataset, study.experiment_id, study.run_id)
                repeats = trained.repeats
                left_out = study.leave_out([*trained.left_out, *repeats.left_out])
                kept = [o for o in trained.outcomes if o.variant not in left_out]
                register_champions(spec.name, kept, dataset)
                built = publish_report(spec.name, study.run_id)
            train_seconds = sum(o.train_seconds for o in kept) + repeats.train_seconds
            study.log_timings(timings, train_seconds, trained.spans)
    return StudyResult(
        study=spec.name,
        experiment_id=study.experiment_id,
        parent_run_id=study.run_id,
        table=built.summary,
        winner=built.winner,
        phases=timings.phases,
        train_seconds=train_seconds,
        spans=trained.spans,
        began_at=timings.began_at,
        left_out=left_out,
    )


@dataclass
class SuiteResult:
    """What `run_suite` returns: the suite's parent run, each task's study, the verdict."""

    study: str
    experiment_id: str
    parent_run_id: str
    table: str
    winner: str | None
    tasks: dict[str, StudyResult | None]  # label -> its study (None: finished in an earlier run)
    left_out: dict[str, str] = field(default_factory=dict)  # "<label>: <variant>" -> why


@flow(name="run_suite", log_prints=False)
def run_suite(suite: SuiteSpec, source: str = "", resume_run_id: str | None = None) -> SuiteResult:
    """Study every variant on each of the suite's tasks, one task after another, each as a
    study of its own (`run_study`, a subflow) whose parent run is the suite's child; then the
    report across the tasks, on the suite's parent run.

    A task whose study fails (its data, say) does not stop the others: the report covers the
    tasks that finished and names the others, then the first failure is raised again (the
    suite's run ends FAILED). With `resume_run_id` (an interrupted or failed suite's parent
    run) the tasks whose study finished are not run again, and the others resume or start.
    """
    tasks: dict[str, StudyResult | None] = {}
    failed: dict[str, BaseException] = {}
    with parent.suite_run(suite, source, resume_run_id) as top:
        for number, (label, spec) in enumerate(suite.studies.items(), start=1):
            began = top.task_run(label)
            done = began is not None and began.info.status == "FINISHED"
            said = "finished in an earlier run" if done else f"study {spec.name}"
            print(f"suite {suite.name}: task {number}/{len(suite.studies)}, {label}: {said}")
            if done:
                tasks[label] = None
                continue
            resumed = began.info.run_id if began is not None else None
            try:
                tasks[label] = run_study(spec, source, resumed, top.within(label))
            except BaseException as err:  # one task that fails does not sink the others
                if tuning.interrupted(err):
                    raise
                failed[label] = err
                line = " ".join(str(err).split()) or type(err).__name__
                print(f"suite {suite.name}: task {label} failed: {line}")
        built = publish_suite_report(top.run_id)
        if failed:  # the suite's run ends FAILED; `seqlab resume` runs the failed tasks again
            label, err = next(iter(failed.items()))
            err.suite_task = label  # type: ignore[attr-defined]  (which task, for the CLI)
            raise err
    left_out = {
        f"{label}: {variant}": why
        for label, result in tasks.items()
        if result is not None
        for variant, why in result.left_out.items()
    }
    return SuiteResult(
        study=suite.name,
        experiment_id=top.experiment_id,
        parent_run_id=top.run_id,
        table=built.summary,
        winner=built.winner,
        tasks=tasks,
        left_out=left_out,
    )
