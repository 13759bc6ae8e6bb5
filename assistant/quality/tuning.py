"""Choose and fit the ranking and the decline decision by cross-validation on the tune half only.

``python -m assistant tune`` reads the question bank and its split, keeps the
tune half (the test half is never loaded past the split), and for each
candidate ranking method runs leave-one-document-out cross-validation: fit on
the questions of all tune documents but one, measure on that one. The method
with the best cross-validated MRR wins unless a method with fewer parameters
is within one standard error of it. The decline model is a logistic regression
over question-level evidence, its threshold set so that at most MAX_WRONGLY of
the in-scope questions are declined in cross-validation. Both are written to
``data/ranking.json`` with the table that chose them.
"""

from __future__ import annotations

import hashlib
import itertools
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from ..answering.answer import decline_features
from .evaluation import Question, Split, is_right
from ..models.reader import Reader
from ..search.ranking import DECLINE_FEATURES, RANK_FEATURES, READ_FEATURES, Decline, Models, Ranker, Reading
from ..search.retrieval import Hit, Retriever, named_sources

MAX_WRONGLY = 0.03
SHARES = np.round(np.linspace(0.0, 1.0, 11), 2)  # of the best sentence's cosine in the dense mix
WEIGHTS = (0.0, 0.01, 0.02, 0.03, 0.05, 0.08, 0.12, 0.2, 0.3)  # added evidence; cosines differ by hundredths


@dataclass
class Case:
    """One tune question's candidate passages: their features and which of them answer it."""

    question: Question
    features: dict[str, np.ndarray]
    gold: np.ndarray


def collect(retriever: Retriever, questions: Sequence[Question]) -> list[Case]:
    cases = []
    stored = retriever.stored
    for q in questions:
        named = retriever.named_meeting(stored, q.question, q.history)
        focus = named.rest or q.question
        vector = retriever.query_vector(focus, q.history)
        lex_query = " ".join([*q.history[-1:], focus])
        ids, features = retriever.features(stored, vector, q.question, lex_query, named_sources(stored, named))
        gold = np.array([is_right(_as_hit(chunk), q) for chunk in stored.chunks_at([int(i) for i in ids])], dtype=bool)
        cases.append(Case(q, features, gold))
    return cases


def evidence(retriever: Retriever, questions: Sequence[Question], ranker: Ranker) -> np.ndarray:
    """Each question's decline features, from the hits of the given ranker."""
    rows = [decline_features(retriever.run(q.question, k=5, history=q.history, ranker=ranker)) for q in questions]
    return np.array([[row[n] for n in DECLINE_FEATURES] for row in rows])


def _as_hit(chunk) -> Hit:  # type: ignore[no-untyped-def]
    return Hit(chunk.text, chunk.source, chunk.start_line, chunk.end_line, 0.0)


def reciprocal_rank(ranker: Ranker, case: Case) -> float:
    if not case.gold.any():
        return 0.0
    order = np.argsort(-ranker.score(case.features), kind="stable")
    first = int(np.flatnonzero(case.gold[order])[0]) + 1
    return 1.0 / first if first <= 5 else 0.0


def mrr(ranker: Ranker, cases: Sequence[Case]) -> float:
    return float(np.mean([reciprocal_rank(ranker, c) for c in cases])) if cases else 0.0


def hit_at_1(ranker: Ranker, cases: Sequence[Case]) -> float:
    return float(np.mean([reciprocal_rank(ranker, c) == 1.0 for c in cases])) if cases else 0.0


Fitter = Callable[[Sequence[Case]], Ranker]


def _grid(added: Sequence[str] = (), meeting_filter: bool = False) -> Fitter:
    """(1 - s) * passage + s * sentence + w * each added feature, s and w from small grids, best MRR."""

    def fit(cases: Sequence[Case]) -> Ranker:
        best, best_score = None, -1.0
        for share, *extra in itertools.product(SHARES, *([WEIGHTS] * len(added))):
            weights = {"passage": round(1.0 - float(share), 2), "sentence": float(share)}
            weights.update({name: float(w) for name, w in zip(added, extra)})
            ranker = Ranker(weights=weights, meeting_filter=meeting_filter)
            score = mrr(ranker, cases)
            if score > best_score + 1e-12:
                best, best_score = ranker, score
        assert best is not None
        return best

    return fit


