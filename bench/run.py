"""`make bench`: start-up, embedding speed, query latency, recall and memory from 1k to 1M passages, and load.

Prints a table and writes bench/results.json (git-ignored; the path is printed).
Every corpus is generated from the bundled text, so a fresh clone needs only
`make install`. The machine is small and shared: figures are medians with p95
beside them, and the embedding speeds are ratios measured in one run, with
plain PyTorch and the product's q4 and fp32 paths taking turns block by
block so that all see the same load.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import random
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import warnings
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

import numpy as np
from scipy import sparse

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import load  # noqa: E402  (bench/load.py, beside this file)
import peers  # noqa: E402
import query_embedding  # noqa: E402
from assistant import embedding, store  # noqa: E402
from assistant.answer import answer  # noqa: E402
from assistant.backends.local import LocalGeneration  # noqa: E402
from assistant.chunking import Chunk, split_sentences  # noqa: E402
from assistant.indexing import background_texts  # noqa: E402
from assistant.bm25 import LexicalIndex, bm25_weights  # noqa: E402
from assistant.lexical import analyze  # noqa: E402
from assistant.retrieval import CANDIDATES, Retriever  # noqa: E402
from assistant.settings import Settings  # noqa: E402

ENV = {"GRADIO_ANALYTICS_ENABLED": "False", "HF_HUB_OFFLINE": "1", "HF_HUB_DISABLE_TELEMETRY": "1"}
QUESTION = "Hva krevde KS om SLT?"
MAX_CHARS = 500  # the chunker's default extract size


# ---- corpus ---------------------------------------------------------------------------------------


def bundled_units() -> tuple[list[str], list[str]]:
    """Paragraphs and sentences of the bundled meeting texts, whitespace-normalised."""
    text = "\n\n".join(p.read_text(encoding="utf-8") for p in sorted((ROOT / "assistant" / "data" / "corpus").glob("*.txt")))
    paragraphs = [" ".join(p.split()) for p in re.split(r"\n\s*\n", text) if len(p.split()) > 3]
    return paragraphs, [s for p in paragraphs for s in split_sentences(p)]


def passages(n: int, seed: int, compounds: float = 0.0) -> list[str]:
    """Shuffled sentences and whole paragraphs, 1 to 6 sentences long, at most MAX_CHARS.

    With ``compounds`` > 0 that share of words is glued to another word, Norwegian
    style, so a large corpus gets the long tail of rare terms a real archive has.
    """
    rng = random.Random(seed)
    paragraphs, sentences = bundled_units()
    words = sorted({w for s in sentences for w in s.split() if w.isalpha() and len(w) > 3})
    out = []
    while len(out) < n:
        if rng.random() < 0.2:
            picked = split_sentences(rng.choice(paragraphs))
        else:
            picked = rng.sample(sentences, rng.choice((1, 1, 2, 2, 3, 4, 6)))
        text = _fit(picked)
        if compounds:
            text = " ".join(_glue(w, rng, words) if rng.random() < compounds else w for w in text.split())
        out.append(text)
    return out


def _fit(sentences: Sequence[str]) -> str:
    text = sentences[0][:MAX_CHARS]
    for sentence in sentences[1:]:
        if len(text) + 1 + len(sentence) > MAX_CHARS:
            break
        text += " " + sentence
    return text


def _glue(word: str, rng: random.Random, words: Sequence[str]) -> str:
    return word + rng.choice(("", "s", "e")) + rng.choice(words).lower() if word.isalpha() else word


def questions() -> list[str]:
    """The project's own held-out and out-of-scope questions, Norwegian and English."""
    lines = []
    for name in ("heldout.jsonl", "calibration.jsonl"):
        lines += (ROOT / "tests" / name).read_text(encoding="utf-8").splitlines()
    return [json.loads(line)["question"] for line in lines if line.strip()]


# ---- measuring ------------------------------------------------------------------------------------


def timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def latency(fn: Callable[[object], object], items: Sequence[object], rounds: int = 2) -> dict[str, float]:
    """p50/p95 in milliseconds over every item, after one untimed warm-up call."""
    fn(items[0])
    samples = [timed(lambda: fn(item)) for _ in range(rounds) for item in items]
    return {"p50_ms": round(1000 * float(np.median(samples)), 2), "p95_ms": round(1000 * float(np.percentile(samples, 95)), 2)}


