"""The `seqlab` command: the root of the command groups, and its entry points.

Each group lives in its own module (`study`, `catalogue`, `data`, `serve`, `stack`); heavy
libraries load only inside the command that needs them, so `seqlab --help` stays quick.
"""

from __future__ import annotations

import sys
from typing import NoReturn

import click

from pipelines.cli import catalogue, data, process, serve, stack, study
from pipelines.cli.common import EXIT_USAGE


class _Commands(click.Group):
    """A group that lists its commands in the order they were added, not alphabetically."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(self.commands)


@click.group(
    cls=_Commands,
    name="seqlab",
    help="Comparison studies of recurrent sequence models (Deep Learning, chapter 10).",
)
def seqlab() -> None:
    """The root group: its commands do the work."""


for command in (
    study.run,
    study.validate,
    study.report,
    study.rerun,
    study.resume,
    catalogue.tasks,
    catalogue.models,
    serve.sample,
    data.data,
    stack.up,
    stack.down,
    serve.serve,
    stack.status,
):
    seqlab.add_command(command)


def entry() -> NoReturn:
    """The `seqlab` console script (and `python -m pipelines.cli`): `main`, then a quick exit."""
    process.freeze_at_exit()
    sys.exit(main())


def main(argv: list[str] | None = None) -> int:
    """Run `seqlab` on `argv` (default: the process's arguments); return its exit status.

    A usage mistake (unknown command or option, a missing argument, a value of the wrong type)
    is one line on stderr and exit status 2, as every other user error is.
    """
    args = sys.argv[1:] if argv is None else list(argv)
    try:
        # Not `seqlab.main`: click would turn a KeyboardInterrupt into its own Abort.
        with seqlab.make_context("seqlab", args) as ctx:
            return seqlab.invoke(ctx)
    except click.exceptions.Exit as done:  # --help
        return done.exit_code
    except click.UsageError as err:
        print(usage_line(err), file=sys.stderr)
        return EXIT_USAGE


def usage_line(err: click.UsageError) -> str:
    """Click's usage error as one line: its message, and where the command's help is."""
    if isinstance(err, click.exceptions.NoArgsIsHelpError):  # its message is the whole help
        message = "missing command."
    else:
        message = " ".join(err.format_message().split())
    path = err.ctx.command_path if err.ctx is not None else "seqlab"
    return f"seqlab: error: {message} See '{path} --help'."


if __name__ == "__main__":
    entry()
