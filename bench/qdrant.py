"""`make bench`, Qdrant part: build and query 10k passages on Qdrant's LOCAL MODE beside the local backend.

Local mode is Qdrant's Python client computing everything in-process with
numpy (no HNSW, no payload indexes, no Rust engine): its timings say nothing
about a Qdrant server and are NOT representative of one. What it does measure
honestly: that both backends rank the same way at 10k passages, what a passage
costs in stored bytes (dense vector, sentence multivector, sparse vector,
payload), which docs/scaling.md multiplies out, and the client-side overhead.

Prints a table and writes bench/results-qdrant.json (git-ignored).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from assistant.models import embedding  # noqa: E402

from assistant.storage import store  # noqa: E402
from assistant.storage.backends import open_backend  # noqa: E402
from assistant.storage.backends.local import LocalBackend  # noqa: E402
from assistant.storage.backends.qdrant import passage_ids  # noqa: E402
from assistant.storage.bm25 import LexicalIndex  # noqa: E402
from assistant.ingest.chunking import Chunk  # noqa: E402
from assistant.search.retrieval import Retriever  # noqa: E402
from assistant.settings import Settings  # noqa: E402
from common import latency, machine, passages, questions  # noqa: E402  (bench/common.py, beside this file)
from scale import CachedQueries, sentence_arrays, synthetic_vectors  # noqa: E402  (bench/scale.py)

TIMED = 12  # local mode filters point by point in Python: seconds a question at 10k, so fewer are timed
NOT_REPRESENTATIVE = "Qdrant LOCAL MODE (in-process numpy, no HNSW, no payload indexes): not representative of a Qdrant server"


def corpus(n: int, embedder: embedding.Embedder, settings: Settings):
    """The same synthetic index as bench/run.py's scale points: generated texts, vectors near real ones."""
    rng = np.random.default_rng(n)
    texts = passages(n, seed=n, compounds=0.1)
    basis = embedder.embed_passages(passages(300, seed=1))
    vectors = synthetic_vectors(basis, n, rng)
    chunks = [Chunk(text=t, source=f"synthetic-{i // 200:04d}.txt", start_line=i % 200 + 1, end_line=i % 200 + 1)
              for i, t in enumerate(texts)]
    started = time.perf_counter()
    lexical = LexicalIndex.build(texts)
    lexical_s = time.perf_counter() - started
    arrays = sentence_arrays(texts, vectors, embedder, rng)
    sources = {s: {"sha256": s, "meeting": {}} for s in dict.fromkeys(c.source for c in chunks)}
    manifest = store.Manifest(model=settings.model, model_fingerprint=embedder.fingerprint, dim=embedder.dim,
                              chunker={}, sources=sources)
    return manifest, chunks, arrays, lexical, lexical_s


