"""A fresh clone as a new user meets it: the bundled text is copied into the texts folder once, the index is
built where git does not look, and using the app (an upload, a removal, a rebuild) changes no tracked file."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from assistant.ingest.sources import BUNDLED_CORPUS, SEEDED, seed_bundled
from tests.conftest import ROOT


def test_the_bundled_text_is_copied_once_and_a_removal_stays(tmp_path: Path) -> None:
    folder = tmp_path / "texts"
    assert seed_bundled(folder) == sorted(p.name for p in BUNDLED_CORPUS.iterdir())
    assert (folder / SEEDED).exists()
    first = next(folder.glob("*.txt"))
    first.unlink()
    assert seed_bundled(folder) == [] and not first.exists()  # the folder is the user's now


@pytest.mark.slow
def test_a_fresh_clone_stays_clean_after_run_upload_removal_and_rebuild(tmp_path: Path) -> None:
    if not (ROOT / ".git").exists() or subprocess.run(["git", "--version"], capture_output=True).returncode:
        pytest.skip("not a git checkout, or no git: nothing to keep clean")
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "--quiet", str(ROOT), str(clone)], check=True)
    env = {**os.environ, "PYTHONPATH": str(clone)}

    def assistant(*args: str) -> subprocess.CompletedProcess[str]:
        done = subprocess.run([sys.executable, "-m", "assistant", *args], cwd=clone, env=env, capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stderr
        return done

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = subprocess.Popen([sys.executable, "-m", "assistant", "serve", "--port", str(port)], cwd=clone, env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{port}/"
    try:
        deadline = time.monotonic() + 400
        while True:
            assert server.poll() is None, server.stderr.read() if server.stderr else ""
            try:
                if httpx.get(url + "api/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "the server did not come up"
            time.sleep(0.5)
        from gradio_client import Client, handle_file

        note = tmp_path / "notat.md"
        note.write_text("# Formannskapet\n\nFormannskapet vedtok en ny lysløype til 3 millioner kroner.\n", encoding="utf-8")
        report = Client(url, verbose=False).predict([handle_file(str(note))], False, api_name="/upload")
        assert "notat.md: lagt til" in report
        answer = httpx.post(url + "api/answer", json={"question": "Hva krevde KS om SLT?"}, timeout=60).json()
        assert answer["found"] and answer["citations"][0]["source"] == "ks-konsultasjonsmote-2024-04-26.txt"
    finally:
        server.terminate()
        server.wait(timeout=30)
    assistant("documents", "--remove", "notat.md")
    assistant("build")
    assert (clone / "source_texts" / "ks-konsultasjonsmote-2024-04-26.txt").is_file()
    assert (clone / "source_texts" / ".trash" / "notat.md").is_file()
    status = subprocess.run(["git", "status", "--porcelain", "--untracked-files=all"], cwd=clone, capture_output=True, text=True)
    assert status.stdout == "", status.stdout