def _pairwise(names: Sequence[str], meeting_filter: bool = False) -> Fitter:
    """Logistic regression on (gold - other) feature differences within each question: a linear ranker."""

    def fit(cases: Sequence[Case]) -> Ranker:
        from sklearn.linear_model import LogisticRegression

        rows = []
        for case in cases:
            if not case.gold.any() or case.gold.all():
                continue
            matrix = np.column_stack([case.features[n] for n in names])
            for g in np.flatnonzero(case.gold):
                for o in np.flatnonzero(~case.gold):
                    rows.append(matrix[g] - matrix[o])
        if not rows:  # no question has both a right and a wrong candidate: nothing to learn from
            return Ranker(weights={n: 1.0 for n in names}, meeting_filter=meeting_filter)
        x = np.asarray(rows)
        x = np.vstack([x, -x])
        y = np.r_[np.ones(len(rows)), np.zeros(len(rows))]
        model = LogisticRegression(fit_intercept=False, C=1.0, max_iter=1000).fit(x, y)
        return Ranker(weights={n: round(float(w), 4) for n, w in zip(names, model.coef_[0])}, meeting_filter=meeting_filter)

    return fit


def _fixed(ranker: Ranker) -> Fitter:
    return lambda cases: ranker


METHODS: dict[str, tuple[int, Fitter]] = {
    "dense only (passage cosine)": (0, _fixed(Ranker(weights={"passage": 1.0}))),
    "lexical only (BM25 share)": (0, _fixed(Ranker(weights={"lexical": 1.0}))),
    "RRF, passage + lexical (k=60)": (0, _fixed(Ranker(kind="rrf", weights={"passage": 1.0, "lexical": 1.0}))),
    "dense mix (passage, best sentence)": (1, _grid()),
    "dense mix + lexical": (2, _grid(["lexical"])),
    "dense mix + lexical + lexical_en": (3, _grid(["lexical", "lexical_en"])),
    "dense mix + meeting boost": (2, _grid(["meeting"])),
    "dense mix + lexical + meeting boost": (3, _grid(["lexical", "meeting"])),
    "dense mix, meeting filter": (1, _grid(meeting_filter=True)),
    "dense mix + lexical, meeting filter": (2, _grid(["lexical"], meeting_filter=True)),
    "logistic pairwise, all five features": (5, _pairwise(list(RANK_FEATURES))),
    "logistic pairwise, meeting filter": (5, _pairwise([f for f in RANK_FEATURES if f != "meeting"], meeting_filter=True)),
}


def cross_validate(cases: Sequence[Case], fitter: Fitter) -> np.ndarray:
    """Leave one tune document out: each question's reciprocal rank under a ranker fitted without its document."""
    documents = sorted({c.question.source for c in cases if c.question.source})
    ranks = np.zeros(len(cases))
    for held_out in documents:
        train = [c for c in cases if c.question.source != held_out]
        ranker = fitter(train)
        for i, case in enumerate(cases):
            if case.question.source == held_out:
                ranks[i] = reciprocal_rank(ranker, case)
    return ranks


