"""Train the reader: a cross-encoder that reads a question and one sentence together and says whether it answers.

The model is the bundled multilingual e5's first ``layers`` layers, LoRA
adapters on the top ``trained`` of them, and a one-logit head on the first
token. Everything below the adapted layers is frozen, so its output for every
pair is computed once and kept (as float16), and an epoch runs only the top
layers: on two CPU cores that is the difference between hours and minutes.
What is shipped is the adapter and the head, well under a megabyte.

Pairs come from ``mining``: every sentence of the first extracts the product's
retriever finds for a training question, labelled by whether it holds a gold
phrase. The loss is binary cross-entropy, so the output is a probability the
answer step can threshold. A run is seeded, shows progress, saves a checkpoint
after every epoch (and resumes from it), and writes its figures next to the
model it writes.
"""

from __future__ import annotations

import json
import math
import random
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from ...models.reader import CONFIG_FILE, HEAD_FILE, PairEncoder, ReaderConfig, adapt, load_encoder, passage_text, pooled, question_text
from .frozen import FrozenStates, Progress, additive
from .mining import Mined



@dataclass(frozen=True)
class TrainSettings:
    epochs: int = 3
    batch_size: int = 32
    learning_rate: float = 3e-4
    head_learning_rate: float = 1e-3
    weight_decay: float = 0.01
    negatives: int = 8  # per question, the hardest first
    positives: int = 3
    seed: int = 20261202
    threads: int = 2


@dataclass
class Pairs:
    """Every (question, sentence) pair of a mined set, once, and for each question its positives and negatives
    in the retriever's order (indices into ``texts``)."""

    texts: list[tuple[str, str]]
    positives: list[list[int]]
    negatives: list[list[int]]
    where: list[list[tuple[int, int, int]]]  # per pair: (question, candidate, sentence) it stands for


def all_pairs(mined: Sequence[Mined], depth: int | None = None) -> Pairs:
    index: dict[tuple[str, str], int] = {}
    pairs = Pairs([], [], [], [])

    def add(question: str, passage: str, place: tuple[int, int, int]) -> int:
        key = (question, passage)
        if key not in index:
            index[key] = len(pairs.texts)
            pairs.texts.append(key)
            pairs.where.append([])
        pairs.where[index[key]].append(place)
        return index[key]

    for qi, m in enumerate(mined):
        question = question_text(m.question, m.history)
        positives, negatives = [], []
        for ci, c in enumerate(m.candidates[:depth] if depth else m.candidates):
            for si, (sentence, label) in enumerate(zip(c.sentences, c.labels)):
                at = add(question, passage_text(c.context, sentence), (qi, ci, si))
                (positives if label and m.in_scope else negatives).append(at)
        positives = list(dict.fromkeys(positives))
        pairs.positives.append(positives)
        pairs.negatives.append([n for n in dict.fromkeys(negatives) if n not in positives])
    return pairs


