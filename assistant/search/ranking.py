"""The learned decisions: how passages are ranked, whether the texts answer, and how the reader is used.

The first two are small linear models over a handful of evidence features;
``Reading`` holds the depth and thresholds for the trained reader. All are
fitted by ``python -m assistant tune`` on the tune half of the evaluation bank
only and stored in ``data/ranking.json`` (with how they were chosen), so the
figures on the test half stay honest. Nothing here needs scikit-learn at run time.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from ..settings import DATA

RANK_FEATURES = ("passage", "sentence", "lexical", "lexical_en", "meeting")
DECLINE_FEATURES = ("sentence", "margin", "coverage", "coverage_no", "lexical", "english", "missing")
READ_FEATURES = (*DECLINE_FEATURES, "reader")  # with the reader's verdict on the first hits
DATA_FILE = DATA / "ranking.json"


@dataclass(frozen=True)
class Ranker:
    """Orders candidate passages: a weighted sum of their features, or reciprocal-rank fusion.

    Features, per passage: ``passage`` its own cosine to the question,
    ``sentence`` its best sentence's cosine, ``lexical`` the share of the
    question's attainable BM25 score it reaches, ``lexical_en`` the same times
    how English the question looks (BM25 helps little with English questions),
    ``meeting`` 1 if its document is (one of) the meeting(s) the question names
    best, else 0. With ``meeting_filter`` the passages of the
    best-matching documents rank above all others.
    """

    kind: str = "linear"  # "linear" or "rrf"
    weights: dict[str, float] = field(default_factory=lambda: {"passage": 0.3, "sentence": 0.7, "lexical": 0.1})
    rrf_k: float = 60.0
    meeting_filter: bool = False

    def score(self, features: dict[str, np.ndarray]) -> np.ndarray:
        if self.kind == "rrf":
            scores = sum(1.0 / (self.rrf_k + _ranks(features[name])) for name in self.weights if self.weights[name])
        else:
            scores = sum(weight * features[name] for name, weight in self.weights.items() if weight)
        scores = np.asarray(scores, dtype=np.float32)
        if self.meeting_filter and "meeting" in features and len(scores):
            best = features["meeting"].max()
            scores = np.where(features["meeting"] >= best, scores, scores - 1e3).astype(np.float32)
        return scores


@dataclass(frozen=True)
class Decline:
    """Logistic model of "the texts answer this question", from question-level evidence.

    ``sentence``: the best sentence cosine among the first hits; ``margin``: that
    minus the best cosine to generic off-topic text; ``coverage``: the idf-weighted
    share of the question's words the texts contain (leaving out the words that
    name a meeting), ``coverage_no`` the same for Norwegian questions only (the
    Norwegian texts hardly contain an English question's words); ``lexical``: the
    best hit's BM25 share; ``english``: how English the question looks.
    """

    weights: dict[str, float] = field(default_factory=lambda: {"margin": 20.0, "coverage": 4.0})
    bias: float = -3.0
    threshold: float = 0.5

    def probability(self, features: dict[str, float]) -> float:
        z = self.bias + sum(w * features[name] for name, w in self.weights.items())
        return 1.0 / (1.0 + math.exp(-max(-60.0, min(60.0, z))))

    def answers(self, features: dict[str, float]) -> bool:
        return self.probability(features) >= self.threshold


@dataclass(frozen=True)
class Reading:
    """How the reader's probabilities are used (``reading.py``), when a trained reader is there."""

    depth: int = 6  # hits read, from the retriever's first
    sentences: int = 3  # sentences read per hit, closest to the retriever's best sentence first
    weight: float = 0.0  # how much the retriever's score adds to the reader's log-odds when ordering
    decline: Decline = Decline(weights={"reader": 1.0}, bias=0.0)  # whether the texts answer, with the reader's verdict
    show: float = 0.5  # a further extract is shown when its probability reaches this ...
    margin: float = 2.0  # ... and its log-odds are within this of the best's


@dataclass(frozen=True)
class Models:
    ranker: Ranker = Ranker()
    decline: Decline = Decline()
    provenance: dict[str, object] = field(default_factory=dict)
    reading: Reading | None = None  # None: tune found that the reader does not beat the ranking alone

    def to_json(self) -> dict[str, object]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, object]) -> Models:
        ranker = dict(data.get("ranker") or {})
        decline = dict(data.get("decline") or {})
        unknown = set(ranker.get("weights", {})) - set(RANK_FEATURES)
        unknown |= set(decline.get("weights", {})) - set(DECLINE_FEATURES)
        reading = dict(data["reading"]) if data.get("reading") else None
        if reading and "decline" in reading:
            unknown |= set(reading["decline"].get("weights", {})) - set(READ_FEATURES)
            reading["decline"] = Decline(**reading["decline"])
        if unknown:
            raise ValueError(f"unknown features in the ranking file: {sorted(unknown)}")
        return cls(Ranker(**ranker), Decline(**decline), dict(data.get("provenance") or {}), Reading(**reading) if reading else None)

    def save(self, path: Path) -> None:
        path.write_text(json.dumps(self.to_json(), ensure_ascii=False, indent=2) + "\n", encoding="utf-8")


def load_models(path: Path | None = None) -> Models:
    """The fitted models shipped with the package, or those in ``path``."""
    text = (path or DATA_FILE).read_text(encoding="utf-8")
    return Models.from_json(json.loads(text))


def _ranks(values: np.ndarray) -> np.ndarray:
    """1 for the largest value; ties share the better rank (all passages without a word rank alike)."""
    from scipy.stats import rankdata

    return rankdata(-np.asarray(values, dtype=np.float64), method="min")
