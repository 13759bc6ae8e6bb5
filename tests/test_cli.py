"""The command line, run as a user would (real model and index, separate processes)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import CORPUS, small_disk
from tests.hostile import fill_disk, zip_bomb_docx

pytestmark = pytest.mark.slow

# Runs `python -m assistant ...` and reports that child's own peak RSS. A small launcher, because a
# child's ru_maxrss also counts the memory of the process it was started from (until exec).
MEASURED = (
    "import os, sys\n"
    "pid = os.posix_spawn(sys.executable, [sys.executable, '-m', 'assistant', *sys.argv[1:]], os.environ)\n"
    "_, status, usage = os.wait4(pid, 0)\n"
    "print(f'peak_rss_kb {usage.ru_maxrss}', file=sys.stderr)\n"
    "sys.exit(os.waitstatus_to_exitcode(status))\n"
)


def _run(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    out = subprocess.run([sys.executable, "-m", "assistant", *args], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0 or not check, out.stderr
    return out


def _measured_build(sources: Path, index: Path) -> tuple[dict, int]:
    """The build's JSON summary and its peak RSS in kB."""
    out = subprocess.run(
        [sys.executable, "-c", MEASURED, "build", "--json", "--sources", str(sources), "--index", str(index)],
        capture_output=True, text=True, timeout=300,
    )
    assert out.returncode == 0, out.stderr
    peak = int(out.stderr.rsplit("peak_rss_kb ", 1)[1].split()[0])
    return json.loads(out.stdout), peak


def test_ask_json(built):
    out = _run("ask", "Hva krevde KS om SLT?", "-k", "3", "--json", "--index", str(built.index))
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert data["found"] is True
    assert 1 <= len(data["hits"]) <= 3
    assert {"text", "source", "start_line", "end_line", "score", "title", "date", "kind"} <= set(data["hits"][0])
    assert {"number", "text", "highlight", "source", "start_line", "end_line", "title", "date"} <= set(data["citations"][0])
    assert "tiltaksplan for å styrke SLT-samarbeidet" in data["hits"][0]["text"]
    assert "linje 17" in data["markdown"]


def test_ask_plain_text_marks_the_sentence(built):
    out = _run("ask", "What did KS demand on SLT?", "--index", str(built.index))
    assert out.returncode == 0, out.stderr
    assert "»KS foreslår at vi sammen utarbeider en tiltaksplan" in out.stdout
    assert "KS konsultasjonsmøte 26.04.2024, line 17" in out.stdout


def test_missing_index_says_how_to_fix_it(tmp_path):
    out = _run("ask", "Hva?", "--index", str(tmp_path / "none"), check=False)
    assert out.returncode == 2
    assert "python -m assistant build" in out.stderr
    assert "Traceback" not in out.stderr


def test_corrupt_index_says_how_to_fix_it(built, tmp_path):
    import shutil

    broken = tmp_path / "index"
    shutil.copytree(built.index, broken)
    generation = (broken / "CURRENT").read_text().strip()
    (broken / generation / "vectors.npy").write_bytes(b"garbage")
    out = _run("ask", "Hva?", "--index", str(broken), check=False)
    assert out.returncode == 2
    assert "damaged" in out.stderr and "python -m assistant build" in out.stderr
    assert "Traceback" not in out.stderr


def test_a_zip_bomb_is_skipped_and_the_build_stays_within_memory(tmp_path):
    normal, bombed = tmp_path / "normal", tmp_path / "bombed"
    shutil.copytree(CORPUS, normal)
    shutil.copytree(CORPUS, bombed)
    bomb = zip_bomb_docx(bombed / "bombe.docx", unpacked_mb=300)
    assert bomb.stat().st_size < 2_000_000

    _, normal_kb = _measured_build(normal, tmp_path / "normal-index")
    report, bombed_kb = _measured_build(bombed, tmp_path / "bombed-index")
    print(f"peak RSS: normal build {normal_kb // 1024} MB, with a 300 MB zip bomb {bombed_kb // 1024} MB")
    reasons = {s["source"]: s["reason"] for s in report["skipped"]}
    assert "word/document.xml unpacks to 300 MB, more than the limit of 50 MB" in reasons["bombe.docx"]
    assert report["files_added"] == len(list(CORPUS.iterdir()))
    assert bombed_kb - normal_kb < 1024 * 1024


