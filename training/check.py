"""Check the training questions against their texts: every gold phrase must be quoted verbatim."""

from __future__ import annotations

import json
import sys
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT.parent))

from assistant.ingest.sources import read_document, scan_sources  # noqa: E402

LANGS = {"no", "nn", "en"}


def _fold(text: str) -> str:
    return " ".join(text.split()).casefold()


def main(names: list[str]) -> int:
    files, skipped = scan_sources(ROOT / "texts")
    for s in skipped:
        print(f"text skipped: {s.source}: {s.reason}")
    lines_of = {}
    for f in files:
        doc = read_document(f)
        lines_of[f.source] = [_fold(line) for line in doc.text.split("\n")[doc.body_line:]]
    paths = [ROOT / "questions" / n for n in names] if names else sorted((ROOT / "questions").glob("*.jsonl"))
    errors, seen, counts = [], set(), Counter()
    for path in paths:
        for n, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if not raw.strip():
                continue
            where = f"{path.name}:{n}"
            try:
                q = json.loads(raw)
            except json.JSONDecodeError as exc:
                errors.append(f"{where}: not JSON ({exc})")
                continue
            qid = q.get("id")
            if not qid or qid in seen:
                errors.append(f"{where}: missing or repeated id {qid!r}")
            seen.add(qid)
            if q.get("lang") not in LANGS:
                errors.append(f"{where}: lang must be one of {sorted(LANGS)}")
            if not str(q.get("question", "")).strip():
                errors.append(f"{where}: empty question")
            source = q.get("source")
            if source not in lines_of:
                errors.append(f"{where}: source {source!r} is not a file in texts/")
                continue
            expected = q.get("expected", [])
            tags = q.get("tags", [])
            if "unanswerable" in tags:
                counts["unanswerable"] += 1
                if expected:
                    errors.append(f"{where}: an unanswerable question has no expected phrases")
                continue
            counts["in_scope"] += 1
            counts[q["lang"]] += 1
            if not expected:
                errors.append(f"{where}: no expected phrase (tag it 'unanswerable' if the text does not answer)")
            if q.get("list") and len(expected) < 2:
                errors.append(f"{where}: a list question names one phrase per item (at least two)")
            if "followup" in tags and not q.get("history"):
                errors.append(f"{where}: a follow-up needs its history")
            for phrase in expected:
                folded = _fold(phrase)
                if len(folded) < 4:
                    errors.append(f"{where}: expected phrase {phrase!r} is too short to mean anything")
                elif not any(folded in line for line in lines_of[source]):
                    errors.append(f"{where}: expected phrase not found within one line of {source}: {phrase!r}")
    for e in errors:
        print(e)
    n = counts["in_scope"] or 1
    print(
        f"{len(lines_of)} texts, {counts['in_scope']} in-scope questions "
        f"(en {counts['en'] / n:.0%}, nn {counts['nn'] / n:.0%}), {counts['unanswerable']} unanswerable; "
        f"{len(errors)} problems"
    )
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