def sizes(backend, chunks: Sequence[Chunk], sample: int = 1000) -> dict[str, float]:
    """Mean stored bytes per passage, from the points themselves (float32 vectors, u32+f32 sparse pairs, JSON payload)."""
    ids = passage_ids(chunks)[:: max(1, len(chunks) // sample)]
    records = backend.client.retrieve(backend.target(), ids, with_vectors=True, with_payload=True)
    dense = [4 * len(r.vector["dense"]) for r in records]
    sentences = [len(r.vector["sentences"]) for r in records]
    multi = [4 * sum(len(row) for row in r.vector["sentences"]) for r in records]
    sparse = [8 * len(r.vector["lexical"].indices) for r in records]
    payload = [len(json.dumps(r.payload, ensure_ascii=False).encode()) for r in records]
    return {
        "sampled": len(records),
        "dense_bytes": float(np.mean(dense)),
        "sentences_per_passage": round(float(np.mean(sentences)), 2),
        "sentence_multivector_bytes": round(float(np.mean(multi)), 1),
        "sparse_terms": round(float(np.mean(sparse)) / 8, 1),
        "sparse_bytes": round(float(np.mean(sparse)), 1),
        "payload_bytes": round(float(np.mean(payload)), 1),
    }


def folder_mb(path: Path) -> float:
    return round(sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) / 2**20, 1)


def run(n: int, work: Path) -> dict[str, object]:
    settings = Settings.from_env()
    embedder = embedding.Embedder(settings)
    manifest, chunks, arrays, lexical, lexical_s = corpus(n, embedder, settings)
    qs = questions()
    cached = CachedQueries(embedder, qs)

    started = time.perf_counter()
    store.save_index(work / "local", manifest, chunks, arrays, lexical)
    local_save = time.perf_counter() - started
    local = Retriever(work / "local", LocalBackend(work / "local").load(), cached)

    target = settings.replace(index=work / "q", backend="qdrant", qdrant_url="", qdrant_path=str(work / "q" / "qdrant"))
    backend = open_backend(target)
    started = time.perf_counter()
    with backend.lock():
        backend.save(manifest, chunks, arrays, lexical, None, frozenset(manifest.sources))
    qdrant_save = time.perf_counter() - started
    started = time.perf_counter()
    generation = backend.load()
    load_s = time.perf_counter() - started
    remote = Retriever(backend, generation, cached)

    position = {pid: i for i, pid in enumerate(passage_ids(chunks))}  # Qdrant's stable id -> the local backend's id
    same = [[h.chunk_id for h in local.search(q, 5)] == [position[h.chunk_id] for h in remote.search(q, 5)] for q in qs]
    return {
        "passages": n,
        "label": NOT_REPRESENTATIVE,
        "lexical_build_s": round(lexical_s, 2),
        "local_save_s": round(local_save, 2),
        "qdrant_local_mode_build_s": round(qdrant_save, 1),
        "qdrant_local_mode_load_s": round(load_s, 2),
        "local_hybrid_search": latency(local.run, qs),
        "qdrant_local_mode_hybrid_search": latency(remote.run, qs[:TIMED], rounds=1),
        "qdrant_timed_questions": TIMED,
        "same_top5_as_local": round(sum(same) / len(same), 3),
        "questions": len(qs),
        "per_passage": sizes(backend, chunks),
        "local_mode_folder_mb": folder_mb(work / "q" / "qdrant"),
        "local_index_folder_mb": folder_mb(work / "local"),
    }


def table(result: dict[str, object]) -> str:
    p = result["per_passage"]
    return "\n".join([
        f"Qdrant at {result['passages']:,} passages -- {result['label']}",
        f"  build: lexical {result['lexical_build_s']} s; local save {result['local_save_s']} s; "
        f"Qdrant local mode upsert {result['qdrant_local_mode_build_s']} s, load {result['qdrant_local_mode_load_s']} s",
        f"  hybrid search p50/p95 ms: local {result['local_hybrid_search']['p50_ms']}/{result['local_hybrid_search']['p95_ms']}, "
        f"Qdrant local mode {result['qdrant_local_mode_hybrid_search']['p50_ms']}/{result['qdrant_local_mode_hybrid_search']['p95_ms']} "
        f"({result['qdrant_timed_questions']} questions)",
        f"  same top-5 as the local backend: {result['same_top5_as_local']:.1%} of {result['questions']} questions",
        f"  per passage: dense {p['dense_bytes']:.0f} B, {p['sentences_per_passage']} sentence vectors "
        f"{p['sentence_multivector_bytes']:.0f} B, sparse {p['sparse_terms']} terms {p['sparse_bytes']:.0f} B, "
        f"payload {p['payload_bytes']:.0f} B",
        f"  on disk: Qdrant local mode {result['local_mode_folder_mb']} MB, local backend {result['local_index_folder_mb']} MB",
    ])


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--passages", type=int, default=10_000)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results-qdrant.json")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="ks-bench-qdrant-") as tmp:
        result = run(args.passages, Path(tmp))
    result["machine"] = machine()
    args.out.write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    print(table(result))
    print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
