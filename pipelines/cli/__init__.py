"""The `seqlab` command.

The package re-exports `main` and `entry` (the console script); `python -m pipelines.cli`
runs it.
"""

from pipelines.cli.app import entry, main  # noqa: F401
