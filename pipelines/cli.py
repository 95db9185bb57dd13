"""The `seqlab` command. Heavy libraries load only inside the command that needs them."""

from __future__ import annotations

import argparse
import sys
import time

from pipelines import settings

EXIT_USAGE = 2  # a user's mistake: bad spec, bad data, bad arguments


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="seqlab",
        description="Comparison studies of recurrent sequence models (Deep Learning, chapter 10).",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    run = commands.add_parser("run", help="run a study spec end to end")
    run.add_argument("spec", help="path to a study spec (YAML), e.g. experiments/quickstart.yaml")
    run.add_argument(
        "--dry-run", action="store_true", help="validate the spec and show the plan; start nothing"
    )
    check = commands.add_parser("validate", help="validate study specs without running them")
    check.add_argument("specs", nargs="+", help="paths to study specs (YAML)")
    rebuild = commands.add_parser(
        "report", help="rebuild a past study's report from MLflow, with no retraining"
    )
    rebuild.add_argument("study", help="the study's name (its MLflow experiment)")
    rebuild.add_argument("--run", help="a parent run id (default: the study's newest finished run)")
    rebuild.add_argument(
        "--out", help="folder for report.md and plots/ (default: $SEQLAB_HOME/reports/STUDY)"
    )
    args = parser.parse_args(argv)
    return {"run": _run, "validate": _validate, "report": _report}[args.command](args)


def _load(path: str):
    """The validated spec, or None after printing the one-line error."""
    from pipelines.spec import SpecError, load_spec

    try:
        return load_spec(path)
    except SpecError as err:
        print(f"seqlab: error: {err}", file=sys.stderr)
        return None


def _validate(args: argparse.Namespace) -> int:
    specs = [_load(path) for path in args.specs]
    for path, spec in zip(args.specs, specs, strict=True):
        if spec is not None:
            print(f"{path}: ok ({spec.name}, {len(spec.variants)} variants)")
    return 0 if all(specs) else EXIT_USAGE


def _run(args: argparse.Namespace) -> int:
    started = time.perf_counter()
    spec = _load(args.spec)
    if spec is None:
        return EXIT_USAGE  # before anything is started or written
    variants = ", ".join(spec.variants)
    trials = spec.search.trials_per_variant
    print(
        f"study {spec.name}: task {spec.task.name}, variants {variants}, "
        f"{trials} trials each, store {settings.seqlab_home()}",
        flush=True,
    )
    if args.dry_run:
        print("dry run: the spec is valid; nothing was started")
        return 0
    settings.configure_environment()
    _quiet_known_warnings()
    from pipelines.flows import run_study  # the heavy imports: torch, ray, prefect, mlflow

    imported = time.perf_counter()
    called_at = time.time()
    result = run_study(spec, source=args.spec)
    total = time.perf_counter() - started
    print()
    print(result.table)
    phases = {
        "imports": imported - started,
        "prefect_start": result.began_at - called_at,
        **result.phases,
    }
    overhead = total - result.train_seconds
    print(
        "time: "
        + ", ".join(f"{name} {seconds:.1f}s" for name, seconds in phases.items())
        + f"; total {total:.1f}s, of which training {result.train_seconds:.1f}s "
        f"(summed over trials and repeats) and orchestration {overhead:.1f}s"
    )
    print(f"MLflow parent run {result.parent_run_id} in experiment {spec.name!r}. To browse it:")
    print(f"  {_ui_command()}")
    return 0


def _report(args: argparse.Namespace) -> int:
    settings.configure_environment()
    from pathlib import Path

    from mlflow.exceptions import MlflowException

    from pipelines import report, tracking

    client = tracking.client()
    run_id = args.run or report.latest_parent(client, args.study)
    if run_id is None:
        print(
            f"seqlab: error: study: no finished run of {args.study!r} in {settings.tracking_uri()}",
            file=sys.stderr,
        )
        return EXIT_USAGE
    try:
        built = report.build(report.collect(client, run_id))
    except MlflowException as err:
        print(f"seqlab: error: --run: {run_id}: {err.message.splitlines()[0]}", file=sys.stderr)
        return EXIT_USAGE
    out = Path(args.out) if args.out else settings.seqlab_home() / "reports" / args.study
    report.write(built, out)
    print(built.markdown)
    print(f"written to {out / 'report.md'} and {out / 'plots'}/")
    return 0


def _quiet_known_warnings() -> None:
    """Silence third-party warnings a user can do nothing about; everything else still shows."""
    import warnings

    # torch.export, used by MLflow to check a model's input example, on cuDNN RNN weights.
    warnings.filterwarnings("ignore", message=r"The tensor attributes .*_flat_weights")
    # lightning's own use of a torch API that torch has deprecated.
    warnings.filterwarnings("ignore", message=r"`isinstance\(treespec, LeafSpec\)` is deprecated")


def _ui_command() -> str:
    uri = settings.tracking_uri()
    if uri.startswith(("http://", "https://")):
        return f"open {uri}"
    return f"mlflow ui --backend-store-uri {uri} --port 5000  # then open http://127.0.0.1:5000"


if __name__ == "__main__":
    sys.exit(main())
