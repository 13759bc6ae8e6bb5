"""The storage seam with small synthetic indexes: the local files and Qdrant's local mode give the same evidence.

No model: vectors are clustered random unit vectors, texts are shuffled Norwegian words.
"""

from __future__ import annotations

import dataclasses
import random
from datetime import date

import numpy as np
import pytest
from qdrant_client.models import FieldCondition, Filter, Range

from assistant.storage.backends import open_backend
from assistant.storage.backends.local import LocalBackend
from assistant.storage.bm25 import LexicalIndex
from assistant.storage.backends import qdrant as qdrant_backend
from assistant.storage.backends.qdrant import passage_ids
from assistant.storage.filters import Where
from assistant.settings import Settings
from assistant.storage.store import StoreError, save_index
from tests.test_store import DIM, clustered, corpus, manifest

MEETINGS = {
    "doc0.txt": {"title": "Bergvik kommunestyre", "date": "2024-06-13", "kind": "Kommunestyre"},
    "doc1.txt": {"title": "KS konsultasjonsmøte", "date": "2024-04-26", "kind": "konsultasjonsmøte"},
    "doc2.txt": {"title": "Notat", "date": "", "kind": ""},
}
QUERIES = ["barnevernet i kommunen", "tilskudd fra staten", "politiet og skoleplanen", "naturbudsjett", "KS møtet om planer", "ukjent"]


def synthetic(n: int = 90):
    """Passages grouped by document, as a build lays them out, of words varied enough that BM25 scores rarely tie."""
    chunks, arrays, _ = corpus(n)
    rng = random.Random(n)
    words = [a + b for a in ("kommune", "stat", "barnevern", "skole", "politi", "natur") for b in ("", "n", "ne", "plan", "tilskudd", "ansatte", "budsjett", "møte")]
    order = sorted(range(n), key=lambda i: chunks[i].source)
    chunks = [dataclasses.replace(chunks[i], text=" ".join(rng.choices(words, k=rng.randint(4, 20))) + ".") for i in order]
    vectors = arrays["vectors"][order]
    arrays = {**arrays, "vectors": vectors, "sentences": np.repeat(vectors, 2, axis=0)}
    lexical = LexicalIndex.build([c.embed_text for c in chunks])
    sources = {s: {"sha256": s, "meeting": meta} for s, meta in MEETINGS.items()}
    return dataclasses.replace(manifest(), sources=sources), chunks, arrays, lexical


@pytest.fixture
def both(tmp_path):
    """The same synthetic index in the local files and in Qdrant's local mode."""
    m, chunks, arrays, lexical = synthetic()
    save_index(tmp_path / "local", m, chunks, arrays, lexical)
    settings = Settings(index=tmp_path / "q", backend="qdrant", qdrant_collection="test")
    backend = open_backend(settings)
    backend.save(m, chunks, arrays, lexical, None, frozenset(m.sources))
    return LocalBackend(tmp_path / "local").load(), backend, chunks


def _positions(chunks):
    return {pid: i for i, pid in enumerate(passage_ids(chunks))}


@pytest.mark.parametrize(
    "where",
    [Where(), Where(source="doc1.txt"), Where(kind="kommunestyre"), Where(after=date(2024, 5, 1)), Where(before=date(2024, 5, 1))],
)
def test_qdrant_gives_the_local_evidence(both, where):
    local, backend, chunks = both
    remote = backend.load()
    to_position = _positions(chunks)
    for n, query in enumerate(QUERIES):
        qvec = clustered(1, seed=100 + n)[0]
        named = frozenset({"doc2.txt"}) if n % 2 else frozenset()
        a = local.evidence(qvec, query, named, where, 10)
        b = remote.evidence(qvec, query, named, where, 10)
        assert [to_position[i] for i in b.ids] == a.ids.tolist(), query
        np.testing.assert_allclose(b.passage, a.passage, atol=1e-5)
        np.testing.assert_allclose(b.sentence, a.sentence, atol=1e-5)
        np.testing.assert_allclose(b.lexical, a.lexical, atol=1e-5)
        assert b.sources == a.sources
        assert all(where.admits(s, local.meetings[s]) for s in b.sources)


def test_qdrant_returns_chunks_vectors_and_lists_by_id(both):
    local, backend, chunks = both
    remote = backend.load()
    ids = passage_ids(chunks)[:7]
    assert remote.chunks_at(ids) == chunks[:7]
    passages, sentences = remote.vectors_of(ids)
    np.testing.assert_array_equal(passages, local.vectors[:7])
    np.testing.assert_array_equal(sentences[3], local.sentences[6:8])
    assert remote.document_chunks("doc1.txt") == local.document_chunks("doc1.txt")
    assert len(remote) == len(local) and remote.manifest.sources == local.manifest.sources
    np.testing.assert_array_equal(remote.background, local.background)
    assert remote.lexical.coverage("barnevernet tilskudd") == local.lexical.coverage("barnevernet tilskudd")