def sample(pairs: Pairs, settings: TrainSettings, rng: random.Random) -> list[tuple[int, float]]:
    """Positives (capped) and negatives of each question: the retriever's first ones, then others at random.

    The first are the hardest: sentences about the same thing as the answer, often beside it, that do not answer.
    """
    chosen: list[tuple[int, float]] = []
    for positives, negatives in zip(pairs.positives, pairs.negatives):
        head, tail = negatives[: settings.negatives // 2], negatives[settings.negatives // 2 :]
        tail = rng.sample(tail, min(len(tail), settings.negatives - len(head)))
        chosen += [(p, 1.0) for p in rng.sample(positives, min(len(positives), settings.positives))]
        chosen += [(n, 0.0) for n in head + tail]
    return chosen


# ---- the model ---------------------------------------------------------------------------------------


def frozen_pairs(encoder, pairs: PairEncoder, config: ReaderConfig, texts: Sequence[tuple[str, str]], batch: int = 64) -> FrozenStates:
    """The frozen lower layers' output for every (question, sentence) pair."""
    ids = [row[row_mask == 1] for text in texts for row, row_mask in zip(*pairs.encode([text[0]], [text[1]]))]
    return FrozenStates(encoder, ids, config.layers - config.trained, pairs.pad_id, batch)


def top_logits(model, head, config: ReaderConfig, hidden, mask, dropout=None):
    """The adapted top layers over the frozen states, then the head on the first token."""
    attend = additive(mask)
    layers = model.base_model.model.encoder.layer
    for layer in layers[config.layers - config.trained :]:
        hidden = layer(hidden, attend)
    summary = pooled(hidden, mask, config.pooling)
    if dropout is not None:
        summary = dropout(summary)
    return head(summary).squeeze(-1)


# ---- training -------------------------------------------------------------------------------------------


def train(
    base: Path,
    train_set: Sequence[Mined],
    valid_set: Sequence[Mined],
    out: Path,
    config: ReaderConfig,
    settings: TrainSettings = TrainSettings(),
    depth: int = 8,
    log=print,
) -> dict[str, object]:
    """Train, validating after each epoch on ``valid_set`` (its first ``depth`` candidates); every epoch's
    adapter is kept, and the figures say which validated best."""
    import torch
    from tqdm.auto import tqdm

    torch.manual_seed(settings.seed)
    torch.set_num_threads(settings.threads)
    out.mkdir(parents=True, exist_ok=True)
    checkpoint = out / "checkpoint"
    state_file = checkpoint / "state.pt"
    resumed = state_file.exists()
    encoder, pairs = load_encoder(base, config)
    training = all_pairs(train_set)
    validation = all_pairs(valid_set, depth)
    log(f"{len(training.texts)} training pairs, {len(validation.texts)} validation pairs")
    frozen_train = frozen_pairs(encoder, pairs, config, training.texts)
    frozen_valid = frozen_pairs(encoder, pairs, config, validation.texts)
    model, head = adapt(encoder, config, checkpoint if resumed else None)
    dropout = torch.nn.Dropout(0.1)
    lora = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(
        [{"params": lora, "lr": settings.learning_rate}, {"params": list(head.parameters()), "lr": settings.head_learning_rate}],
        weight_decay=settings.weight_decay,
    )
    progress = Progress()
    if resumed:
        state = torch.load(state_file, weights_only=False)
        optimizer.load_state_dict(state["optimizer"])
        progress = Progress(state["epoch"], state["history"])
        log(f"resuming after epoch {progress.epoch}")
    steps_per_epoch = math.ceil(len(sample(training, settings, random.Random(0))) / settings.batch_size)
    total = steps_per_epoch * settings.epochs
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: _warmup_linear(step, total, total // 20))
    for _ in range(progress.epoch * steps_per_epoch):
        schedule.step()
    loss_fn = torch.nn.BCEWithLogitsLoss()
    for epoch in range(progress.epoch + 1, settings.epochs + 1):
        rng = random.Random(settings.seed + epoch)
        chosen = sample(training, settings, rng)
        model.train()
        started, losses = time.monotonic(), []
        batches = _batches(chosen, frozen_train.lengths, settings.batch_size, rng)
        bar = tqdm(batches, desc=f"epoch {epoch}/{settings.epochs}", unit="batch", mininterval=10)
        for batch in bar:
            hidden, mask = frozen_train.batch([row for row, _ in batch])
            logits = top_logits(model, head, config, hidden, mask, dropout)
            loss = loss_fn(logits, torch.tensor([label for _, label in batch]))
            optimizer.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(lora + list(head.parameters()), 1.0)
            optimizer.step()
            schedule.step()
            losses.append(float(loss))
            bar.set_postfix(loss=f"{np.mean(losses[-50:]):.3f}")
        figures = {"epoch": epoch, "loss": round(float(np.mean(losses)), 4), "minutes": round((time.monotonic() - started) / 60, 1)}
        figures.update(validate(valid_set, probabilities(model, head, config, frozen_valid, validation, valid_set)))
        progress.epoch = epoch
        progress.history.append(figures)
        log(json.dumps(figures))
        for folder in (out / f"epoch-{epoch}", checkpoint):
            save(model, head, config, folder)
        torch.save({"optimizer": optimizer.state_dict(), "epoch": epoch, "history": progress.history}, state_file)
    best = max(progress.history, key=lambda f: f["valid_mrr"])
    return {"history": progress.history, "best_epoch": best["epoch"]}


def _warmup_linear(step: int, total: int, warmup: int) -> float:
    if step < warmup:
        return (step + 1) / max(1, warmup)
    return max(0.0, (total - step) / max(1, total - warmup))


def _batches(chosen: Sequence[tuple[int, float]], lengths: np.ndarray, size: int, rng: random.Random) -> list[list[tuple[int, float]]]:
    """Shuffled, then sorted by length within windows of 50 batches: little padding, still mixed."""
    order = list(chosen)
    rng.shuffle(order)
    window = size * 50
    batches = []
    for start in range(0, len(order), window):
        part = sorted(order[start : start + window], key=lambda item: lengths[item[0]])
        batches += [part[i : i + size] for i in range(0, len(part), size)]
    rng.shuffle(batches)
    return batches


def save(model, head, config: ReaderConfig, folder: Path) -> None:
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(folder))
    save_file({k: v.contiguous() for k, v in head.state_dict().items()}, str(folder / HEAD_FILE))
    (folder / CONFIG_FILE).write_text(json.dumps(asdict(config), indent=2) + "\n", encoding="utf-8")


def probabilities(model, head, config: ReaderConfig, frozen: FrozenStates, pairs: Pairs, mined: Sequence[Mined], batch: int = 128):
    """Per question, per candidate, per sentence: the reader's probability that it answers."""
    import torch

    scores = [[[0.0] * len(c.sentences) for c in m.candidates] for m in mined]
    model.eval()
    order = np.argsort(frozen.lengths, kind="stable")
    with torch.inference_mode():
        for start in range(0, len(order), batch):
            rows = [int(r) for r in order[start : start + batch]]
            hidden, mask = frozen.batch(rows)
            probs = torch.sigmoid(top_logits(model, head, config, hidden, mask)).tolist()
            for row, p in zip(rows, probs):
                for qi, ci, si in pairs.where[row]:
                    scores[qi][ci][si] = p
    return scores


def validate(mined: Sequence[Mined], scores: Sequence[Sequence[Sequence[float]]]) -> dict[str, float]:
    """Reranking the scored candidates by their best sentence: hit@1 and MRR against the retriever's own
    order, and how well the best probability separates answerable from unanswerable questions (ROC AUC)."""
    hits, rr, best_in, best_out, base_hits = [], [], [], [], []
    for m, per_candidate in zip(mined, scores):
        scored = [(max(s), c) for s, c in zip(per_candidate, m.candidates) if s]
        top = max((p for p, _ in scored), default=0.0)
        if not m.in_scope:
            best_out.append(top)
            continue
        best_in.append(top)
        ranked = [c for _, c in sorted(scored, key=lambda pc: -pc[0])]
        rank = next((r for r, c in enumerate(ranked, 1) if c.right), None)
        hits.append(rank == 1)
        rr.append(1 / rank if rank else 0.0)
        base_hits.append(bool(m.candidates) and m.candidates[0].right)
    figures = {
        "valid_hit1": round(float(np.mean(hits)), 4),
        "valid_mrr": round(float(np.mean(rr)), 4),
        "valid_retriever_hit1": round(float(np.mean(base_hits)), 4),
    }
    if best_out:
        figures["valid_auc"] = round(auc(best_in, best_out), 4)
    return figures


def auc(positive: Sequence[float], negative: Sequence[float]) -> float:
    from scipy.stats import rankdata

    ranks = rankdata(list(positive) + list(negative))
    n_pos, n_neg = len(positive), len(negative)
    return float((ranks[:n_pos].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))
