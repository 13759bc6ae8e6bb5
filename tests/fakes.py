"""Small fakes for fast unit tests of retrieval and answers: no model is loaded.

``WordEmbedder`` stands in for the embedding model: a text's vector is the
normalised sum of one fixed random vector per word, so texts that share words
are close and texts that share none are nearly orthogonal. ``word_index``
builds a real index generation (real chunks, BM25, FAISS, store) from it.
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Mapping, Sequence
from datetime import date
from pathlib import Path

import numpy as np

from assistant.ingest.chunking import chunk_document, sentence_spans
from assistant.storage.backends.local import LocalGeneration
from assistant.storage.bm25 import LexicalIndex
from assistant.search.ranking import Decline, Models, Ranker
from assistant.search.retrieval import Retriever
from assistant.ingest.sources import Document
from assistant.storage.store import Manifest, load_index, save_index

DIM = 1024
# Two meetings: KS with the government (a paragraph, a list, a quote) and a town council.
KS = "ks-konsultasjonsmote.txt"
BY = "bergvik-bystyre.txt"
TEXTS = {
    KS: (
        "Møte med regjeringen\n\n"
        "KS krevde mer penger til barnevernet. Kostnadene til barnevernet økte med to milliarder kroner i fjor,\n"
        "og kommunene bærer dem alene.\n\n"
        "KS pekte på flere tiltak:\n"
        "• Politiet må få flere ressurser.\n"
        "• Kommunene må styrke SLT-samarbeidet.\n"
        "• Staten må betale for tolketjenester.\n\n"
        "– Vi må handle nå, sa Helgesen.\n"
    ),
    BY: "Budsjett\n\nBystyret vedtok budsjettet for skolene. Kostnadene økte.\n\nBystyret diskuterte også veiene i sentrum.\n",
}
MEETINGS = {
    KS: {"title": "KS konsultasjonsmøte", "date": "2024-04-26", "kind": "konsultasjonsmøte", "body": "KS"},
    BY: {"title": "Bergvik bystyre", "date": "2025-03-01", "kind": "kommunestyre", "body": "Bergvik bystyre"},
}
BACKGROUND = ["The weather in Bergen tomorrow is rain.", "Install Python on Windows with the installer."]


class WordEmbedder:
    """Bag-of-words vectors; remembers every text it was asked to embed."""

    dim = DIM
    fingerprint = "words-1024"

    def __init__(self) -> None:
        self.asked: list[str] = []

    def embed_query(self, text: str) -> np.ndarray:
        self.asked.append(text)
        return embed(text)

    def embed_passages(self, texts: Sequence[str], progress: bool = False) -> np.ndarray:
        return np.array([embed(t) for t in texts], np.float32).reshape(len(texts), DIM)


def embed(text: str) -> np.ndarray:
    vector = np.zeros(DIM, np.float32)
    for word in re.findall(r"\w+", text.lower()):
        vector += np.random.default_rng(zlib.crc32(word.encode())).standard_normal(DIM).astype(np.float32)
    norm = np.linalg.norm(vector)
    return vector / norm if norm else vector


def word_index(
    root: Path,
    texts: Mapping[str, str],
    meetings: Mapping[str, Mapping[str, str]] | None = None,
    flat_limit: int = 20_000,
    fingerprint: str = WordEmbedder.fingerprint,
    unit: str = "line",
) -> Path:
    """Chunk, embed and save ``texts`` (file name -> text) as a new index generation in ``root``."""
    meetings = meetings or {}
    chunks = [c for source, text in texts.items() for c in chunk_document(Document(source, text, "x", unit=unit))]
    vectors = np.array([embed(c.embed_text) for c in chunks], np.float32).reshape(len(chunks), DIM)
    sentences = [[embed(c.text[a:b]) for a, b in sentence_spans(c.text)] for c in chunks]
    offsets = np.cumsum([0, *map(len, sentences)]).astype(np.int64)
    arrays = {
        "vectors": vectors,
        "sentences": np.array([v for per in sentences for v in per], np.float32).reshape(-1, DIM),
        "sentence_offsets": offsets,
        "background": np.array([embed(t) for t in BACKGROUND], np.float32),
    }
    manifest = Manifest(
        model="words",
        model_fingerprint=fingerprint,
        dim=DIM,
        chunker={},
        sources={source: {"meeting": dict(meetings.get(source, {}))} for source in texts},
    )
    save_index(root, manifest, chunks, arrays, LexicalIndex.build([c.embed_text for c in chunks]), flat_limit)
    return root


# A hand-set ranking: 0.3 x the passage's cosine + 0.7 x its best sentence's, a little BM25, and a strong
# preference for the meeting a question names, so that each piece of evidence shows in a tiny corpus.
RANKER = Ranker(weights={"passage": 0.3, "sentence": 0.7, "lexical": 0.1, "meeting": 0.5})
ALWAYS = Models(RANKER, Decline(weights={}, bias=10.0))  # the texts always answer
NEVER = Models(RANKER, Decline(weights={}, bias=-10.0))  # the texts never answer


def word_retriever(root: Path, models: Models = ALWAYS, embedder: WordEmbedder | None = None) -> Retriever:
    """A real Retriever over a word index; "i fjor" means 2025."""
    return Retriever(root, load_index(root, LocalGeneration), embedder or WordEmbedder(), models, today=lambda: date(2026, 11, 27))  # type: ignore[arg-type]



class KeywordReader:
    """A stand-in for the trained reader: a sentence answers (probability 0.9) when it holds all of the
    question's words of ``answers`` (a keyword -> marker map), else 0.1. Records what it was asked."""

    def __init__(self, answers: dict[str, str]) -> None:
        self.answers = answers
        self.asked: list[tuple[str, str]] = []

    def score(self, question: str, passages: list[str]) -> np.ndarray:
        self.asked += [(question, p) for p in passages]
        wanted = [marker for keyword, marker in self.answers.items() if keyword in question.casefold()]
        return np.array([0.9 if wanted and all(m in p for m in wanted) else 0.1 for p in passages], np.float32)


def reading_retriever(root: Path, reader: object, reading: object, models: Models = ALWAYS) -> Retriever:
    """A word retriever with a reader and the decisions it is used with."""
    import dataclasses

    return Retriever(root, load_index(root, LocalGeneration), WordEmbedder(), dataclasses.replace(models, reading=reading),  # type: ignore[arg-type]
                     today=lambda: date(2026, 11, 27), reader=reader)  # type: ignore[arg-type]
