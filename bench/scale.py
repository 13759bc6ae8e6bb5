"""From 1k to 1M passages: a synthetic index saved and loaded like a real one, then queried end to end.

Only the vectors are synthetic: mixtures of three real passage vectors plus a little noise.
"""

from __future__ import annotations

import shutil
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
from scipy import sparse


from common import QUESTION, exact_top, latency, passages, questions, recall_at_10, run_child  # bench/common.py, which puts the project on the path
import peers  # bench/peers.py
from assistant.answering.answer import answer
from assistant.ingest.chunking import Chunk, split_sentences
from assistant.ingest.lexical import analyze
from assistant.models import embedding
from assistant.search.retrieval import CANDIDATES, Retriever
from assistant.settings import Settings
from assistant.storage import store
from assistant.storage.backends.local import LocalGeneration
from assistant.storage.bm25 import LexicalIndex, bm25_weights
from assistant.storage.indexing import background_texts


# ---- scale ----------------------------------------------------------------------------------------


def synthetic_vectors(basis: np.ndarray, n: int, rng: np.random.Generator, noise: float = 0.005) -> np.ndarray:
    """Mixtures of three real passage vectors plus a little noise: on the real embeddings' manifold."""
    basis = np.unique(basis.round(5), axis=0).astype(np.float32)
    out = np.empty((n, basis.shape[1]), np.float32)
    for a in range(0, n, 100_000):
        m = min(100_000, n - a)
        weights = rng.dirichlet(np.full(3, 0.5), m).astype(np.float32)
        mixed = np.einsum("nk,nkd->nd", weights, basis[rng.integers(0, len(basis), (m, 3))])
        mixed += noise * rng.standard_normal(mixed.shape, dtype=np.float32)
        out[a : a + m] = mixed / np.linalg.norm(mixed, axis=1, keepdims=True)
    return out


class CachedQueries:
    """Stands in for the Embedder when only search is timed: questions map to precomputed vectors."""

    def __init__(self, embedder: embedding.Embedder, texts: Iterable[str]) -> None:
        self.fingerprint = embedder.fingerprint
        self._embedder = embedder
        self._vectors = {t: embedder.embed_query(t) for t in texts}

    def embed_query(self, text: str) -> np.ndarray:
        """Also the question without the words naming a meeting, which retrieval embeds in its place."""
        if text not in self._vectors:
            self._vectors[text] = self._embedder.embed_query(text)
        return self._vectors[text]


def scale_point(work: Path, n: int, basis: np.ndarray, embedder: embedding.Embedder, settings: Settings,
                asks: Sequence[int]) -> dict[str, object]:
    """One corpus size end to end: a synthetic index saved and loaded like a real one, then queried."""
    rng = np.random.default_rng(n)
    texts = passages(n, seed=n, compounds=0.1)
    vectors = synthetic_vectors(basis, n, rng)
    root = work / f"index-{n}"
    started = time.perf_counter()
    lexical = LexicalIndex.build(texts)
    lexical_s = time.perf_counter() - started
    chunks = [Chunk(text=t, source=f"synthetic-{i // 200:04d}.txt", start_line=i % 200 + 1, end_line=i % 200 + 1)
              for i, t in enumerate(texts)]
    arrays = sentence_arrays(texts, vectors, embedder, rng)
    manifest = store.Manifest(model=settings.model, model_fingerprint=embedder.fingerprint, dim=embedder.dim,
                              chunker={}, sources={})
    started = time.perf_counter()
    store.save_index(root, manifest, chunks, arrays, lexical)
    save_s = time.perf_counter() - started
    started = time.perf_counter()
    retriever = Retriever.load(root, settings=settings)
    load_s = time.perf_counter() - started
    qs = questions()
    comparison, _ = dense_comparison(vectors, np.stack([embedder.embed_query(q) for q in qs]))
    point = {
        "passages": n,
        "dense_index": retriever.stored.manifest.dense_index,
        "lexical_build_s": round(lexical_s, 2),
        "save_s": round(save_s, 2),
        "load_s": round(load_s, 3),
        "answer_end_to_end": latency(lambda q: answer(q, retriever), qs),
        "embed_query": latency(embedder.embed_query, qs),
        "hybrid_search": latency(Retriever(root, retriever.stored, CachedQueries(embedder, qs)).run, qs),
        "lexical_score_all": latency(retriever.stored.lexical.score_all, qs),
        **comparison,
    }
    if n in asks:
        seconds, rss, _ = run_child(["ask", QUESTION, "--index", str(root)])
        point["ask_process_s"], point["ask_peak_rss_mb"] = round(seconds, 2), rss
        peer = peers.langchain_search(embedding.resolve_model(settings.model, settings.cache_dir), texts, vectors)
        point["versus_langchain"] = peers.in_turns({"product": lambda q: answer(q, retriever), "langchain": peer}, qs)
    shutil.rmtree(root)
    return point


