"""The peer to beat: LangChain's default pipeline on the same model, timed in turns with the product.

LangChain's default question answering over documents is a
``RecursiveCharacterTextSplitter`` (1000/200), ``HuggingFaceEmbeddings`` (the
same sentence-transformers folder the product exports, run in PyTorch as
LangChain runs it) and a ``FAISS`` vector store (``IndexFlatL2``), asked with
``similarity_search(question, k=4)``. It is built here from the same passages
(under 1000 characters, so the splitter leaves each whole) and the same vectors
as the product's index at that size, so both search the same corpus; only the
question is embedded live, by each in its own way.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

import numpy as np


def langchain_search(model_path: str, texts: Sequence[str], vectors: np.ndarray) -> Callable[[str], object]:
    """``similarity_search`` of a LangChain FAISS store over ``texts`` with their ``vectors``."""
    import torch
    from langchain_community.vectorstores import FAISS
    from langchain_huggingface import HuggingFaceEmbeddings

    # fp32, as the product's reference: the folder stores fp16, which PyTorch would otherwise run slowly on a CPU
    embeddings = HuggingFaceEmbeddings(model_name=model_path, model_kwargs={"device": "cpu", "model_kwargs": {"dtype": torch.float32}})
    store = FAISS.from_embeddings(list(zip(texts, vectors.tolist())), embeddings)
    return lambda question: store.similarity_search(question, k=4)


def in_turns(contenders: dict[str, Callable[[str], object]], questions: Sequence[str], rounds: int = 2) -> dict[str, dict[str, float]]:
    """p50/p95 ms of each contender, taking turns on every question (a rotating order) so all see the same load."""
    names = list(contenders)
    for fn in contenders.values():
        fn(questions[0])
    samples: dict[str, list[float]] = {name: [] for name in names}
    turn = 0
    for _ in range(rounds):
        for question in questions:
            for name in names[turn % len(names):] + names[: turn % len(names)]:
                started = time.perf_counter()
                contenders[name](question)
                samples[name].append(time.perf_counter() - started)
            turn += 1
    return {name: {"p50_ms": round(1000 * float(np.median(s)), 2), "p95_ms": round(1000 * float(np.percentile(s, 95)), 2)}
            for name, s in samples.items()}
