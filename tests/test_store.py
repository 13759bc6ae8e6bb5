"""The index on disk, with small synthetic arrays: no model needed."""

from __future__ import annotations

import os
import random

import faiss
import numpy as np
import pytest

from assistant.storage import store
from assistant.ingest.chunking import Chunk
from assistant.storage.bm25 import LexicalIndex
from assistant.storage.store import FIX, Manifest, StoreError, WriteError, build_lock, load_index, make_dense_index, save_index
from tests.hostile import fill_disk

DIM = 32
WORDS = "kommunen staten barnevernet tilskudd politiet skolen natur planlegging økonomi beredskap møtet KS".split()


def clustered(n: int, seed: int = 0, clusters: int = 40) -> np.ndarray:
    """Unit vectors around a few centres, the way embeddings of related passages cluster."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((clusters, DIM)).astype(np.float32)
    x = centres[rng.integers(0, clusters, n)] + 0.4 * rng.standard_normal((n, DIM)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def corpus(n: int) -> tuple[list[Chunk], dict[str, np.ndarray], LexicalIndex]:
    rng = random.Random(n)
    texts = [" ".join(rng.choices(WORDS, k=8)).capitalize() + "." for _ in range(n)]
    chunks = [Chunk(text=t, source=f"doc{i % 3}.txt", start_line=i + 1, end_line=i + 1) for i, t in enumerate(texts)]
    vectors = clustered(n)
    arrays = {
        "vectors": vectors,
        "sentences": np.repeat(vectors, 2, axis=0),
        "sentence_offsets": np.arange(0, 2 * n + 1, 2, dtype=np.int64),
        "background": clustered(3, seed=1),
    }
    return chunks, arrays, LexicalIndex.build(texts)


def manifest() -> Manifest:
    return Manifest(model="test-model", model_fingerprint="f" * 16, dim=DIM, chunker={"version": 1}, sources={})


def save(root, n: int = 60, **kwargs):
    chunks, arrays, lexical = corpus(n)
    save_index(root, manifest(), chunks, arrays, lexical, **kwargs)
    return chunks, arrays


def exact_top(vectors: np.ndarray, queries: np.ndarray, k: int) -> np.ndarray:
    return np.argsort(-(queries @ vectors.T), axis=1)[:, :k]


def recall_at_10(index: faiss.Index, vectors: np.ndarray, queries: np.ndarray) -> float:
    _, found = index.search(queries, 10)
    exact = exact_top(vectors, queries, 10)
    return float(np.mean([len(set(f) & set(e)) / 10 for f, e in zip(found, exact)]))


def test_round_trip_keeps_everything(tmp_path):
    chunks, arrays = save(tmp_path)
    stored = load_index(tmp_path)
    assert stored.chunks == chunks
    for name in store.ARRAYS:
        assert np.array_equal(getattr(stored, name), arrays[name])
    assert (stored.manifest.chunks, stored.manifest.dim, stored.manifest.dense_index) == (60, DIM, "flat")
    assert stored.dense.ntotal == len(stored.lexical) == 60
    _, ids = stored.dense.search(arrays["vectors"][:5], 1)
    assert ids[:, 0].tolist() == [0, 1, 2, 3, 4]


def test_vectors_are_memory_mapped_not_copied(tmp_path):
    save(tmp_path)
    stored = load_index(tmp_path)
    assert isinstance(stored.vectors, np.memmap) and isinstance(stored.sentences, np.memmap)


def test_small_collections_get_exact_search():
    vectors = clustered(500)
    index, kind = make_dense_index(vectors, flat_limit=500)
    assert kind == "flat" and isinstance(index, faiss.IndexFlatIP)
    assert recall_at_10(index, vectors, clustered(50, seed=2)) == 1.0


def test_empty_collection_is_an_empty_flat_index():
    index, kind = make_dense_index(np.zeros((0, DIM), np.float32))
    assert kind == "flat" and index.ntotal == 0


def test_large_collections_get_an_approximate_index_with_high_recall():
    vectors = clustered(4000)
    index, kind = make_dense_index(vectors, flat_limit=3999)
    ivf = faiss.extract_index_ivf(index)
    assert kind == f"IVF{ivf.nlist},SQ8 nprobe={ivf.nprobe}"
    assert index.ntotal == 4000
    assert recall_at_10(index, vectors, clustered(100, seed=3)) >= 0.95


def test_approximate_index_survives_save_and_memory_mapped_load(tmp_path):
    _, arrays = save(tmp_path, n=400, flat_limit=0)
    stored = load_index(tmp_path)
    assert stored.manifest.dense_index.startswith("IVF")
    ivf = faiss.extract_index_ivf(stored.dense)
    assert ivf.nprobe == store.ivf_probes(ivf.nlist)
    _, ids = stored.dense.search(arrays["vectors"][:20], 1)
    assert (ids[:, 0] == np.arange(20)).mean() >= 0.95


@pytest.mark.parametrize("n", [40, 2_000, 100_000, 1_000_000])
def test_ivf_size_rules(n):
    lists = store.ivf_lists(n)
    assert 1 <= lists <= max(1, n // store.TRAIN_PER_LIST)
    assert 1 <= store.ivf_probes(lists) <= lists


def test_no_index_says_how_to_build(tmp_path):
    with pytest.raises(StoreError, match="python -m assistant build"):
        load_index(tmp_path)


@pytest.mark.parametrize("name", ["dense.faiss", "vectors.npy", "chunks.jsonl", "manifest.json", "lexical.npz"])
def test_missing_file_gives_store_error_with_fix(tmp_path, name):
    save(tmp_path)
    (store.current_generation(tmp_path) / name).unlink()
    with pytest.raises(StoreError) as caught:
        load_index(tmp_path)
    assert FIX in str(caught.value)


@pytest.mark.parametrize("damage", ["garbage", "truncated"])
@pytest.mark.parametrize("name", ["dense.faiss", "vectors.npy", "manifest.json"])
def test_corrupt_file_gives_store_error_with_fix(tmp_path, name, damage):
    save(tmp_path, n=400, flat_limit=0)
    path = store.current_generation(tmp_path) / name
    data = path.read_bytes()
    path.write_bytes(b"\x00garbage{" * 8 if damage == "garbage" else data[: len(data) // 2])
    with pytest.raises(StoreError) as caught:
        load_index(tmp_path)
    assert FIX in str(caught.value)


def test_interrupted_save_leaves_previous_generation_loadable(tmp_path, monkeypatch):
    chunks, _ = save(tmp_path)
    before = store.current_generation(tmp_path)

    def fail(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(LexicalIndex, "save", fail)
    with pytest.raises(KeyboardInterrupt):
        save(tmp_path, n=80)
    assert store.current_generation(tmp_path) == before
    assert load_index(tmp_path).chunks == chunks
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []


def test_build_lock_excludes_a_second_holder_and_names_the_first(tmp_path):
    with build_lock(tmp_path):
        with pytest.raises(StoreError, match=f"pid {os.getpid()}"):
            with build_lock(tmp_path, wait=False):
                pass
    with build_lock(tmp_path, wait=False):
        pass


@pytest.mark.parametrize("free_kb", [0, 200, 700, 1200])
def test_a_full_disk_is_one_clear_error_and_the_old_index_stays(tiny_disk, free_kb):
    """The new generation (about 1.5 MB) runs out of space at a different file for each amount left free."""
    root = tiny_disk / "index"
    chunks, _ = save(root)
    before = sorted(p.name for p in root.iterdir())
    fill_disk(tiny_disk, leave=free_kb * 1024)
    with pytest.raises(WriteError, match=f"not enough disk space in '{root}'.*previous index is unchanged") as caught:
        save(root, n=2000)
    assert caught.value.disk_full
    assert sorted(p.name for p in root.iterdir()) == before
    assert load_index(root).chunks == chunks


def test_build_lock_on_a_full_disk_is_one_clear_error(tiny_disk):
    fill_disk(tiny_disk)
    with pytest.raises(WriteError, match="not enough disk space"):
        with build_lock(tiny_disk / "index"):
            pass


def test_list_members_map_each_item_and_the_lead_in_to_the_items():
    from assistant.ingest.chunking import chunk_document
    from assistant.ingest.sources import Document

    text = "Innledning.\n\nKS ba staten om:\n• Mer penger.\n• Færre krav.\n\nEt avsnitt.\n• Løst punkt.\n• Enda ett.\n"
    chunks = chunk_document(Document("ks.txt", text, "x"))
    members = store.list_members(chunks)
    texts = [c.text for c in chunks]
    first, second = (texts.index("Mer penger."), texts.index("Færre krav.")), (texts.index("Løst punkt."), texts.index("Enda ett."))
    assert members[texts.index("KS ba staten om:")] == first  # the lead-in leads to its list
    assert members[first[0]] == members[first[1]] == first and members[second[0]] == second
    assert texts.index("Et avsnitt.") in members  # "Et avsnitt." leads in to the second list too
    assert texts.index("Innledning.") not in members