def recall_at_10(found: np.ndarray, exact: np.ndarray) -> float:
    return round(float(np.mean([len(set(f[:10]) & set(e[:10])) / 10 for f, e in zip(found, exact)])), 3)


def exact_top(vectors: np.ndarray, queries: np.ndarray, k: int) -> np.ndarray:
    """Ids of the k best vectors per query by brute force, best first: the ground truth for recall."""
    scores = np.concatenate([queries @ vectors[a : a + 200_000].T for a in range(0, len(vectors), 200_000)], axis=1)
    top = np.argpartition(-scores, k, axis=1)[:, :k]
    return np.take_along_axis(top, np.argsort(-np.take_along_axis(scores, top, 1), axis=1), 1)


# The child reports its own peak: rusage of a child also counts the parent's memory it ran in before exec.
CHILD = (
    "import atexit, runpy, sys\n"
    "atexit.register(lambda: print(next(l for l in open('/proc/self/status') if l.startswith('VmHWM')), file=sys.stderr))\n"
    "sys.argv[0] = 'assistant'\n"
    "runpy.run_module('assistant', run_name='__main__')\n"
)


def run_child(args: Sequence[str]) -> tuple[float, float, str]:
    """Wall seconds, peak RSS in MB and stdout of one `python -m assistant ...` process."""
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", CHILD, *args], cwd=ROOT, env=_env(), capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if proc.returncode:
        raise RuntimeError(f"python -m assistant {' '.join(args)} failed ({proc.returncode}): {proc.stderr[-500:]}")
    return seconds, _peak_mb(proc.stderr), proc.stdout


def _peak_mb(status: str) -> float:
    """VmHWM from /proc/<pid>/status text: the peak resident memory since exec, in kB."""
    return round(int(re.findall(r"VmHWM:\s+(\d+) kB", status)[-1]) / 1024, 1)


def _env() -> dict[str, str]:
    return {**os.environ, **ENV}


# ---- machine --------------------------------------------------------------------------------------


def machine() -> dict[str, object]:
    import faiss
    import onnxruntime
    import torch

    model = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                  if line.startswith("model name")), platform.processor())
    return {
        "cpu": model,
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "faiss_threads": faiss.omp_get_max_threads(),
        "memory_gb": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
        "python": platform.python_version(),
        "versions": {"torch": torch.__version__, "onnxruntime": onnxruntime.__version__, "faiss": faiss.__version__,
                     "numpy": np.__version__},
    }


# ---- cold start -----------------------------------------------------------------------------------


def cold_start(work: Path, repeats: int) -> dict[str, object]:
    """Process start to first answer (CLI, both precisions) and to the app accepting and answering."""
    result: dict[str, object] = {"repeats": repeats}
    for precision in embedding.PRECISIONS:
        index = str(work / f"bundled-{precision}")
        seconds, rss, _ = run_child(["build", "--index", index, "--sources", str(ROOT / "assistant" / "data" / "corpus"), "--precision", precision])
        asks = [run_child(["ask", QUESTION, "--index", index, "--precision", precision]) for _ in range(repeats)]
        result[precision] = {"bundled_build_s": round(seconds, 2), "bundled_build_peak_rss_mb": rss,
                             "ask_first_answer_s": _median([a[0] for a in asks]),
                             "ask_peak_rss_mb": max(a[1] for a in asks)}
    app = [_app_start(work / "bundled-q4") for _ in range(repeats)]
    result["app_accepting_s"] = _median([a["accepting_s"] for a in app])
    result["app_first_answer_s"] = _median([a["first_answer_s"] for a in app])
    result["app_peak_rss_mb"] = max(a["peak_rss_mb"] for a in app)
    return result


def _app_start(index: Path) -> dict[str, float]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"http://127.0.0.1:{port}/"
    start = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "assistant", "serve", "--index", str(index), "--sources",
                             str(ROOT / "assistant" / "data" / "corpus"), "--port", str(port)], cwd=ROOT, env=_env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait_until(lambda: _get(url + "gradio_api/info"), proc, 180)
        accepting = time.perf_counter() - start
        _ask_app(url, QUESTION)
        first_answer = time.perf_counter() - start
        rss = _peak_mb(Path(f"/proc/{proc.pid}/status").read_text())
    finally:
        proc.terminate()
        proc.wait(30)
    return {"accepting_s": accepting, "first_answer_s": first_answer, "peak_rss_mb": rss}