@pytest.mark.parametrize("free_kb", [0, 128])
def test_a_build_on_a_full_disk_prints_one_line_and_the_old_index_answers(built, tmp_path, free_kb):
    """With no space at all the lock fails; with a little, saving the new generation does."""
    sources = tmp_path / "texts"
    shutil.copytree(built.sources, sources)
    (sources / "nytt.md").write_text("# Nytt\n\nKommunestyret vedtok en ny svømmehall.\n", encoding="utf-8")
    with small_disk(tmp_path / "disk", "2m") as disk:
        index = disk / "index"
        shutil.copytree(built.index, index)
        before = sorted(p.name for p in index.iterdir())
        fill_disk(disk, leave=free_kb * 1024)

        out = _run("build", "--sources", str(sources), "--index", str(index), check=False)
        assert out.returncode == 2
        assert "Traceback" not in out.stderr
        errors = [line for line in out.stderr.splitlines() if line.startswith("error:")]
        assert errors == [out.stderr.strip().splitlines()[-1]]
        assert errors[0].startswith(f"error: not enough disk space in '{index}'")
        assert "previous index is unchanged" in errors[0]
        assert sorted(p.name for p in index.iterdir()) == before

        answer = _run("ask", "Hva krevde KS om SLT?", "--json", "--index", str(index))
        assert answer.returncode == 0, answer.stderr
        assert "tiltaksplan for å styrke SLT-samarbeidet" in json.loads(answer.stdout)["hits"][0]["text"]


def test_documents_json_lists_meetings_skipped_files_and_trash(built):
    out = _run("documents", "--json", "--index", str(built.index), "--sources", str(built.sources))
    listed = json.loads(out.stdout)
    [doc] = listed["documents"]
    assert doc["source"] == "ks-konsultasjonsmote-2024-04-26.txt" and doc["title"] == "KS konsultasjonsmøte 26.04.2024"
    assert (doc["date"], doc["kind"], doc["passages"]) == ("2024-04-26", "konsultasjonsmøte", 23)
    assert doc["origins"]["date"] == "file name" and doc["added"]
    assert listed["skipped"] == [] and listed["trash"] == []


def test_ask_filters_and_meeting_fields(built):
    out = _run("ask", "Hva krevde KS om SLT?", "--json", "--kind", "konsultasjonsmøte", "--index", str(built.index))
    data = json.loads(out.stdout)
    assert data["found"] and data["citations"][0]["title"] == "KS konsultasjonsmøte 26.04.2024"
    assert data["hits"][0]["date"] == "2024-04-26" and data["hits"][0]["source"].endswith(".txt")
    none = json.loads(_run("ask", "Hva krevde KS om SLT?", "--json", "--before", "2020-01-01", "--index", str(built.index)).stdout)
    assert not none["found"] and none["citations"] == [] and none["hits"] == []
    unknown = _run("ask", "Hva krevde KS om SLT?", "--kind", "fylkesting", "--index", str(built.index), check=False)
    assert unknown.returncode == 2 and "no document is of the kind 'fylkesting'" in unknown.stderr and "Traceback" not in unknown.stderr
    bad = _run("ask", "SLT", "--after", "i fjor", "--index", str(built.index), check=False)
    assert bad.returncode == 2 and "after must be a date" in bad.stderr and "Traceback" not in bad.stderr


def test_hash_password_prints_a_users_file_line(tmp_path):
    from assistant.serving.auth import read_users, verify_password

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
    out = _run("serve", "--auth-file", str(users), "--index", str(tmp_path / "index"), check=False)
    assert out.returncode == 2
    assert "users.txt, line 1" in out.stderr and "plain passwords are not accepted" in out.stderr
    assert "Traceback" not in out.stderr


def test_k_is_limited_like_the_api(tmp_path):
    out = _run("ask", "Hva?", "-k", "51", "--index", str(tmp_path / "none"), check=False)
    assert out.returncode == 2 and "-k must be between 1 and 50" in out.stderr


def test_eval_json_has_the_documented_keys(built):
    from .conftest import HELDOUT

    out = _run("eval", str(HELDOUT), "--json", "--index", str(built.index))
    report = json.loads(out.stdout)["all"]
    assert set(report) == {
        "modes", "out_of_scope", "declined", "in_scope", "wrongly_declined", "mean_top1_chars", "list_recall", "misses",
        "extracts_one_answer", "extract_precision",
    }
    assert set(report["modes"]) == {"hybrid", "dense", "lexical"}
    figure = report["modes"]["hybrid"]["all"]["hit_at_1"]
    assert set(figure) == {"value", "low", "high", "n"} and figure["low"] <= figure["value"] <= figure["high"]


def test_build_with_fp32_makes_an_index_that_q4_refuses(built, tmp_path):
    index = tmp_path / "index-fp32"
    out = _run("build", "--precision", "fp32", "--json", "--sources", str(built.sources), "--index", str(index))
    assert json.loads(out.stdout)["chunks_embedded"] == 23
    answer = json.loads(_run("ask", "Hva krevde KS om SLT?", "--json", "--precision", "fp32", "--index", str(index)).stdout)
    assert "tiltaksplan for å styrke SLT-samarbeidet" in answer["hits"][0]["text"]
    refused = _run("ask", "Hva krevde KS om SLT?", "--index", str(index), check=False)
    assert refused.returncode == 2 and "different weights" in refused.stderr and "Traceback" not in refused.stderr
