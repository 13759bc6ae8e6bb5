"""Shared fixtures. Slow fixtures use the real bundled model and a real index built in a temp folder.

Test sessions share a model cache in the temporary folder, named by a
fingerprint of the bundled model and of the code that converts and exports it:
the conversion (about 40 s) runs once per change of either, never in the
user's own cache. With ``CI`` set, a missing ../shared or Chromium fails the
run instead of skipping what needs them.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CORPUS = ROOT / "assistant" / "data" / "corpus"  # the bundled meeting text
DEV_SET = ROOT.parent / "shared" / "eval" / "dev.jsonl"
HELDOUT = ROOT / "tests" / "heldout.jsonl"
CHROMIUM = Path("/usr/bin/chromium")


def pytest_configure(config: pytest.Config) -> None:
    """A temporary model cache for the session; in CI, what tests need must be there."""
    if os.environ.get("CI"):
        missing = [
            f"{path} ({why})"
            for path, why in ((DEV_SET, "the development questions, in ../shared"), (CHROMIUM, "run `make browser`"))
            if not path.exists()
        ]
        if missing:
            raise pytest.UsageError("CI is set but the tests need: " + "; ".join(missing))
    if "ASSISTANT_CACHE_DIR" not in os.environ:  # set it to use a cache of your own on purpose
        cache = Path(tempfile.gettempdir()) / f"ks-assistant-test-cache-{model_fingerprint()}"
        cache.mkdir(exist_ok=True)
        os.environ["XDG_CACHE_HOME"] = str(cache)  # Settings() and child processes (CLI, server) resolve below it


def model_fingerprint() -> str:
    """What the cached model depends on: the bundled weights file and the code that converts and exports it."""
    import hashlib

    from assistant.models.convert import bundled_model_file

    digest = hashlib.sha256()
    weights = Path(bundled_model_file())
    digest.update(f"{weights}:{weights.stat().st_size}:{weights.stat().st_mtime_ns}".encode())
    for module in sorted((ROOT / "assistant" / "models").glob("*.py")):
        digest.update(module.read_bytes())
    return digest.hexdigest()[:16]


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


@pytest.fixture(scope="session")
def settings(tmp_path_factory):
    from assistant import Settings

    work = tmp_path_factory.mktemp("corpus")
    shutil.copytree(CORPUS, work / "source_texts")
    return Settings.from_env(sources=work / "source_texts", index=work / "index")


@pytest.fixture(scope="session")
def built(settings):
    from assistant import build_index

    build_index(settings)
    return settings


@pytest.fixture(scope="session")
def retriever(built):
    from assistant import Retriever

    return Retriever.load(built.index)


BANK = ROOT / "tests" / "eval"


@pytest.fixture(scope="session")
def bank_settings(tmp_path_factory):
    """The evaluation bank's ten meeting texts (tests/eval/texts plus the real one), built once, as `make eval` does."""
    from assistant import Settings, build_index

    work = tmp_path_factory.mktemp("bank")
    sources = work / "sources"
    shutil.copytree(BANK / "texts", sources)
    for path in CORPUS.iterdir():
        shutil.copy(path, sources / path.name)
    settings = Settings.from_env(sources=sources, index=work / "index")
    build_index(settings, progress=lambda *_: None)
    return settings


@pytest.fixture(scope="session")
def bank_retriever(bank_settings):
    from datetime import date

    from assistant import Retriever

    retriever = Retriever.load(bank_settings.index)
    retriever.today = lambda: date(2026, 11, 27)  # "i fjor" means 2025 in these tests, whenever they run
    return retriever


@pytest.fixture(scope="session")
def dev_questions() -> list[dict]:
    if not DEV_SET.is_file():
        pytest.skip(f"{DEV_SET} not available")
    return read_jsonl(DEV_SET)


# ---- UI and browser tests: one fresh corpus (with a hostile file) per test module ----------------

HOSTILE = {
    "source": "sikkerhetsovelse.txt",
    "question": "Hvilken tekst ble brukt i sikkerhetsøvelsen om varslingsrutinen?",
    "payload": '<img src=x onerror="window.__xss=1"> <script>window.__xss=2</script>',
}


@pytest.fixture(scope="session")
def hostile() -> dict[str, str]:
    """A source file whose text is markup that must show as text and never run."""
    return HOSTILE


@pytest.fixture(scope="module")
def ui_settings(tmp_path_factory):
    """The bundled corpus plus the hostile file, in a folder the module may add files to."""
    from assistant import Settings

    work = tmp_path_factory.mktemp("ui")
    sources = work / "source_texts"
    shutil.copytree(CORPUS, sources)
    for path in sources.iterdir():
        path.chmod(0o644)
    (sources / HOSTILE["source"]).write_text(
        "Sikkerhetsøvelse i Eksempelby kommune\n\n"
        f"I sikkerhetsøvelsen om varslingsrutinen ble teksten {HOSTILE['payload']} limt inn i skjemaet.\n",
        encoding="utf-8",
    )
    return Settings.from_env(sources=sources, index=work / "index")


@pytest.fixture(scope="module")
def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# ---- full disks ---------------------------------------------------------------------------------


@contextlib.contextmanager
def small_disk(point: Path, size: str) -> Iterator[Path]:
    """A tmpfs of the given size at point, to fill up; the test is skipped, saying why, where mounting is not allowed."""
    point.mkdir(parents=True, exist_ok=True)
    if shutil.which("mount") is None:
        reason = "no `mount` command"
    else:
        done = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(point)], capture_output=True, text=True
        )
        reason = (done.stderr.strip() or f"mount exited with {done.returncode}") if done.returncode else ""
    if reason:
        message = f"full-disk test not run: cannot mount a small tmpfs ({reason})"
        print(message, file=sys.stderr)
        pytest.skip(message)
    try:
        yield point
    finally:
        subprocess.run(["umount", "--lazy", str(point)], check=False)


@pytest.fixture
def tiny_disk(tmp_path) -> Iterator[Path]:
    with small_disk(tmp_path / "disk", "4m") as point:
        yield point
