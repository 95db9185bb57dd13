"""Architectural rules: pure models, and a CLI that starts without the heavy libraries."""

from __future__ import annotations

import subprocess
import sys

from tests.conftest import ROOT

HEAVY_PIPELINE = ("ray", "prefect", "mlflow")


def _modules_after(code: str) -> set[str]:
    probe = f"{code}\nimport sys\nprint('\\n'.join(sys.modules))"
    out = subprocess.run(
        [sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, check=True
    )
    return {name.split(".")[0] for name in out.stdout.split()}


def test_seqmodels_never_imports_the_pipeline_libraries() -> None:
    files = sorted((ROOT / "seqmodels").rglob("*.py"))
    modules = [
        ".".join(p.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__") for p in files
    ]
    loaded = _modules_after("\n".join(f"import {m}" for m in modules))
    assert "seqmodels" in loaded and "torch" in loaded
    assert not loaded & set(HEAVY_PIPELINE), loaded & set(HEAVY_PIPELINE)


def test_cli_help_does_not_load_the_heavy_libraries() -> None:
    loaded = _modules_after(
        "from pipelines import cli\ntry:\n    cli.main(['--help'])\nexcept SystemExit:\n    pass"
    )
    assert "pipelines" in loaded
    assert not loaded & {"torch", "lightning", *HEAVY_PIPELINE}
