"""The stages import downwards only, without cycles, and only storage opens the index (import-linter's
contracts in pyproject.toml); a planted wrong import fails them, so they are not a formality."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
LINT = Path(sys.executable).parent / "lint-imports"


def lint(root: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(root)}
    return subprocess.run([str(LINT), "--no-cache"], cwd=root, env=env, capture_output=True, text=True, timeout=120)


def test_the_layering_contracts_hold():
    done = lint(ROOT)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "3 kept, 0 broken" in done.stdout


@pytest.mark.parametrize(
    ("module", "planted", "broken"),
    [
        ("ingest/meetings.py", "from ..serving import cli", "assistant.ingest.meetings -> assistant.serving.cli"),
        ("answering/types.py", "from . import render", "No cycles are allowed in assistant.answering"),
        ("serving/api.py", "from ..storage import store", "assistant.serving.api is not allowed to import assistant.storage.store"),
    ],
)
def test_a_planted_wrong_import_breaks_a_contract(tmp_path, module, planted, broken):
    shutil.copytree(ROOT / "assistant", tmp_path / "assistant", ignore=shutil.ignore_patterns("data", "__pycache__"))
    shutil.copyfile(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    target = tmp_path / "assistant" / module
    target.write_text(target.read_text(encoding="utf-8") + f"\n{planted}  # planted\n", encoding="utf-8")
    done = lint(tmp_path)
    assert done.returncode == 1 and broken in done.stdout, done.stdout + done.stderr
