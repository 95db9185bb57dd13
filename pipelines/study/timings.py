"""Where a study's wall-clock time goes, phase by phase: for the summary the CLI prints, the
parent run's `timing/<phase>_s` metrics, and the benchmarks.

A study measures its phases by entering `Timings.measuring()`; the phases time themselves
(`timed`, `phase`), so the flow's body says what it does, not how long each part took.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, ParamSpec, TypeVar

if TYPE_CHECKING:
    from mlflow.entities import Run
    from ray import tune

P = ParamSpec("P")
R = TypeVar("R")


@dataclass
class Timings:
    """Seconds of wall-clock time by phase, and when the study's body began (`time.time()`)."""

    phases: dict[str, float] = field(default_factory=dict)
    began_at: float = field(default_factory=time.time)

    @contextmanager
    def measuring(self) -> Iterator[Timings]:
        """While inside, every `phase` and `timed` call adds its seconds here."""
        token = _MEASURING.set(self)
        try:
            yield self
        finally:
            _MEASURING.reset(token)


_MEASURING: ContextVar[Timings | None] = ContextVar("seqlab_timings", default=None)


@contextmanager
def phase(name: str) -> Iterator[None]:
    """Add the seconds spent inside to phase `name` of the study being measured, if any; a
    phase entered twice (`trials`, once per variant) adds up."""
    timings, start = _MEASURING.get(), time.perf_counter()
    try:
        yield
    finally:
        if timings is not None:
            timings.phases[name] = timings.phases.get(name, 0.0) + time.perf_counter() - start


def timed(name: str) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Decorate a phase: each call to it counts towards phase `name` (`phase`)."""

    def decorate(function: Callable[P, R]) -> Callable[P, R]:
        @functools.wraps(function)
        def timed_call(*args: P.args, **kwargs: P.kwargs) -> R:
            with phase(name):
                return function(*args, **kwargs)

        return timed_call

    return decorate


@dataclass(frozen=True)
class PhaseSpan:
    """One phase of a study's trials, which overlap other phases' in the study's one Tuner: its
    wall-clock span, from its first trial's start to its last trial's end, and its work, the
    seconds its trials trained, summed (larger than the span when trials run side by side)."""

    span_s: float
    work_s: float

    @classmethod
    def of(cls, runs: list[Run], results: list[tune.Result]) -> PhaseSpan:
        """From the phase's MLflow runs (their start and end times, in ms; a resumed study's
        span includes the time it was stopped) and its trials' Tune results."""
        ended = [r.info.end_time for r in runs if r.info.end_time]
        span = (max(ended) - min(r.info.start_time for r in runs)) / 1000 if ended else 0.0
        work = sum(float(r.metrics.get("time_total_s", 0.0)) for r in results if r.metrics)
        return cls(span_s=span, work_s=work)
