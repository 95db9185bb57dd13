"""Tasks: pure data generators with their metric and published baseline.

A task turns (options, seed) into train/val/test arrays. It knows nothing of where they are stored.
Importing this package registers every task in TASKS. A task subclasses its family's base
(`seqmodels.tasks.families`), which declares the family's metrics once.
"""

from seqmodels.tasks.adding import AddingOptions, AddingTask
from seqmodels.tasks.algorithmic import (
    AdditionOptions,
    AdditionTask,
    ReverseTask,
    SortTask,
    SymbolSequenceOptions,
)
from seqmodels.tasks.base import FAMILIES, TASKS, Family, Split, Task
from seqmodels.tasks.charlm import CharLMOptions, StdlibCharLMTask
from seqmodels.tasks.common import Vocabulary
from seqmodels.tasks.copy_memory import CopyOptions, CopyTask
from seqmodels.tasks.dates import DatesOptions, DatesTask
from seqmodels.tasks.digits import SeqDigitsOptions, SeqDigitsTask
from seqmodels.tasks.families import (
    ClassificationTask,
    LanguageModelTask,
    RegressionTask,
    Seq2SeqTask,
    TokenTask,
)
from seqmodels.tasks.g2p import G2POptions, G2PTask
from seqmodels.tasks.listops import ListOpsOptions, ListOpsTask
from seqmodels.tasks.reconstruct import ReconstructOptions, ReconstructTask
from seqmodels.tasks.sunspots import SunspotsOptions, SunspotsTask
from seqmodels.tasks.user_data import (
    PairsJSONLOptions,
    PairsJSONLTask,
    SeriesCSVOptions,
    SeriesCSVTask,
    TextOptions,
    TextTask,
)

__all__ = [
    "FAMILIES",
    "TASKS",
    "AddingOptions",
    "AddingTask",
    "AdditionOptions",
    "AdditionTask",
    "CharLMOptions",
    "ClassificationTask",
    "CopyOptions",
    "CopyTask",
    "DatesOptions",
    "DatesTask",
    "Family",
    "G2POptions",
    "G2PTask",
    "LanguageModelTask",
    "ListOpsOptions",
    "ListOpsTask",
    "PairsJSONLOptions",
    "PairsJSONLTask",
    "ReconstructOptions",
    "ReconstructTask",
    "RegressionTask",
    "ReverseTask",
    "Seq2SeqTask",
    "SeqDigitsOptions",
    "SeqDigitsTask",
    "SeriesCSVOptions",
    "SeriesCSVTask",
    "SortTask",
    "SunspotsOptions",
    "SunspotsTask",
    "Split",
    "StdlibCharLMTask",
    "SymbolSequenceOptions",
    "Task",
    "TextOptions",
    "TextTask",
    "TokenTask",
    "Vocabulary",
]
