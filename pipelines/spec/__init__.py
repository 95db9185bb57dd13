"""What a user writes: the study spec.

`schema` is what a spec may contain (one pydantic model, `StudySpec`); `rules` ties its sections
to each other and to the task; `load` reads one from YAML; `task` is the task section on its own
(no torch: `seqlab data prepare` reads it). The package re-exports what callers use.
"""

from pipelines.spec.load import load_spec, parse, parse_spec
from pipelines.spec.rules import fitting_architectures
from pipelines.spec.schema import OPTION_SECTIONS, PERTURBABLE, Distribution, StudySpec
from pipelines.spec.suite import SuiteSpec
from pipelines.spec.task import SpecError

__all__ = [
    "OPTION_SECTIONS",
    "PERTURBABLE",
    "Distribution",
    "SpecError",
    "StudySpec",
    "SuiteSpec",
    "fitting_architectures",
    "load_spec",
    "parse",
    "parse_spec",
]
