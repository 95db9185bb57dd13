"""Tasks: pure data generators with their metric and published baseline.

A task turns (options, seed) into train/val/test arrays. It knows nothing of where they are stored.
"""

from seqmodels.tasks.adding import AddingOptions, AddingTask
from seqmodels.tasks.base import TASKS, Split, Task

__all__ = ["TASKS", "AddingOptions", "AddingTask", "Split", "Task"]
