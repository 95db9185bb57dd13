"""What goes wrong in a trial, said once: the divergence rule, an error in one line, the log.

A study goes on without a variant that cannot train (`search.LeftOut`). For that to be honest,
a diverged run must be told apart from a result, and a failed trial must say why in one line on
the terminal while its whole traceback goes where it can be read later: the trial's MLflow run
and the study's log file under `SEQLAB_HOME/logs`.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipelines.ops import settings
from seqmodels.tasks.metrics import metric_range

# How far above the task's baseline an error metric may end before the run counts as diverged.
DIVERGENCE_FACTOR = 1000.0
# The losses every search trial reports at each epoch (`trainable.REPORTED`).
LOSSES = ("train/loss", "val/loss")
# Metrics whose value `val/loss` is: a regression's loss is its MSE, a language model's its
# cross-entropy in nats. For these a search trial's `val/loss` is compared with the baseline.
LOSS_IS_METRIC = frozenset({"mse", "cross_entropy"})
ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
MAX_LINE = 300


@dataclass(frozen=True)
class Divergence:
    """The divergence rule of one study: a run diverged when what it reported last is
    non-finite, or, for an error metric, more than `DIVERGENCE_FACTOR` (1000) times the baseline.

    What a run reports last is, for a search trial, its final epoch (`train/loss`, `val/loss`,
    any `val/<metric>`); for a seeded repeat, its test metrics. The non-finite check applies to
    every task. The check against the baseline applies where the task's metric is minimised
    (MSE, cross-entropy, bits per character, PER...) and the baseline is positive, to the score
    in that metric's own units: `test/<metric>`, `val/<metric>`, or `val/loss` where it is the
    metric (`LOSS_IS_METRIC`).

    Why 1000 and not 10: a model that has not learnt yet is already far above some baselines.
    On the adding problem a network that outputs 0 scores MSE 1.17, 7x the baseline 0.167; on
    copy memory a uniform guess over 10 symbols costs 2.3 nats, 13x the baseline at T=100 and
    110x at T=1000. A run 1000x above the baseline has not learnt slowly, it has blown up (the
    adding problem at lr 1e6 without clipping: MSE 1.9e12), and a score from it says nothing
    about its variant, so it is left out of every decision.

    A frozen dataclass, not a closure: Tune pickles the callbacks that hold it.
    """

    metric: str
    baseline: float

    def __call__(self, result: Mapping[str, Any]) -> str | None:
        """Why the run that reported `result` last diverged, in one line; None if it did not."""
        where = (
            f" at epoch {result['training_iteration']}" if "training_iteration" in result else ""
        )
        keys = [*LOSSES, f"val/{self.metric}", f"test/{self.metric}"]
        for key in keys:
            value = _number(result.get(key))
            if value is not None and not math.isfinite(value):
                return f"{key} is {value}{where}"
        if metric_range(self.metric).maximised or not self.baseline > 0:
            return None
        scored = [f"test/{self.metric}", f"val/{self.metric}"]
        scored += ["val/loss"] if self.metric in LOSS_IS_METRIC else []
        limit = DIVERGENCE_FACTOR * self.baseline
        for key in scored:
            value = _number(result.get(key))
            if value is not None and value > limit:
                return (
                    f"{key} {value:.3g}{where} is over {DIVERGENCE_FACTOR:g}x "
                    f"the baseline {self.metric} {self.baseline:.4g}"
                )
        return None


def _number(value: Any) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def error_line(error: BaseException | str | None) -> str:
    """An error as one line: its type and message, without Ray's wrapping or colour codes.

    A trial's exception reaches the driver wrapped in Ray's RayTaskError, whose text is the
    worker's whole traceback; its `cause` is the exception the trial raised.
    """
    if error is None:
        return "unknown error"
    cause = getattr(error, "cause", None)
    if isinstance(cause, BaseException):
        error = cause
    if isinstance(error, BaseException):
        message = " ".join(ANSI.sub("", str(error)).split())
        line = f"{type(error).__name__}: {message}" if message else type(error).__name__
    else:  # the text of an error file: its last line is the exception's
        lines = [ln.strip() for ln in ANSI.sub("", error).splitlines() if ln.strip()]
        line = lines[-1] if lines else "unknown error"
    return line if len(line) <= MAX_LINE else line[: MAX_LINE - 3] + "..."


def trial_error(trial: Any) -> tuple[str, str]:
    """A failed Tune trial's error: (one line, the whole traceback without colour codes).

    Tune keeps both: the exception, pickled, and its text in the trial's error file.
    """
    text = ""
    path = getattr(trial, "error_file", None)
    if path and Path(path).is_file():
        text = ANSI.sub("", Path(path).read_text(errors="replace"))
    try:
        error = trial.get_pickled_error()
    except Exception:  # an error file that does not unpickle here: its text still says
        error = None
    return error_line(error if error is not None else text), text


def log_path(study: str) -> Path:
    """The study's log file: every run of the study appends to it."""
    return settings.seqlab_home() / "logs" / f"{study}.log"


