"""Same answers in 4-bit: the bank answered at q4 and at fp32, question by question.

For each precision the bank's ten texts (and the bundled one) are indexed in a
temporary folder and every question of the bank is answered. Printed: the
share of questions whose top 5 passages are identical and in the same order
(and how many also show the same lines of them), and the
quality table of both halves at both precisions. Questions are the bank's, so
this is a check of the product, not a tuning run: nothing here feeds back.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from assistant.answering.answer import answer  # noqa: E402
from assistant.quality.evaluation import evaluate, load_questions, load_split, prepare_corpus  # noqa: E402
from assistant.storage.indexing import build_index  # noqa: E402
from assistant.search.retrieval import Retriever  # noqa: E402
from assistant.settings import Settings  # noqa: E402

BANK = ROOT / "tests" / "eval"
CORPUS = (BANK / "texts", ROOT / "assistant" / "data" / "corpus")
FIGURES = ("hit@1", "hit@3", "MRR", "document@1", "declined", "wrongly declined", "extracts (one answer)", "extract precision")


def run(work: Path, precisions: tuple[str, ...] = ("fp32", "q4")) -> dict[str, object]:
    questions = load_questions(BANK / "questions")
    split = load_split(BANK / "split.json")
    sources = prepare_corpus(list(CORPUS), work / "sources")
    tops: dict[str, list[list[tuple[str, int]]]] = {}
    spans: dict[str, list[list[tuple[int, int]]]] = {}
    halves: dict[str, dict[str, dict[str, float]]] = {}
    for precision in precisions:
        settings = Settings.from_env(index=work / f"index-{precision}", sources=sources, precision=precision)
        build_index(settings, progress=lambda *_: None)
        retriever = Retriever.load(settings.index, settings=settings)
        hits = [answer(q.question, retriever, history=q.history).hits[:5] for q in questions]
        tops[precision] = [[(h.source, h.chunk_id) for h in top] for top in hits]
        spans[precision] = [[(h.start_line, h.end_line) for h in top] for top in hits]
        halves[precision] = {name: _figures(evaluate(retriever, split.half(questions, name), modes=("hybrid",)))
                             for name in ("tune", "test")}
    first, second = precisions
    same = sum(a == b for a, b in zip(tops[first], tops[second]))
    lines = sum(a == b and c == d for a, b, c, d in zip(tops[first], tops[second], spans[first], spans[second]))
    return {"questions": len(questions), "top5_identical": same, "share": round(same / len(questions), 4),
            "top5_identical_with_lines": lines, "halves": halves}


def _figures(report) -> dict[str, float]:  # report: evaluation.Report
    scores = report.modes["hybrid"]["all"]
    value = lambda figure: round(figure.value, 3) if figure else float("nan")  # noqa: E731
    return dict(zip(FIGURES, (value(scores.hit_at_1), value(scores.hit_at_3), value(scores.mrr_at_5),
                              value(scores.document_at_1), value(report.declined), value(report.wrongly_declined),
                              value(report.extracts_one_answer), value(report.extract_precision))))


def table(result: dict[str, object]) -> str:
    halves = result["halves"]
    precisions = list(halves)
    lines = [f"same answers: top 5 identical for {result['top5_identical']} of {result['questions']} bank questions "
             f"({result['share']:.1%}), {precisions[1]} against {precisions[0]}; "
             f"with the same extract lines as well: {result['top5_identical_with_lines']}",
             f"  {'':<24}" + "".join(f"{f'{half} {p}':>12}" for half in ("tune", "test") for p in precisions)]
    for figure in FIGURES:
        lines.append(f"  {figure:<24}" + "".join(f"{halves[p][half][figure]:>12}" for half in ("tune", "test") for p in precisions))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "precision.json")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="ks-precision-") as tmp:
        result = run(Path(tmp))
    args.out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(table(result))
    print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