def sentence_arrays(texts: list[str], vectors: np.ndarray, embedder: embedding.Embedder,
                     rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Per-sentence vectors near their passage's vector, laid out as the real build lays them out."""
    counts = np.array([len(split_sentences(t)) or 1 for t in texts])
    offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    sentences = np.repeat(vectors, counts, axis=0)
    sentences += 0.02 * rng.standard_normal(sentences.shape, dtype=np.float32)
    sentences /= np.linalg.norm(sentences, axis=1, keepdims=True)
    background = embedder.embed_passages(background_texts())
    return {"vectors": vectors, "sentences": sentences, "sentence_offsets": offsets, "background": background}


def dense_comparison(vectors: np.ndarray, queries: np.ndarray, flat_queries: int = 0) -> tuple[dict[str, object], object]:
    """Exact (flat) against approximate (IVF) search at one size; also returns the IVF index."""
    exact = exact_top(vectors, queries, 10)
    flat, _ = store.make_dense_index(vectors, flat_limit=len(vectors))
    flat_latency = latency(lambda q: flat.search(q[None], CANDIDATES), queries[: flat_queries or len(queries)])
    del flat
    started = time.perf_counter()
    ivf, kind = store.make_dense_index(vectors, flat_limit=0)
    build_s = time.perf_counter() - started
    _, top10 = ivf.search(queries, 10)
    _, top50 = ivf.search(queries, CANDIDATES)
    return {
        "flat_search": flat_latency,
        "ivf": kind,
        "ivf_build_s": round(build_s, 1),
        "ivf_search": latency(lambda q: ivf.search(q[None], CANDIDATES), queries),
        "ivf_recall_at_10": recall_at_10(top10, exact),
        "ivf_recall_at_10_rescored": recall_at_10(_rescored(vectors, queries, top50), exact),
    }, ivf


def _rescored(vectors: np.ndarray, queries: np.ndarray, found: np.ndarray) -> np.ndarray:
    """What retrieval does with the candidates: exact cosines from the stored vectors, best first."""
    scores = np.einsum("qkd,qd->qk", vectors[found], queries)
    scores[found < 0] = -np.inf
    return np.take_along_axis(found, np.argsort(-scores, axis=1), axis=1)


def synthetic_lexical(n: int, rng: np.random.Generator, sample: int = 20_000) -> LexicalIndex:
    """BM25 postings for n passages, terms and lengths drawn from those of generated passages.

    Building from text would take minutes at 1M; the postings have the same
    term-frequency and length distribution, which is what query cost depends on.
    """
    analysed = [analyze(t) for t in passages(sample, seed=7, compounds=0.1)]
    counts = Counter(term for terms in analysed for term in terms)
    terms = sorted(counts)
    share = np.array([counts[t] for t in terms], np.float64)
    lengths = rng.choice(np.array([len(a) for a in analysed]), n)
    columns = rng.choice(len(terms), int(lengths.sum()), p=share / share.sum())
    rows = np.repeat(np.arange(n), lengths)
    tf = sparse.csr_matrix((np.ones(len(columns), np.float32), (rows, columns)), shape=(n, len(terms)))
    tf.sum_duplicates()
    return LexicalIndex(bm25_weights(tf, 1.2, 0.75), terms, compounds={}, forms={})  # no compound parts: a lower bound


def million_point(work: Path, n: int, basis: np.ndarray, embedder: embedding.Embedder, settings: Settings) -> dict[str, object]:
    """Search alone (no embedding, no answer rendering) over synthetic vectors and postings."""
    rng = np.random.default_rng(n)
    started = time.perf_counter()
    vectors = synthetic_vectors(basis, n, rng)
    qs = questions()
    comparison, ivf = dense_comparison(vectors, np.stack([embedder.embed_query(q) for q in qs]), flat_queries=10)
    lexical = synthetic_lexical(n, rng)
    texts = passages(1000, seed=8)
    chunks = [Chunk(text=texts[i % len(texts)], source=f"synthetic-{i // 1000:04d}.txt", start_line=1, end_line=1)
              for i in range(n)]
    manifest = store.Manifest(model=settings.model, model_fingerprint=embedder.fingerprint, dim=embedder.dim,
                              chunker={}, sources={}, chunks=n)
    background = embedder.embed_passages(background_texts())
    stored = LocalGeneration(work, manifest, chunks, vectors, ivf, lexical, vectors, np.arange(n + 1), background)
    prepared = time.perf_counter() - started
    retriever = Retriever(work, stored, CachedQueries(embedder, qs))
    return {
        "passages": n,
        "prepare_s": round(prepared, 1),
        "hybrid_search": latency(retriever.run, qs),
        "lexical_score_all": latency(lexical.score_all, qs),
        **comparison,
        "synthetic": "vectors: mixtures of 3 real passage vectors + N(0, 0.005) noise, normalised; "
        "postings: drawn from the term and length distribution of generated passages; one sentence per passage",
    }