def test_stable_ids_repeat_texts_apart():
    chunks = corpus(6)[0]
    twice = [*chunks, chunks[0]]
    ids = passage_ids(twice)
    assert ids[:6] == passage_ids(chunks) and len(set(ids)) == 7 and min(ids) >= 16


def test_side_data_in_several_parts_and_an_interrupted_update(tmp_path, monkeypatch):
    """Side data split into small parts reads back whole; a build killed before its commit changes nothing."""
    monkeypatch.setattr(qdrant_backend, "PART_CHARS", 500)
    m, chunks, arrays, lexical = synthetic(30)
    settings = Settings(index=tmp_path, backend="qdrant", qdrant_collection="parts")
    backend = open_backend(settings)
    backend.save(m, chunks, arrays, lexical, None, frozenset(m.sources))
    before = backend.load()
    assert before.manifest.sources == m.sources and before.key.endswith("#1")

    def killed(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(qdrant_backend.QdrantBackend, "_commit", killed)
    changed = [dataclasses.replace(c, text=c.text + " Nytt.") if c.source == "doc0.txt" else c for c in chunks]
    rows = [i for i, c in enumerate(changed) if c.source == "doc0.txt"]
    part = {"vectors": arrays["vectors"][rows], "sentences": arrays["vectors"][rows],
            "sentence_offsets": np.arange(len(rows) + 1), "background": arrays["background"]}
    with pytest.raises(KeyboardInterrupt):
        backend.save(m, changed, part, LexicalIndex.build([c.embed_text for c in changed]), before, frozenset({"doc0.txt"}))
    after = backend.load()
    assert after.key == before.key
    qvec = clustered(1, seed=5)[0]
    old = before.evidence(qvec, "kommunen", frozenset(), Where(), 50)
    assert after.evidence(qvec, "kommunen", frozenset(), Where(), 50).ids.tolist() == old.ids.tolist()
    assert len(after.document_chunks("doc0.txt")) == 10 and "Nytt." not in after.document_chunks("doc0.txt")[0].text

    monkeypatch.undo()  # the next build clears what the killed one left and commits
    backend.save(m, changed, part, LexicalIndex.build([c.embed_text for c in changed]), before, frozenset({"doc0.txt"}))
    done = backend.load()
    assert done.key.endswith("#2") and all(c.text.endswith("Nytt.") for c in done.document_chunks("doc0.txt"))
    passages = Filter(must=[FieldCondition(key="added", range=Range(gte=0))])
    assert backend.client.count(done.collection, count_filter=passages, exact=True).count == 30  # no leftovers


def test_no_index_and_a_missing_backend_are_clear_errors(tmp_path):
    with pytest.raises(StoreError, match="No index found in Qdrant collection nothing"):
        open_backend(Settings(index=tmp_path, backend="qdrant", qdrant_collection="nothing")).manifest()
    with pytest.raises(ValueError, match="backend must be one of local, qdrant"):
        open_backend(Settings(index=tmp_path, backend="milvus"))


def test_vectors_are_stored_as_given(tmp_path):
    """DOT, not cosine: the server must not renormalise vectors the local backend uses as they are."""
    m, chunks, arrays, lexical = synthetic(12)
    arrays = {**arrays, "vectors": arrays["vectors"] * 2.0}  # not unit length: a cosine collection would rescale them
    backend = open_backend(Settings(index=tmp_path, backend="qdrant", qdrant_collection="dot"))
    backend.save(m, chunks, arrays, lexical, None, frozenset(m.sources))
    passages, _ = backend.load().vectors_of(passage_ids(chunks))
    assert passages.shape == (12, DIM)
    np.testing.assert_array_equal(passages, arrays["vectors"].astype(np.float32))


def test_cli_on_qdrant_without_an_index_or_with_bad_numbers(tmp_path, capsys):
    from assistant.serving.cli import main

    flags = ["--backend", "qdrant", "--index", str(tmp_path), "--qdrant-path", str(tmp_path / "q")]
    assert main(["ask", "Hva krevde KS om SLT?", *flags]) == 2
    assert "error: No index found in Qdrant collection ks-assistant (local mode in" in capsys.readouterr().err
    assert main(["build", *flags, "--qdrant-shards", "0"]) == 2
    assert "at least 1" in capsys.readouterr().err
    assert main(["migrate", "--to", "qdrant", "--index", str(tmp_path / "none"), "--qdrant-path", str(tmp_path / "q")]) == 2
    assert "No index found in" in capsys.readouterr().err


def test_settings_name_the_backend_and_hide_the_key(monkeypatch):
    monkeypatch.setenv("ASSISTANT_BACKEND", "qdrant")
    monkeypatch.setenv("ASSISTANT_QDRANT_SHARDS", "6")
    monkeypatch.setenv("ASSISTANT_QDRANT_API_KEY", "secret-key")
    settings = Settings.from_env(qdrant_url="https://qdrant.example:6333")
    assert (settings.backend, settings.qdrant_shards, settings.qdrant_api_key) == ("qdrant", 6, "secret-key")
    assert "secret-key" not in repr(settings)
