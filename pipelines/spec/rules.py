"""The rules that tie a spec's sections to each other and to its task: what a variant may be on
a task, and where the training switches (truncated BPTT, the information-flow regularizer) fit.

Every fact about an architecture comes from its declaration in `seqmodels.config` (`WIRINGS`);
every fact about a task from its class (`Task.family`, `per_step`, `token_inputs`,
`next_input`). Each rule raises ConfigError naming the field, with the valid choices.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, Protocol

from seqmodels.config import (
    INFO_FLOW_ARCHITECTURES,
    INFO_FLOW_FIXED_CELLS,
    PER_STEP_ARCHITECTURES,
    SEQ2SEQ_ARCHITECTURES,
    TBPTT_ARCHITECTURES,
    TBPTT_FAMILIES,
    WIRINGS,
    ModelConfig,
)
from seqmodels.errors import ConfigError
from seqmodels.tasks import TASKS, Task


class Dimension(Protocol):
    """One searched dimension, as the spec's `Distribution` is: its kind and its values (a
    choice's list, or a range's ends)."""

    @property
    def kind(self) -> str: ...

    @property
    def args(self) -> Any: ...


# What a study turns on or off for all its trials; never searched.
SWITCHES = frozenset({"diagnostics", "deterministic"})


def check_option_values(variant: ModelConfig, section: str, option: str, dist: Dimension) -> None:
    """Every value `dist` can draw must be a valid `option` of the variant's cell or architecture.

    Raises ConfigError naming the key; the variant itself must leave the option to the search.
    """
    key = f"{section}.{option}"
    given = getattr(variant, section)
    if option in given:
        raise ConfigError(key, f"set to {given[option]!r} by the variant; fix it or search it")
    ends = dist.args if dist.kind == "choice" else list(dist.args)
    for value in ends:
        try:
            ModelConfig(**{**dataclasses.asdict(variant), section: {**given, option: value}})
        except ConfigError as err:
            raise ConfigError(key, f"{value!r}: {err}") from None


def check_training_switches(
    task_name: str,
    variants: Mapping[str, ModelConfig],
    space: Mapping[str, Dimension],
    per_variant: Mapping[str, Mapping[str, Dimension]],
    fixed: Mapping[str, Any],
) -> None:
    """Reject `tbptt`, `info_flow` and the other switches where the study cannot honour them.

    Whether fixed or searched (for every variant, or for one in `per_variant`), every value a
    trial of a variant may get is checked against that variant and the task's family. Raises
    ConfigError naming `fixed.<key>`, `search.space.<key>` or `search.per_variant.<v>.<key>`;
    first, on a task with a target at every step, `variants.<v>.architecture` (or
    `.arch_options.output`) for a variant without an output at every step.
    """
    task = TASKS.get(task_name)
    family = task.family
    for name, variant in variants.items():
        _check_reads_the_task(name, variant, task)
        if task.per_step:
            _check_emits_per_step(name, variant, task.name)
        searched = {key: (f"search.space.{key}", d) for key, d in space.items()}
        own = per_variant.get(name, {})
        searched |= {key: (f"search.per_variant.{name}.{key}", d) for key, d in own.items()}
        switches = sorted(SWITCHES & searched.keys())
        if switches:
            field = searched[switches[0]][0]
            raise ConfigError(field, "a switch, not a hyperparameter: set it in fixed")
        values = {key: [fixed[key]] for key in ("tbptt", "info_flow")}
        fields = {key: f"fixed.{key}" for key in values}
        for key in ("tbptt", "info_flow", "grad_clip_algorithm"):
            if key in searched:
                fields[key], dist = searched[key]
                values[key] = _searched_values(key, dist, fields[key])
        if any(v is not None for v in values["tbptt"]):
            _check_tbptt(name, variant, task_name, family, fields["tbptt"])
        if any(v != 0 for v in values["info_flow"]):
            _check_info_flow(name, variant, fields["info_flow"])
        # after the switches: their messages say more than the architecture's would
        if not task.per_step and family in ONE_TARGET_FAMILIES:
            _check_emits_one_output(name, variant, task.name)


def _searched_values(key: str, dist: Dimension, field: str) -> list[Any]:
    """The values (or the ends of the range) a search may draw for `key`, checked for type."""
    if key == "grad_clip_algorithm":
        if dist.kind != "choice" or not set(dist.args) <= {"norm", "value"}:
            raise ConfigError(field, "search it with choice among: norm, value")
        return list(dist.args)
    if key == "tbptt":
        if dist.kind not in ("randint", "choice"):
            raise ConfigError(field, "a number of steps: search it with randint or choice")
        values = list(dist.args)
        for value in values:
            if value is not None and (type(value) is not int or value < 1):
                raise ConfigError(field, f"{value!r}: give an integer >= 1, or null (full BPTT)")
        return values
    values = list(dist.args)  # info_flow: a weight >= 0
    for value in values:
        if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
            raise ConfigError(field, f"{value!r}: give a weight >= 0")
    return values


def _check_reads_the_task(name: str, variant: ModelConfig, task: type[Task]) -> None:
    """The architecture fits what the task's data is: a decoder for a seq2seq task and only
    there, no reading ahead where the target is the next input, an embedding only of token
    ids, and output-to-hidden feedback only of real values."""
    where = f"variants.{name}"
    decodes = variant.wiring.decodes
    if task.family == "seq2seq" and not decodes:
        raise ConfigError(
            f"{where}.architecture",
            f"task {task.name!r} maps a sequence to a target sequence of its own length; "
            f"choose from: {', '.join(SEQ2SEQ_ARCHITECTURES)}",
        )
    if task.family != "seq2seq" and decodes and not task.per_step:  # per step: said below
        others = [a for a in WIRINGS if a not in SEQ2SEQ_ARCHITECTURES]
        raise ConfigError(
            f"{where}.architecture",
            f"{variant.architecture!r} decodes a target sequence, and task {task.name!r} "
            f"({task.family}) has none; choose from: {', '.join(others)}",
        )
    if task.next_input and variant.reads_ahead:
        field = "bidirectional" if variant.bidirectional else "architecture"
        raise ConfigError(
            f"{where}.{field}",
            f"task {task.name!r} predicts the next input, and a network that reads ahead of "
            f"step t sees its target there; use recurrent or deep, one direction",
        )
    if task.token_inputs or decodes:
        if task.token_inputs and not variant.wiring.tokens:
            raise ConfigError(
                f"{where}.architecture",
                f"'output_recurrent' feeds its real-valued output o(t-1) back in, and task "
                f"{task.name!r} predicts token ids; use recurrent (pattern 1)",
            )
        return
    if getattr(variant.arch(), "embedding_size", 0):
        raise ConfigError(
            f"{where}.arch_options.embedding_size",
            f"task {task.name!r} reads float features, not token ids: leave it 0",
        )


def fitting_architectures(task: type[Task]) -> list[str]:
    """The architectures a variant on `task` may name, by the same checks a spec gets (`deep`
    where one of its `output`s fits); what `seqlab tasks` lists."""
    fits = []
    for architecture, wiring in WIRINGS.items():
        cell = wiring.cells[0] if wiring.cells else "tanh"
        outputs = ("every_step", "final") if architecture == "deep" else (None,)
        for output in outputs:
            options = {"output": output} if output else {}
            variant = ModelConfig(architecture=architecture, cell=cell, arch_options=options)
            try:
                _check_reads_the_task("v", variant, task)
                if task.per_step:
                    _check_emits_per_step("v", variant, task.name)
                elif task.family in ONE_TARGET_FAMILIES:
                    _check_emits_one_output("v", variant, task.name)
            except ConfigError:
                continue
            fits.append(architecture)
            break
    return fits


def _check_emits_per_step(name: str, variant: ModelConfig, task: str) -> None:
    """A task with a target at every step needs a variant with an output at every step."""
    if variant.wiring.per_step is False:
        raise ConfigError(
            f"variants.{name}.architecture",
            f"{variant.architecture!r} has no output at every step, and task {task!r} has a "
            f"target at every step; choose from: {', '.join(PER_STEP_ARCHITECTURES)}",
        )
    if not variant.per_step:  # its options say, and say one output per sequence
        raise ConfigError(
            f"variants.{name}.arch_options.output",
            f"'final' emits one output per sequence, and task {task!r} has a target at every "
            "step; use every_step",
        )


# Families whose tasks, unless `per_step`, have one target per sequence.
ONE_TARGET_FAMILIES = ("regression", "classification")


def _check_emits_one_output(name: str, variant: ModelConfig, task: str) -> None:
    """A task with one target per sequence needs a variant with one output per sequence."""
    per_step = variant.per_step
    if variant.wiring.per_step is None:  # its options say
        if per_step:
            raise ConfigError(
                f"variants.{name}.arch_options.output",
                f"'every_step' emits an output at every step, and task {task!r} has one target "
                "per sequence; use final",
            )
    if per_step:
        raise ConfigError(
            f"variants.{name}.architecture",
            f"{variant.architecture!r} emits an output at every step, and task {task!r} has one "
            "target per sequence; choose seq2one, recursive, or deep with arch_options.output: "
            "final (bidirectional: true makes a seq2one read both ways)",
        )


def _check_tbptt(name: str, variant: ModelConfig, task: str, family: str, field: str) -> None:
    """Truncated BPTT needs a target at every step and the per-step `recurrent` architecture."""
    if family not in TBPTT_FAMILIES:
        raise ConfigError(
            field,
            f"task {task!r} ({family}) has no target at every step to truncate; "
            f"truncated BPTT fits the families: {', '.join(TBPTT_FAMILIES)}",
        )
    if not variant.wiring.tbptt:
        raise ConfigError(
            field,
            f"variant {name!r} is {variant.architecture!r}; truncated BPTT carries the state "
            f"of the per-step architecture across chunks: {', '.join(TBPTT_ARCHITECTURES)}",
        )
    if variant.bidirectional:
        raise ConfigError(
            field, f"variant {name!r} is bidirectional: its backward pass reads the future"
        )
    if not TASKS.get(task).per_step:  # e.g. `adding`: regression, but one target per sequence
        per_step = [other for other in TASKS.names() if TASKS.get(other).per_step]
        raise ConfigError(
            field,
            f"task {task!r} ({family}) has one target per sequence, no target at every step to "
            f"truncate; truncated BPTT fits the tasks with one: {', '.join(per_step)}",
        )


def _check_info_flow(name: str, variant: ModelConfig, field: str) -> None:
    """Omega reads h(1..tau) step by step: a unidirectional recurrence that reads the input."""
    if not variant.wiring.info_flow:
        raise ConfigError(
            field,
            f"variant {name!r} is {variant.architecture!r}; the information-flow regularizer "
            f"fits: {', '.join(INFO_FLOW_ARCHITECTURES)}",
        )
    if variant.bidirectional:
        raise ConfigError(
            field, f"variant {name!r} is bidirectional: Omega needs one direction in time"
        )
    if variant.cell in INFO_FLOW_FIXED_CELLS:
        raise ConfigError(
            field, f"variant {name!r} is {variant.cell!r}: its recurrent weights are not trained"
        )