class _TuneErrorsOff(logging.Filter):
    """Keeps Ray Tune's ERROR records (a failed trial's traceback) off the terminal."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.name.startswith("ray.tune") and record.levelno >= logging.ERROR)


class _Worth(logging.Filter):
    """What the log file keeps: Ray Tune's warnings and errors, and seqlab's own records."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.name.startswith("seqlab") or record.levelno >= logging.WARNING


@contextmanager
def _raylet_messages_to(logger: logging.Logger) -> Iterator[None]:
    """Sends the raylet's messages to the driver ("A worker died or was killed ...") to `logger`
    instead of stdout.

    Ray's driver prints them, colour codes included, from its `ray_listen_error_messages`
    thread, which every driver starts whatever `log_to_driver` says, through the module-level
    `ray._private.worker.print_to_stdstream`, looked up at each call: replacing that name is the
    only hook Ray leaves. Everything else it prints passes through unchanged. Where a Ray
    release drops the name, the messages reach the terminal as before.
    """
    import ray._private.worker as ray_worker

    printer = getattr(ray_worker, "print_to_stdstream", None)
    if printer is None:
        yield
        return

    def print_to_stdstream(data: dict[str, Any], ignore_prefix: bool) -> None:
        if data.get("pid") != "raylet":
            printer(data, ignore_prefix)
            return
        for line in data.get("lines", []):
            logger.warning("raylet: %s", " ".join(ANSI.sub("", str(line)).split()))

    ray_worker.print_to_stdstream = print_to_stdstream
    try:
        yield
    finally:
        ray_worker.print_to_stdstream = printer


@contextmanager
def study_log(study: str) -> Iterator[Path]:
    """While the study runs, Ray Tune's warnings and errors go to its log file, and its errors
    do not reach the terminal, where each failed trial gets one line (`progress.Progress`).

    Ray's driver logs a failed trial's whole traceback, colour codes included, through the
    `ray.tune` loggers, to the `ray` logger's stderr handler. A `seqlab`-logger record goes to
    the file too, and so do the raylet's messages, such as the one on a worker that died
    (`_raylet_messages_to`). Yields the file's path.
    """
    path = log_path(study)
    path.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.addFilter(_Worth())
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    quiet = _TuneErrorsOff()
    terminal = [
        h for h in logging.getLogger("ray").handlers if not isinstance(h, logging.FileHandler)
    ]
    loggers = [logging.getLogger("ray.tune"), logging.getLogger("seqlab")]
    for logger in loggers:
        logger.addHandler(handler)
    logging.getLogger("seqlab").setLevel(logging.INFO)
    for h in terminal:
        h.addFilter(quiet)
    try:
        with _raylet_messages_to(logging.getLogger("seqlab.raylet")):
            yield path
    finally:
        for h in terminal:
            h.removeFilter(quiet)
        for logger in loggers:
            logger.removeHandler(handler)
        handler.close()
