"""What the benchmarks share: the generated corpus and questions, timing, child processes, the machine.

Every corpus is generated from the bundled meeting text, so a fresh clone needs only `make install`;
nothing is read from ../shared.
"""

from __future__ import annotations

import json
import os
import platform
import random
import re
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from assistant.ingest.chunking import split_sentences  # noqa: E402


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
    proc = subprocess.run([sys.executable, "-c", CHILD, *args], cwd=ROOT, env=child_env(), capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if proc.returncode:
        raise RuntimeError(f"python -m assistant {' '.join(args)} failed ({proc.returncode}): {proc.stderr[-500:]}")
    return seconds, peak_mb(proc.stderr), proc.stdout


def peak_mb(status: str) -> float:
    """VmHWM from /proc/<pid>/status text: the peak resident memory since exec, in kB."""
    return round(int(re.findall(r"VmHWM:\s+(\d+) kB", status)[-1]) / 1024, 1)


def child_env() -> dict[str, str]:
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


def median(values: Sequence[float]) -> float:
    return round(float(np.median(values)), 2)
