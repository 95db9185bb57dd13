"""Shared fixtures. Every test that writes state gets its own SEQLAB_HOME."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SEQLAB = [sys.executable, "-m", "pipelines.cli"]


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private store, with the standard variables cleared so the embedded default applies."""
    store = tmp_path / "home"
    monkeypatch.setenv("SEQLAB_HOME", str(store))
    for var in ("MLFLOW_TRACKING_URI", "RAY_ADDRESS", "PREFECT_API_URL"):
        monkeypatch.delenv(var, raising=False)
    return store


def seqlab(*args: str, env: dict[str, str] | None = None, timeout: float = 600):
    """Run the CLI in a subprocess, as a user would."""
    return subprocess.run(
        [*SEQLAB, *args],
        cwd=ROOT,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
    )
