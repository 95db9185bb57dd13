"""`python -m pipelines.cli`: the `seqlab` command."""

from pipelines.cli.app import entry

entry()
