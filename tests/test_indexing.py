"""Incremental, atomic rebuilds on temporary copies of the corpus (real model, real index)."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from assistant import Retriever, Settings, build_index
from assistant.storage.indexing import index_status

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent
MD_FACT = "Kommunestyret i Eksempelby vedtok 14. mars å bygge en ny svømmehall til 212 millioner kroner."
CP1252_FACT = "Formannskapet i Ørsta-Vågå ønsker økt rammetilskudd til skolefritidsordningen i 2025."


@pytest.fixture(scope="module")
def template(tmp_path_factory):
    """One real build of the corpus; each test works on its own copy of it."""
    base = tmp_path_factory.mktemp("template")
    shutil.copytree(ROOT / "assistant" / "data" / "corpus", base / "texts")
    build_index(Settings.from_env(sources=base / "texts", index=base / "index"))
    return base


@pytest.fixture
def workspace(template, tmp_path):
    for name in ("texts", "index"):
        shutil.copytree(template / name, tmp_path / name)
    return Settings.from_env(sources=tmp_path / "texts", index=tmp_path / "index")


def _digest(folder: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(folder.rglob("*")):
        if p.is_file():
            h.update(p.name.encode() + p.read_bytes())
    return h.hexdigest()


def _add_files(settings: Settings) -> None:
    (settings.sources / "notater").mkdir()
    (settings.sources / "notater" / "svommehall.md").write_text(f"# Svømmehall\n\n{MD_FACT}\n", encoding="utf-8")
    (settings.sources / "sfo.txt").write_bytes(f"SFO\r\n\r\n{CP1252_FACT}\r\n".encode("cp1252"))


def test_new_files_are_indexed_and_found(workspace):
    _add_files(workspace)
    before = _digest(workspace.sources)
    report = build_index(workspace)
    assert (report.files_added, report.files_unchanged, report.files_removed) == (2, 1, 0)
    assert report.chunks_embedded == 2
    assert _digest(workspace.sources) == before, "sources must never be modified"
    r = Retriever.load(workspace.index)
    top = r.search("Hva vedtok kommunestyret om svømmehallen?", k=1)[0]
    assert top.text == MD_FACT and top.source == "notater/svommehall.md" and top.start_line == 3
    top = r.search("Hva ønsker formannskapet for skolefritidsordningen?", k=1)[0]
    assert top.text == CP1252_FACT and top.source == "sfo.txt"
    assert index_status(workspace) is None


def test_second_build_embeds_nothing(workspace):
    report = build_index(workspace)
    assert report.chunks_embedded == 0 and report.files_unchanged == 1


def test_changed_file_reembeds_only_its_new_chunks(workspace):
    _add_files(workspace)
    build_index(workspace)
    (workspace.sources / "sfo.txt").write_bytes(f"SFO\r\n\r\n{CP1252_FACT}\r\n\r\nEt nytt avsnitt om leksehjelp.\r\n".encode("cp1252"))
    assert index_status(workspace) == "the source texts changed"
    report = build_index(workspace)
    assert report.files_changed == 1 and report.files_unchanged == 2
    assert report.chunks_embedded == 1  # only the new paragraph; the unchanged one comes from the cache


def test_deleted_file_disappears_from_results(workspace):
    _add_files(workspace)
    build_index(workspace)
    (workspace.sources / "notater" / "svommehall.md").unlink()
    report = build_index(workspace)
    assert report.files_removed == 1
    r = Retriever.load(workspace.index)
    assert all(h.source != "notater/svommehall.md" for h in r.search("svømmehall Eksempelby", k=10))


def test_bad_files_are_skipped_with_reasons(workspace):
    (workspace.sources / "tom.txt").write_bytes(b"")
    (workspace.sources / "binær.txt").write_bytes(bytes(range(256)) * 8)
    (workspace.sources / "ødelagt.pdf").write_bytes(b"%PDF-1.4 not really a pdf")
    (workspace.sources / ".skjult.txt").write_text("hemmelig", encoding="utf-8")
    (workspace.sources / "notat.txt~").write_text("backup", encoding="utf-8")
    report = build_index(workspace)
    skipped = {s.source for s in report.skipped}
    assert {"tom.txt", "binær.txt", "ødelagt.pdf", ".skjult.txt", "notat.txt~"} <= skipped
    reasons = {s.source: s.reason for s in report.skipped}
    assert reasons["binær.txt"] == "looks like binary data, not text"  # the file is named once, by the report
    assert reasons["ødelagt.pdf"].startswith("cannot parse PDF file")
    assert report.files_unchanged == 1
    assert Retriever.load(workspace.index).search("SLT", k=1)


def test_full_rebuild_reembeds_everything(workspace):
    report = build_index(workspace, full=True)
    assert report.chunks_embedded == report.chunks_total > 0


def _cli(settings: Settings, *args: str) -> list[str]:
    return [sys.executable, "-m", "assistant", *args, "--index", str(settings.index)]


def _env(settings: Settings) -> dict[str, str]:
    return {**os.environ, "ASSISTANT_SOURCES": str(settings.sources)}


def test_killed_build_leaves_the_old_index_answering(workspace):
    big = "\n\n".join(f"Avsnitt {i} om kommunal planlegging, økonomi og tjenester i distriktene nummer {i}." for i in range(1500))
    (workspace.sources / "stor.txt").write_text(big, encoding="utf-8")
    proc = subprocess.Popen(_cli(workspace, "build"), env=_env(workspace), stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 300
    seen = ""
    while time.time() < deadline and "embedding passages" not in seen:
        seen += proc.stderr.read(1) or ""
        assert proc.poll() is None, seen
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    r = Retriever.load(workspace.index)
    assert "tiltaksplan" in r.search("Hva krevde KS om SLT?", k=1)[0].text
    assert r.stored.manifest.chunks < 100
    (workspace.sources / "stor.txt").unlink()
    report = build_index(workspace)  # the killed build's leftover temp folder does not get in the way
    assert report.files_unchanged == 1 and report.chunks_embedded == 0
    assert not [p for p in workspace.index.iterdir() if p.name.endswith(".tmp")]


def test_concurrent_builds_end_with_a_valid_index(workspace):
    _add_files(workspace)
    procs = [subprocess.Popen(_cli(workspace, "build", "--json"), env=_env(workspace), stdout=subprocess.PIPE, text=True) for _ in range(2)]
    outputs = [json.loads(p.communicate(timeout=600)[0]) for p in procs]
    assert [p.returncode for p in procs] == [0, 0]
    assert sorted(o["files_added"] for o in outputs) == [0, 2]  # the second waited for the lock, then found nothing new
    for key in ("files_added", "files_changed", "files_removed", "files_unchanged", "files_skipped", "chunks_embedded", "seconds"):
        assert key in outputs[0]
    r = Retriever.load(workspace.index)
    assert r.search("svømmehall Eksempelby", k=1)[0].text == MD_FACT


def test_changing_only_a_sidecar_reembeds_nothing_and_relabels(workspace):
    from assistant.storage.store import read_manifest

    source = "ks-konsultasjonsmote-2024-04-26.txt"
    sidecar = workspace.sources / "ks-konsultasjonsmote-2024-04-26.meta.yaml"
    sidecar.write_text("title: Konsultasjonsmøte med regjeringen\nkind: konsultasjonsmøte\n", encoding="utf-8")
    report = build_index(workspace)
    assert (report.files_relabelled, report.chunks_embedded, report.files_changed) == (1, 0, 0)
    meeting = read_manifest(workspace.index).sources[source]["meeting"]
    assert meeting["title"] == "Konsultasjonsmøte med regjeringen" and meeting["origins"]["title"] == "sidecar"
    assert meeting["date"] == "2024-04-26" and meeting["origins"]["date"] == "file name"
    hit = Retriever.load(workspace.index).search("Hva krevde KS om SLT?", k=1)[0]
    assert hit.title == "Konsultasjonsmøte med regjeringen 26.04.2024"
    assert index_status(workspace) is None
    sidecar.write_text("title: Endret igjen\n", encoding="utf-8")
    assert index_status(workspace) == "the source texts changed"
    assert build_index(workspace).chunks_embedded == 0


def test_a_removed_document_waits_in_the_trash_and_comes_back(workspace):
    from assistant.serving import documents
    from assistant.serving.service import Service

    _add_files(workspace)
    build_index(workspace)
    moved = documents.remove(workspace, "sfo.txt")
    assert moved == "sfo.txt" and (workspace.sources / ".trash" / "sfo.txt").is_file()
    assert not (workspace.sources / "sfo.txt").exists()
    report = build_index(workspace)
    assert report.files_removed == 1 and report.chunks_embedded == 0
    listed = documents.inventory(workspace, Service(workspace).sources())
    assert "sfo.txt" not in {d.source for d in listed.documents} and listed.trash == ["sfo.txt"]
    assert not listed.skipped  # the trash is not reported as a skipped folder
    assert documents.restore(workspace, "sfo.txt") == "sfo.txt"
    back = build_index(workspace)
    assert (back.files_added, back.chunks_embedded) == (1, 1)  # its one passage is embedded again
    restored = documents.inventory(workspace, Service(workspace).sources())
    assert "sfo.txt" in {d.source for d in restored.documents} and restored.trash == []


def test_removing_twice_keeps_both_versions_and_restoring_never_overwrites(workspace):
    from assistant.serving import documents

    (workspace.sources / "a.txt").write_text("Første utgave.", encoding="utf-8")
    documents.remove(workspace, "a.txt")
    (workspace.sources / "a.txt").write_text("Andre utgave.", encoding="utf-8")
    second = documents.remove(workspace, "a.txt")
    assert second != "a.txt" and len(documents.trashed(workspace)) == 2
    (workspace.sources / "a.txt").write_text("Tredje utgave.", encoding="utf-8")
    with pytest.raises(documents.DocumentError, match="exists already"):
        documents.restore(workspace, "a.txt")
    (workspace.sources / "a.txt").unlink()
    assert documents.restore(workspace, second) == "a.txt"
    assert (workspace.sources / "a.txt").read_text(encoding="utf-8") == "Andre utgave."
    for bad in ("../utenfor.txt", "/etc/passwd", ""):
        with pytest.raises(documents.DocumentError):
            documents.remove(workspace, bad)


def test_a_search_in_flight_finishes_on_the_generation_it_started_on(workspace):
    """A rebuild removes the old generation's folder; a search holding it still reads its memory-mapped files."""
    retriever = Retriever.load(workspace.index)
    started = retriever.run("Hva krevde KS om SLT?", k=3)
    old = started.stored.folder
    _add_files(workspace)
    subprocess.run(
        [sys.executable, "-m", "assistant", "build", "--sources", str(workspace.sources), "--index", str(workspace.index)],
        check=True, capture_output=True, timeout=300,
    )
    assert not old.exists() and retriever.refresh()
    hit = started.hit(started.hits[0].chunk_id)  # the old generation's vectors and chunks, after its folder is gone
    assert hit.text == started.hits[0].text and len(started.sentence_scores(hit)) >= 1
    assert retriever.stored.folder != old and len(retriever.stored.chunks) > len(started.stored.chunks)


def test_a_text_that_occurs_many_times_in_a_build_is_embedded_once() -> None:
    """A file of "Ja. Ja. Ja. …" has half a million sentences and one text to embed."""
    import numpy as np

    from assistant.storage.indexing import _embed

    class Counting:
        dim = 2
        embedded: list[str] = []

        def embed_passages(self, texts: list[str]) -> np.ndarray:
            self.embedded += texts
            return np.array([[len(t), 1.0] for t in texts], np.float32)

    embedder = Counting()
    cache: dict = {}
    vectors, count = _embed(["Ja."] * 100_000 + ["Nei da."], embedder, cache, lambda *a: None, "sentences")  # type: ignore[arg-type]
    assert count == 2 and embedder.embedded == ["Ja.", "Nei da."]
    assert vectors.shape == (100_001, 2) and vectors[0, 0] == vectors[99_999, 0] == 3 and vectors[-1, 0] == 7
    assert _embed(["Nei da.", "Ja."], embedder, cache, lambda *a: None, "again")[1] == 0  # now in the cache