def _wait_until(ready: Callable[[], bool], proc: subprocess.Popen, limit: float) -> None:
    deadline = time.monotonic() + limit
    while not ready():
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError("the app did not start")
        time.sleep(0.05)


def _get(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


def _ask_app(url: str, question: str) -> str:
    """Gradio's REST protocol: POST the call, then read its event stream until 'complete'."""
    request = urllib.request.Request(url + "gradio_api/call/chat", json.dumps({"data": [question, None]}).encode(),
                                     {"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=120) as response:
        event = json.loads(response.read())["event_id"]
    with urllib.request.urlopen(f"{url}gradio_api/call/chat/{event}", timeout=120) as response:
        stream = response.read().decode()
    if "event: complete" not in stream:
        raise RuntimeError(f"the app did not answer: {stream[:200]}")
    return stream


# ---- embedding throughput -------------------------------------------------------------------------


def throughput(settings: Settings, n: int, block: int) -> tuple[dict[str, object], np.ndarray]:
    """Passages per second of both product paths (ONNX Runtime q4 and fp32) and plain PyTorch ``encode``.

    The three take turns per block, in a rotating order, so each sees the same load.
    """
    texts = passages(n, seed=1)
    plain = embedding.load_model(settings.model, settings.cache_dir)
    product = {p: embedding.Embedder(settings.replace(precision=p)) for p in embedding.PRECISIONS}
    prefixed = [settings.passage_prefix + t for t in texts]
    encoders: dict[str, Callable[[slice], np.ndarray]] = {
        "pytorch": lambda part: plain.encode(prefixed[part]),
        **{p: (lambda part, e=e: e.embed_passages(texts[part])) for p, e in product.items()},
    }
    names = list(encoders)
    for encode in encoders.values():
        encode(slice(0, 8))
    spent = dict.fromkeys(names, 0.0)
    out: dict[str, list[np.ndarray]] = {name: [] for name in names}
    for turn, start in enumerate(range(0, n, block)):
        part = slice(start, start + block)
        for name in names[turn % len(names):] + names[: turn % len(names)]:
            spent[name] += timed(lambda: out[name].append(encoders[name](part)))
    vectors = {name: np.concatenate(parts) for name, parts in out.items()}
    reference = vectors["pytorch"] / np.linalg.norm(vectors["pytorch"], axis=1, keepdims=True)
    result: dict[str, object] = {
        "passages": n, "mean_chars": round(float(np.mean([len(t) for t in texts])), 1), "block": block,
        "pytorch_plain_encode_per_s": round(n / spent["pytorch"], 1),
    }
    for p in product:
        cosine = (reference * vectors[p]).sum(axis=1)
        result[p] = {"per_s": round(n / spent[p], 1), "ratio_to_pytorch": round(spent["pytorch"] / spent[p], 2),
                     "cosine_to_pytorch": {"min": round(float(cosine.min()), 4), "mean": round(float(cosine.mean()), 4)}}
    return result, vectors[settings.precision]


def variants(settings: Settings, n: int, block: int) -> list[dict[str, object]]:
    """The candidates tried for faster embedding, each as a ratio to plain fp32 on the same blocks."""
    import torch

    texts = [settings.passage_prefix + t for t in passages(n, seed=2)]
    plain = embedding.load_model(settings.model, settings.cache_dir)
    fp32 = embedding.load_onnx(settings.model, settings.cache_dir, "fp32")
    q4 = embedding.load_onnx(settings.model, settings.cache_dir, "q4")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch_int8 = torch.ao.quantization.quantize_dynamic(
            copy.deepcopy(plain), {torch.nn.Linear: torch.ao.quantization.per_channel_dynamic_qconfig}, dtype=torch.qint8
        )
    candidates: dict[str, Callable[[list[str]], np.ndarray]] = {
        "fp32 encode, batch 32 (plain)": plain.encode,
        "fp32 encode, batch 8": lambda b: plain.encode(b, batch_size=8),
        "fp32 encode, 1 thread": lambda b: _threads(1, lambda: plain.encode(b)),
        "torch int8 dynamic (per channel)": torch_int8.encode,
        "onnxruntime fp32, batch 8": fp32.encode,
        "onnxruntime q4, batch 32": lambda b: q4.encode(b, batch_size=32),
        "onnxruntime q4, batch 8 (default)": q4.encode,
    }
    reference = [plain.encode(texts[a : a + block], normalize_embeddings=True) for a in range(0, n, block)]
    rows = []
    for name, encode in candidates.items():
        encode(texts[:8])
        ratios, cosines = [], []
        for i, a in enumerate(range(0, n, block)):
            batch = texts[a : a + block]
            base = timed(lambda: plain.encode(batch))
            out: list[np.ndarray] = []
            took = timed(lambda: out.append(np.asarray(encode(batch), np.float32)))
            ratios.append(base / took)
            got = out[0] / np.linalg.norm(out[0], axis=1, keepdims=True)
            cosines.append((got * reference[i]).sum(axis=1))
        rows.append({"variant": name, "ratio_to_fp32": round(float(np.median(ratios)), 2),
                     "cosine_min": round(float(np.concatenate(cosines).min()), 4)})
    return rows


def _threads(count: int, fn: Callable[[], np.ndarray]) -> np.ndarray:
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        return fn()
    finally:
        torch.set_num_threads(before)


def build(work: Path, n: int) -> dict[str, object]:
    """A real `python -m assistant build` of n generated passages in 10 documents: speed and peak memory."""
    sources = work / "build-sources"
    sources.mkdir()
    texts = passages(n, seed=3)
    for doc in range(10):
        (sources / f"mote-{doc:02d}.txt").write_text("\n\n".join(texts[doc::10]) + "\n", encoding="utf-8")
    seconds, rss, out = run_child(["build", "--index", str(work / "build-index"), "--sources", str(sources), "--json"])
    report = json.loads(out)
    return {"passages": report["chunks_total"], "process_s": round(seconds, 1), "build_s": report["seconds"],
            "passages_per_s": round(report["chunks_total"] / report["seconds"], 1), "peak_rss_mb": rss,
            "note": "also embeds every sentence of multi-sentence passages, as the product does"}


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
    arrays = _sentence_arrays(texts, vectors, embedder, rng)
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


def _sentence_arrays(texts: list[str], vectors: np.ndarray, embedder: embedding.Embedder,
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


# ---- report ---------------------------------------------------------------------------------------


def _median(values: Sequence[float]) -> float:
    return round(float(np.median(values)), 2)


def table(results: dict[str, object]) -> str:
    m, c, t, b = results["machine"], results["cold_start"], results["throughput"], results["build"]
    lines = [
        f"machine: {m['cpu']}, {m['cores']} cores, {m['memory_gb']} GB; torch threads {m['torch_threads']}, "
        f"faiss threads {m['faiss_threads']}; load average {m['load_average_at_start']} -> {m['load_average_at_end']}",
        f"precision: {results['precision']}; ONNX exports {results['onnx_exports']}",
        "",
        "cold start (median of %d)                   seconds   peak RSS MB" % c["repeats"],
        *(f"  ask: process start -> answer ({p:<4})      {c[p]['ask_first_answer_s']:>7}   {c[p]['ask_peak_rss_mb']:>8}"
          for p in embedding.PRECISIONS),
        f"  app: process start -> accepting          {c['app_accepting_s']:>7}",
        f"  app: process start -> 1st answer         {c['app_first_answer_s']:>7}   {c['app_peak_rss_mb']:>8}",
        "",
        f"embedding {t['passages']} passages (mean {t['mean_chars']} chars), turns of {t['block']}",
        f"  plain PyTorch SentenceTransformer.encode  {t['pytorch_plain_encode_per_s']:>7} passages/s",
        *(f"  {p} in ONNX Runtime (product)            {t[p]['per_s']:>7} passages/s = {t[p]['ratio_to_pytorch']}x; "
          f"cosine to PyTorch min {t[p]['cosine_to_pytorch']['min']}, mean {t[p]['cosine_to_pytorch']['mean']}"
          for p in embedding.PRECISIONS),
        f"  build: {b['passages']} passages in {b['build_s']} s = {b['passages_per_s']} passages/s "
        f"(with their sentences), peak RSS {b['peak_rss_mb']} MB",
        "",
        "embedding variants (ratio to plain fp32, same texts, taking turns)",
    ]
    lines += [f"  {v['variant']:<36} {v['ratio_to_fp32']:>5}x  cosine min {v['cosine_min']}" for v in results["variants"]]
    lines += ["", *query_embedding.table(results["query_embedding"])]
    lines += ["", "query latency p50/p95 ms     passages  dense index           answer e2e    embed  hybrid search"
                  "  lexical    flat       IVF  recall@10 IVF (rescored)"]
    for p in results["scale"] + ([results["million"]] if "million" in results else []):
        e2e = _pp(p["answer_end_to_end"]) if "answer_end_to_end" in p else "-"
        embed = str(p["embed_query"]["p50_ms"]) if "embed_query" in p else "-"
        lines.append(
            f"  {p['passages']:>35,}  {p.get('dense_index', 'IVF (search only)'):<20} {e2e:>12} {embed:>8} "
            f"{_pp(p['hybrid_search']):>14} {_pp(p['lexical_score_all']):>10} {_pp(p['flat_search']):>11} "
            f"{_pp(p['ivf_search']):>9}  {p['ivf_recall_at_10']} ({p['ivf_recall_at_10_rescored']})"
        )
    for p in results["scale"]:
        if "ask_peak_rss_mb" in p:
            lines.append(f"  ask at {p['passages']:,} passages: {p['ask_process_s']} s, peak RSS {p['ask_peak_rss_mb']} MB")
        if "versus_langchain" in p:
            ours, theirs = p["versus_langchain"]["product"], p["versus_langchain"]["langchain"]
            lines.append(f"  at {p['passages']:,} passages, in turns: answer {_pp(ours)} ms against LangChain's default "
                         f"pipeline {_pp(theirs)} ms = {ours['p50_ms'] / theirs['p50_ms']:.2f}x")
    if "million" in results:
        lines.append(f"  1M is search alone on synthetic data: {results['million']['synthetic']}")
    lines += ["", load.table(results["load"])]
    return "\n".join(lines)


def _pp(latency_ms: dict[str, float]) -> str:
    return f"{latency_ms['p50_ms']}/{latency_ms['p95_ms']}"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes only, for a smoke run (about a minute)")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results.json")
    args = parser.parse_args(argv)
    settings = Settings.from_env()
    sizes = (1_000, 10_000) if args.quick else (1_000, 10_000, 100_000)
    results: dict[str, object] = {"machine": machine(), "precision": embedding.precision_of(settings)}
    export_s = timed(lambda: [embedding.ensure_exported(settings.model, settings.cache_dir, p) for p in embedding.PRECISIONS])
    results["onnx_exports"] = f"made now in {export_s:.0f} s (once per model)" if export_s > 1 else "cached"
    with tempfile.TemporaryDirectory(prefix="ks-bench-") as tmp:
        work = Path(tmp)
        _step("cold start")
        results["cold_start"] = cold_start(work, repeats=1 if args.quick else 3)
        _step(f"load: {load.CLIENTS} concurrent clients, /api/answer and /chat")
        results["load"] = load.run(work / "bundled-q4", rounds=1 if args.quick else 3, seconds=3 if args.quick else 5)
        _step("query embedding: q4, fp32, q4 with int8 activations, int8")
        results["query_embedding"] = query_embedding.run(settings, questions(), work, rounds=1 if args.quick else 3)
        _step("embedding throughput")
        results["throughput"], basis = throughput(settings, n=200 if args.quick else 2000, block=100 if args.quick else 200)
        results["variants"] = variants(settings, n=64 if args.quick else 400, block=32 if args.quick else 100)
        results["build"] = build(work, n=100 if args.quick else 600)
        embedder = embedding.Embedder(settings)
        results["scale"] = []
        for n in sizes:
            _step(f"{n:,} passages")
            results["scale"].append(scale_point(work, n, basis, embedder, settings, asks=[sizes[-1]]))
        if not args.quick:
            _step("1,000,000 passages (search only)")
            results["million"] = million_point(work, 1_000_000, basis, embedder, settings)
    results["machine"]["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    args.out.write_text(json.dumps(results, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    print(table(results))
    print(f"\nwrote {args.out}")
    return 0


def _step(name: str) -> None:
    print(f"[bench] {time.strftime('%H:%M:%S')} {name}", file=sys.stderr, flush=True)


if __name__ == "__main__":
    sys.exit(main())
