"""Fine-tune the retriever: the bundled e5 with LoRA adapters on its top layers, trained contrastively.

Each training question is paired with a passage that answers it and one the
product's own retriever ranked high that does not (a mined hard negative); the
other passages of the batch are negatives too (multiple-negatives ranking
loss, as sentence-transformers' ``MultipleNegativesRankingLoss``). The word
embeddings and the lower layers stay frozen, so their output for every text is
computed once and kept; an epoch runs only the adapted top layers. What ships
is the adapter (about a megabyte, ``assistant/data/retriever/``); the product
merges it into the base weights once, in the cache.
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

from ...ingest.chunking import Chunk
from .frozen import FrozenStates, Progress, additive
from .mining import Mined

CONFIG_FILE = "retriever.json"
LORA_TARGETS = ["query", "key", "value", "dense"]


@dataclass(frozen=True)
class RetrieverConfig:
    trained: int = 4  # top layers with adapters; the 8 below are frozen and cached
    lora_rank: int = 8
    lora_alpha: int = 16
    lora_dropout: float = 0.1
    max_length: int = 256
    query_prefix: str = "query: "
    passage_prefix: str = "passage: "


@dataclass(frozen=True)
class RetrieverTraining:
    epochs: int = 2
    batch_size: int = 32
    learning_rate: float = 2e-4
    weight_decay: float = 0.01
    scale: float = 20.0  # cosine x scale as logits, sentence-transformers' default
    seed: int = 20261202
    threads: int = 2


@dataclass
class Triples:
    """Texts (each once) and, per training question, its text, an answering passage and a hard negative."""

    texts: list[str]
    rows: list[tuple[int, list[int], list[int]]]  # (question, positives, hard negatives), indices into texts


def triples(mined: Sequence[Mined], chunks: Sequence[Chunk], config: RetrieverConfig) -> Triples:
    index: dict[str, int] = {}
    out = Triples([], [])

    def add(text: str) -> int:
        if text not in index:
            index[text] = len(out.texts)
            out.texts.append(text)
        return index[text]

    for m in mined:
        if not m.in_scope:
            continue
        positives = [c.chunk_id for c in m.candidates if any(c.labels)]
        negatives = [c.chunk_id for c in m.candidates if c.rank and not c.right and not any(c.labels)]
        if not positives:
            continue
        question = add(config.query_prefix + m.question.strip())
        pos = [add(config.passage_prefix + chunks[i].embed_text.strip()) for i in dict.fromkeys(positives)]
        neg = [add(config.passage_prefix + chunks[i].embed_text.strip()) for i in dict.fromkeys(negatives)][:4]
        out.rows.append((question, pos, neg))
    return out


def frozen_texts(encoder, tokenizer, config: RetrieverConfig, texts: Sequence[str], batch: int = 32) -> FrozenStates:
    """The frozen lower layers' output for every text."""
    ids = tokenizer(list(texts), truncation=True, max_length=config.max_length)["input_ids"]
    return FrozenStates(encoder, ids, encoder.config.num_hidden_layers - config.trained, tokenizer.pad_token_id, batch)


def embed(model, config: RetrieverConfig, hidden, mask):
    """The adapted top layers, mean pooling over the tokens, unit length: what sentence-transformers computes."""
    import torch

    attend = additive(mask)
    layers = model.base_model.model.encoder.layer
    for layer in layers[len(layers) - config.trained :]:
        hidden = layer(hidden, attend)
    weights = mask.unsqueeze(-1).float()
    pooled = (hidden * weights).sum(1) / weights.sum(1).clamp(min=1.0)
    return torch.nn.functional.normalize(pooled, dim=-1)


def load(base: Path, config: RetrieverConfig, adapter: Path | None = None, trainable: bool = True):
    import torch
    from peft import LoraConfig, PeftModel, get_peft_model
    from transformers import AutoModel, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(base))
    encoder = AutoModel.from_pretrained(str(base), dtype=torch.float32, attn_implementation="eager")
    encoder.requires_grad_(False)
    layers = encoder.config.num_hidden_layers
    if adapter is not None:
        return encoder, PeftModel.from_pretrained(encoder, str(adapter), is_trainable=trainable), tokenizer
    lora = LoraConfig(
        r=config.lora_rank,
        lora_alpha=config.lora_alpha,
        lora_dropout=config.lora_dropout,
        target_modules=LORA_TARGETS,
        layers_to_transform=list(range(layers - config.trained, layers)),
        bias="none",
    )
    return encoder, get_peft_model(encoder, lora), tokenizer


