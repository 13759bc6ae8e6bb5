"""The command line, run as a user would (real model and index, separate processes)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

pytestmark = pytest.mark.slow


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "assistant", *args], capture_output=True, text=True, timeout=300)


def test_ask_json(built):
    out = _run("ask", "Hva krevde KS om SLT?", "-k", "3", "--json", "--index", str(built.index))
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert data["found"] is True
    assert 1 <= len(data["hits"]) <= 3
    assert set(data["hits"][0]) == {"text", "source", "start_line", "end_line", "score"}
    assert "tiltaksplan for å styrke SLT-samarbeidet" in data["hits"][0]["text"]
    assert "linje 17" in data["markdown"]


def test_ask_plain_text_marks_the_sentence(built):
    out = _run("ask", "What did KS demand on SLT?", "--index", str(built.index))
    assert out.returncode == 0, out.stderr
    assert "»KS foreslår at vi sammen utarbeider en tiltaksplan" in out.stdout
    assert "ks-konsultasjonsmote-2024-04-26.txt, line 17" in out.stdout


def test_missing_index_says_how_to_fix_it(tmp_path):
    out = _run("ask", "Hva?", "--index", str(tmp_path / "none"))
    assert out.returncode == 2
    assert "python -m assistant build" in out.stderr
    assert "Traceback" not in out.stderr


def test_corrupt_index_says_how_to_fix_it(built, tmp_path):
    import shutil

    broken = tmp_path / "index"
    shutil.copytree(built.index, broken)
    generation = (broken / "CURRENT").read_text().strip()
    (broken / generation / "vectors.npy").write_bytes(b"garbage")
    out = _run("ask", "Hva?", "--index", str(broken))
    assert out.returncode == 2
    assert "damaged" in out.stderr and "python -m assistant build" in out.stderr
    assert "Traceback" not in out.stderr


def test_hash_password_prints_a_users_file_line(tmp_path):
    from assistant.auth import read_users, verify_password

    out = subprocess.run(
        [sys.executable, "-m", "assistant", "hash-password", "anna"], input="hemmelig\n", capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr
    users = tmp_path / "users.txt"
    users.write_text(out.stdout, encoding="utf-8")
    assert verify_password("hemmelig", read_users(users)["anna"])


def test_serve_refuses_a_users_file_with_plain_passwords(tmp_path):
    users = tmp_path / "users.txt"
    users.write_text("anna:hemmelig\n", encoding="utf-8")
    out = _run("serve", "--auth-file", str(users), "--index", str(tmp_path / "index"))
    assert out.returncode == 2
    assert "users.txt, line 1" in out.stderr and "plain passwords are not accepted" in out.stderr
    assert "Traceback" not in out.stderr


def test_k_is_limited_like_the_api(tmp_path):
    out = _run("ask", "Hva?", "-k", "51", "--index", str(tmp_path / "none"))
    assert out.returncode == 2 and "-k must be between 1 and 50" in out.stderr