def choose_ranker(cases: Sequence[Case], report: Callable[[str], None] = print) -> tuple[Ranker, list[dict[str, object]]]:
    """Cross-validate every method; the best MRR wins, or the simplest within one paired standard error of it.

    The standard error is that of the per-question differences to the best
    method, since all methods answer the same questions.
    """
    ranks = {name: cross_validate(cases, fitter) for name, (_, fitter) in METHODS.items()}
    best = max(ranks, key=lambda name: ranks[name].mean())
    table = []
    for name, (parameters, _) in METHODS.items():
        difference = ranks[best] - ranks[name]
        row = {
            "method": name,
            "parameters": parameters,
            "cv_mrr": round(float(ranks[name].mean()), 4),
            "cv_hit_at_1": round(float(np.mean(ranks[name] == 1.0)), 4),
            "behind_best": round(float(difference.mean()), 4),
            "paired_se": round(float(difference.std(ddof=1) / np.sqrt(len(difference))), 4) if len(difference) > 1 else 0.0,
        }
        table.append(row)
        report(
            f"  {name:<48} params {parameters}  CV MRR {row['cv_mrr']:.3f}  hit@1 {row['cv_hit_at_1']:.3f}"
            f"  behind best {row['behind_best']:.3f} ± {row['paired_se']:.3f}"
        )
    simplest = min(
        (r for r in table if r["behind_best"] <= r["paired_se"]),  # type: ignore[operator]
        key=lambda r: (r["parameters"], -r["cv_mrr"]),  # type: ignore[index,operator]
    )
    simplest["chosen"] = True
    report(f"  chosen: {simplest['method']}")
    return METHODS[str(simplest["method"])][1](cases), table


def reachable(case: Case, signed: bool = False, names: Sequence[str] = RANK_FEATURES) -> bool:
    """Whether some weighting of the features puts a right passage strictly first.

    A linear program per right passage: find weights in [0, 1] (with
    ``signed``, in [-1, 1]) maximising the smallest margin of that passage over
    every wrong one; it is reachable when that margin is positive.
    """
    from scipy.optimize import linprog

    matrix = np.column_stack([case.features[n] for n in names]).astype(np.float64)
    wrong = matrix[~case.gold]
    if not len(wrong):
        return bool(case.gold.any())
    objective = np.r_[np.zeros(len(names)), -1.0]  # maximise the margin t
    bounds = [(-1.0 if signed else 0.0, 1.0)] * len(names) + [(None, 1.0)]
    for g in np.flatnonzero(case.gold):
        rows = np.hstack([wrong - matrix[g], np.ones((len(wrong), 1))])  # w·(wrong - right) + t <= 0
        result = linprog(objective, A_ub=rows, b_ub=np.zeros(len(wrong)), bounds=bounds)
        if result.success and -result.fun > 1e-9:
            return True
    return False


def ceiling(cases: Sequence[Case], signed: bool = False) -> float:
    """Share of the questions for which some weighting of the features ranks a right passage first.

    No ranker that weighs these features (with weights of any sign, when
    ``signed``) can pass it on these questions, even one fitted to each
    question alone: it says how much better weights could still give before
    the evidence itself must improve.
    """
    return float(np.mean([reachable(c, signed) for c in cases])) if cases else 0.0