def train(
    base: Path,
    train_set: Triples,
    valid: tuple[list[str], list[str], list[set[int]]] | None,
    out: Path,
    config: RetrieverConfig = RetrieverConfig(),
    settings: RetrieverTraining = RetrieverTraining(),
    log=print,
) -> dict[str, object]:
    """Train, checkpointing every epoch (resumable). ``valid`` is (questions, passages, the right passages of
    each question), all with their prefixes: its hit@1 and MRR by passage cosine are measured every epoch."""
    import torch
    from tqdm.auto import tqdm

    torch.manual_seed(settings.seed)
    torch.set_num_threads(settings.threads)
    out.mkdir(parents=True, exist_ok=True)
    checkpoint = out / "checkpoint"
    state_file = checkpoint / "state.pt"
    resumed = state_file.exists()
    encoder, model, tokenizer = load(base, config, checkpoint if resumed else None)
    frozen = frozen_texts(encoder, tokenizer, config, train_set.texts)
    frozen_valid = frozen_texts(encoder, tokenizer, config, [*valid[0], *valid[1]]) if valid else None
    parameters = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(parameters, lr=settings.learning_rate, weight_decay=settings.weight_decay)
    progress = Progress()
    if resumed:
        state = torch.load(state_file, weights_only=False)
        optimizer.load_state_dict(state["optimizer"])
        progress = Progress(state["epoch"], state["history"])
        log(f"resuming after epoch {progress.epoch}")
    steps = math.ceil(len(train_set.rows) / settings.batch_size)
    total = steps * settings.epochs
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: min(1.0, (s + 1) / max(1, total // 10)) * max(0.0, (total - s) / total))
    for _ in range(progress.epoch * steps):
        schedule.step()
    if frozen_valid is not None and not progress.history:
        log(json.dumps({"epoch": 0, **validate(model, config, frozen_valid, valid)}))
    for epoch in range(progress.epoch + 1, settings.epochs + 1):
        rng = random.Random(settings.seed + epoch)
        rows = list(train_set.rows)
        rng.shuffle(rows)
        model.train()
        started, losses = time.monotonic(), []
        bar = tqdm(range(0, len(rows), settings.batch_size), desc=f"epoch {epoch}/{settings.epochs}", unit="batch", mininterval=10)
        for start in bar:
            batch = rows[start : start + settings.batch_size]
            questions = [q for q, _, _ in batch]
            positives = [rng.choice(p) for _, p, _ in batch]
            negatives = [rng.choice(n) for _, _, n in batch if n]
            q = embed(model, config, *frozen.batch(questions))
            p = embed(model, config, *frozen.batch(positives + negatives))
            logits = settings.scale * q @ p.T
            loss = torch.nn.functional.cross_entropy(logits, torch.arange(len(batch)))
            optimizer.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(parameters, 1.0)
            optimizer.step()
            schedule.step()
            losses.append(float(loss.detach()))
            bar.set_postfix(loss=f"{np.mean(losses[-20:]):.3f}")
        figures = {"epoch": epoch, "loss": round(float(np.mean(losses)), 4), "minutes": round((time.monotonic() - started) / 60, 1)}
        if frozen_valid is not None:
            figures.update(validate(model, config, frozen_valid, valid))
        progress.epoch = epoch
        progress.history.append(figures)
        log(json.dumps(figures))
        for folder in (out / f"epoch-{epoch}", checkpoint):
            save(model, config, folder)
        torch.save({"optimizer": optimizer.state_dict(), "epoch": epoch, "history": progress.history}, state_file)
    return {"history": progress.history}


def validate(model, config: RetrieverConfig, frozen: FrozenStates, valid) -> dict[str, float]:
    import torch

    questions, passages, right = valid
    model.eval()
    vectors = []
    with torch.inference_mode():
        order = np.argsort(frozen.lengths, kind="stable")
        out = np.zeros((len(order), 384), np.float32)
        for start in range(0, len(order), 64):
            rows = [int(r) for r in order[start : start + 64]]
            out[rows] = embed(model, config, *frozen.batch(rows)).numpy()
        vectors = out
    q, p = vectors[: len(questions)], vectors[len(questions) :]
    ranks = np.argsort(-(q @ p.T), axis=1)[:, :5]
    reciprocal = [next((1 / (r + 1) for r, i in enumerate(row) if i in gold), 0.0) for row, gold in zip(ranks, right)]
    return {"valid_dense_hit1": round(float(np.mean([r == 1.0 for r in reciprocal])), 4), "valid_dense_mrr": round(float(np.mean(reciprocal)), 4)}


def save(model, config: RetrieverConfig, folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(folder))
    (folder / CONFIG_FILE).write_text(json.dumps(asdict(config), indent=2) + "\n", encoding="utf-8")