def fit_decline(x: np.ndarray, y: np.ndarray, names: Sequence[str] = DECLINE_FEATURES) -> tuple[Decline, dict[str, object]]:
    """Logistic regression on question-level evidence; threshold from cross-validated in-scope probabilities."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold

    mean, scale = x.mean(axis=0), x.std(axis=0) + 1e-9
    z = (x - mean) / scale
    probabilities = np.zeros(len(y))
    for train, test in StratifiedKFold(n_splits=5, shuffle=True, random_state=0).split(z, y):
        model = LogisticRegression(class_weight="balanced", max_iter=1000).fit(z[train], y[train])
        probabilities[test] = model.predict_proba(z[test])[:, 1]
    inside = np.sort(probabilities[y])
    threshold = float(inside[int(np.floor(MAX_WRONGLY * len(inside)))]) if len(inside) else 0.5
    model = LogisticRegression(class_weight="balanced", max_iter=1000).fit(z, y)
    weights = model.coef_[0] / scale
    bias = float(model.intercept_[0] - np.sum(model.coef_[0] * mean / scale))
    decline = Decline(
        weights={n: round(float(w), 5) for n, w in zip(names, weights)},
        bias=round(bias, 5),
        threshold=round(threshold, 5),
    )
    cv = {
        "cv_out_of_scope_declined": round(float(np.mean(probabilities[~y] < threshold)), 4) if (~y).any() else None,
        "cv_in_scope_wrongly_declined": round(float(np.mean(probabilities[y] < threshold)), 4),
        "in_scope": int(y.sum()),
        "out_of_scope": int((~y).sum()),
    }
    return decline, cv


DEPTHS = (4, 6, 8)  # hits the reader reads; each costs one short pass per sentence
READ_WEIGHTS = (0.0, 5.0, 10.0, 20.0, 40.0, 80.0, 1e4)  # of the retriever's score beside the reader's log-odds (1e4: its order)
MARGINS = (0.5, 1.0, 2.0, 3.0, 5.0, float("inf"))  # log-odds below the best at which an extract still shows


@dataclass
class ReadCase:
    """One tune question's first hits as the reader saw them: probability, retriever score, right or not,
    and the question's decline evidence with the reader's verdict."""

    question: Question
    probability: np.ndarray
    score: np.ndarray
    right: np.ndarray
    features: dict[str, float]


def collect_reads(
    retriever: Retriever, reader: Reader, questions: Sequence[Question], ranker: Ranker, depth: int = max(DEPTHS)
) -> list[ReadCase]:
    from ..answering.answer import dedupe
    from ..answering.reading import read_hits

    reading = Reading(depth=depth)
    cases = []
    for q in questions:
        search = retriever.run(q.question, k=depth, history=q.history, ranker=ranker)
        reads = read_hits(reader, q.question, q.history, dedupe(search.hits), reading)
        cases.append(ReadCase(
            q,
            np.array([r.probability for r in reads], np.float64),
            np.array([r.hit.score for r in reads], np.float64),
            np.array([bool(q.expected) and is_right(r.hit, q) for r in reads], dtype=bool),
            decline_features(search, reads),
        ))
    return cases


def _logits(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, 1e-6, 1 - 1e-6)
    return np.log(p / (1 - p))


def read_mrr(case: ReadCase, depth: int, weight: float) -> float:
    """Reciprocal rank of the first right hit after reading the first ``depth`` (the rest keep their order)."""
    n = min(depth, len(case.probability))
    order = list(np.argsort(-(_logits(case.probability[:n]) + weight * case.score[:n]), kind="stable")) + list(range(n, len(case.right)))
    rank = next((r for r, i in enumerate(order[:5], 1) if case.right[i]), None)
    return 1.0 / rank if rank else 0.0


def fit_reading(cases: Sequence[ReadCase], report: Callable[[str], None] = print) -> tuple[Reading | None, dict[str, object]]:
    """Depth and weight by MRR on the tune half: the cheapest within a standard error of the best, and the
    cheapest of all is not to read (the retriever's own order, weight 1e4), so the reader is used only when
    it ranks better by more than a standard error. Then the answer threshold so that at most MAX_WRONGLY
    of the in-scope questions are declined, and the margin of further extracts by the F1 of extract
    precision and of the answer being shown."""
    inside = [c for c in cases if c.question.expected]
    table = []
    for depth, weight in itertools.product(DEPTHS, READ_WEIGHTS):
        per_question = np.array([read_mrr(case, depth, weight) for case in inside])
        table.append({"depth": depth, "weight": weight, "cv_mrr": round(float(per_question.mean()), 4),
                      "se": round(float(per_question.std() / np.sqrt(len(per_question))), 4)})
        report(f"  reader depth {depth}, weight {weight:g}: MRR {table[-1]['cv_mrr']:.3f} ± {table[-1]['se']:.3f}")
    best = max(table, key=lambda row: row["cv_mrr"])
    simple = min((row for row in table if row["cv_mrr"] >= best["cv_mrr"] - best["se"]),
                 key=lambda row: (row["weight"] != READ_WEIGHTS[-1], row["depth"], row["weight"]))
    depth, weight = int(simple["depth"]), float(simple["weight"])
    used = weight != READ_WEIGHTS[-1]
    report(f"  best reading MRR {best['cv_mrr']:.3f} ± {best['se']:.3f}; chosen depth {depth}, weight {weight:g}"
           f" -> the reader is {'used' if used else 'not used (the retriever order is within a standard error)'}")
    labels = np.array([bool(c.question.expected) for c in cases])
    decline, decline_cv = fit_decline(np.array([[c.features[n] for n in READ_FEATURES] for c in cases]), labels, READ_FEATURES)
    report(f"  decline with the reader: {decline_cv}")
    inside_top = np.sort([c.probability[:depth].max(initial=0.0) for c in inside])
    answers = float(inside_top[int(np.floor(MAX_WRONGLY * len(inside_top)))]) if len(inside_top) else 0.5
    margins = []
    for margin in MARGINS:
        precision, shown_right = [], []
        for case in inside:
            if case.question.list:
                continue
            n = min(depth, len(case.probability))
            logit = _logits(case.probability[:n]) + weight * case.score[:n]
            order = np.argsort(-logit, kind="stable")
            if not n or case.probability[order[0]] < answers:
                continue
            best_logit = _logits(case.probability[order[:1]])[0]
            show = [order[0]] + [i for i in order[1:] if case.probability[i] >= answers and _logits(case.probability[i:i + 1])[0] >= best_logit - margin]
            precision += [bool(case.right[i]) for i in show]
            shown_right.append(any(case.right[i] for i in show))
        p, r = float(np.mean(precision)), float(np.mean(shown_right))
        margins.append({"margin": margin, "precision": round(p, 4), "answer_shown": round(r, 4), "f1": round(2 * p * r / (p + r), 4)})
        report(f"  extracts within {margin:g} log-odds of the best: precision {p:.3f}, answer shown {r:.3f}")
    chosen = max(margins, key=lambda row: row["f1"])
    reading = Reading(depth=depth, weight=weight, decline=decline, show=round(answers, 5),
                      margin=float(chosen["margin"]) if np.isfinite(chosen["margin"]) else 99.0)
    cv = {
        "used": used,
        "reader_cv": table,
        "chosen": {"depth": depth, "weight": weight},
        "margins": [{**row, "margin": row["margin"] if np.isfinite(row["margin"]) else "inf"} for row in margins],
        "decline_cv": decline_cv,
    }
    report(f"  reader: {reading}")
    return (reading if used else None), cv


def tune(
    retriever: Retriever,
    questions: Sequence[Question],
    split: Split,
    report: Callable[[str], None] = print,
    reader: Reader | None = None,
) -> Models:
    """Fit the models on the tune half (with ``reader``, also whether and how to use it); the provenance
    records exactly which questions were used."""
    tune_half = split.half(questions, "tune")
    report(f"tune half: {sum(bool(q.expected) for q in tune_half)} in scope, {sum(not q.expected for q in tune_half)} out of scope")
    cases = collect(retriever, [q for q in tune_half if q.expected])
    ranker, table = choose_ranker(cases, report)
    top = {"weights_0_to_1": round(ceiling(cases), 4), "weights_any_sign": round(ceiling(cases, signed=True), 4)}
    report(
        f"  ceiling of hit@1 for any weighting of these features, even one per question: {top['weights_0_to_1']:.3f}"
        f" (weights of any sign: {top['weights_any_sign']:.3f})"
    )
    labels = np.array([bool(q.expected) for q in tune_half])
    decline, decline_cv = fit_decline(evidence(retriever, tune_half, ranker), labels)
    report(f"  decline: {decline_cv}")
    reading, reading_cv = None, None
    if reader is not None:
        reading, reading_cv = fit_reading(collect_reads(retriever, reader, tune_half, ranker), report)
    ids = sorted(q.id for q in tune_half)
    provenance = {
        "fitted": time.strftime("%Y-%m-%d"),
        "tune_documents": sorted(split.tune_documents),
        "questions": len(ids),
        "question_ids_sha256": hashlib.sha256("\n".join(ids).encode()).hexdigest(),
        "ranking_cv": table,
        "ranking_ceiling_hit_at_1": top,
        "decline_cv": decline_cv,
        "reading_cv": reading_cv,
    }
    return Models(ranker, decline, provenance, reading)
