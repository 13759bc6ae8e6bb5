"""The Embedder: both exports must stay the PyTorch model, and say which precision they are."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from assistant import Retriever, build_index, embedding
from assistant.embedding import Embedder, ModelError
from assistant.evaluation import evaluate, load_questions
from assistant.settings import BUNDLED_BASE, Settings

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
def int8() -> Embedder:
    return Embedder(Settings.from_env(model=BUNDLED_BASE, precision="int8"))


@pytest.fixture(scope="module")
def fp32() -> Embedder:
    return Embedder(Settings.from_env(model=BUNDLED_BASE, precision="fp32"))


@pytest.fixture(scope="module")
def pytorch() -> embedding._Fp32Model:
    """The model as sentence-transformers runs it: what both exports are held to."""
    settings = Settings.from_env(model=BUNDLED_BASE)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        return embedding._Fp32Model(settings.model, settings.cache_dir, settings.batch_size)


def test_unknown_precision_is_refused_before_any_model_loads():
    with pytest.raises(ModelError, match="fp16"):
        Embedder(Settings.from_env(model=BUNDLED_BASE, precision="fp16"))


def test_default_precision_is_fp32():
    assert embedding.precision_of(Settings()) == "fp32"


@pytest.mark.slow
def test_fp32_runs_in_onnx_runtime_and_is_the_pytorch_model(fp32, pytorch):
    assert isinstance(fp32._model, embedding.OnnxModel) and fp32.fingerprint == pytorch.fingerprint
    for embed in ("embed_passages", "embed_queries"):
        prefix = "passage: " if embed == "embed_passages" else "query: "
        reference = pytorch.encode([prefix + s for s in SENTENCES])
        assert (_embed(fp32, embed) * reference).sum(axis=1).min() >= 0.9999, embed


@pytest.mark.slow
def test_fp32_falls_back_to_pytorch_when_the_model_does_not_export(fp32, monkeypatch, caplog):
    def fails(*args: object) -> None:
        raise ModelError("Exporting the fp32 model to ONNX failed:\nunsupported operator")

    monkeypatch.setattr(embedding, "load_onnx", fails)
    fallback = Embedder(Settings.from_env(model=BUNDLED_BASE, precision="fp32"))
    assert isinstance(fallback._model, embedding._Fp32Model) and "PyTorch instead" in caplog.text
    assert fallback.fingerprint == fp32.fingerprint
    assert float(fallback.embed_query(SENTENCES[0]) @ fp32.embed_query(SENTENCES[0])) >= 0.9999
    with pytest.raises(ModelError, match="unsupported operator"):
        Embedder(Settings.from_env(model=BUNDLED_BASE, precision="int8"))


@pytest.mark.slow
def test_int8_passages_and_queries_stay_within_cosine_099_of_fp32(int8, fp32):
    for embed in ("embed_passages", "embed_queries"):
        fast = _embed(int8, embed)
        reference = _embed(fp32, embed)
        assert (fast * reference).sum(axis=1).min() >= 0.99, embed


def _embed(embedder: Embedder, kind: str) -> np.ndarray:
    if kind == "embed_passages":
        return embedder.embed_passages(SENTENCES)
    return np.stack([embedder.embed_query(s) for s in SENTENCES])


@pytest.mark.slow
def test_vectors_are_unit_length_float32(int8):
    vectors = int8.embed_passages(SENTENCES)
    assert vectors.dtype == np.float32 and vectors.shape == (len(SENTENCES), int8.dim)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)


@pytest.mark.slow
def test_int8_is_deterministic_and_batch_company_moves_a_vector_less_than_quantization_does(int8):
    """Activations are quantized per batch, so a passage's neighbours in its batch nudge its vector."""
    together = int8.embed_passages(SENTENCES)
    assert np.array_equal(together, int8.embed_passages(SENTENCES))
    alone = np.stack([int8.embed_passages([s])[0] for s in SENTENCES[:6]])
    assert (together[:6] * alone).sum(axis=1).min() >= 0.99


@pytest.mark.slow
@pytest.mark.parametrize("precision", ["int8", "fp32"])
def test_query_prefix_is_applied_and_inputs_are_stripped(request, precision):
    embedder = request.getfixturevalue(precision)
    question = "Hva krevde KS om SLT?"
    query = embedder.embed_query(f"  {question} \n")
    assert np.allclose(query, embedder._model.encode([f"query: {question}"])[0], atol=1e-5)
    assert float(query @ embedder.embed_passages([question])[0]) < 0.999


@pytest.mark.slow
def test_fingerprint_is_stable_and_names_the_precision(int8, fp32):
    again = Embedder(Settings.from_env(model=BUNDLED_BASE, precision="int8"))
    assert again.fingerprint == int8.fingerprint
    assert int8.fingerprint != fp32.fingerprint
    assert int8.fingerprint == embedding.int8_fingerprint(fp32.fingerprint)


@pytest.mark.slow
@pytest.mark.parametrize("precision", ["int8", "fp32"])
def test_empty_input_gives_an_empty_matrix(request, precision):
    embedder = request.getfixturevalue(precision)
    assert embedder.embed_passages([]).shape == (0, embedder.dim)


@pytest.mark.slow
@pytest.mark.parametrize("precision", ["int8", "fp32"])
def test_export_is_made_once_and_leaves_no_work_folders(request, precision):
    request.getfixturevalue(precision)
    settings = Settings.from_env(model=BUNDLED_BASE)
    folder = embedding.ensure_exported(settings.model, settings.cache_dir, precision)
    assert embedding.ensure_exported(settings.model, settings.cache_dir, precision) == folder
    assert {p.name for p in folder.iterdir()} == {"model.onnx", "tokenizer.json", "meta.json"}
    assert not list(settings.cache_dir.glob(f".{precision}-*"))


@pytest.mark.slow
def test_export_that_strays_from_pytorch_is_refused(int8, fp32, pytorch, monkeypatch):
    monkeypatch.setattr(embedding, "MIN_COSINE", {"fp32": 1.01, "int8": 1.01})
    with pytest.raises(ModelError, match="ASSISTANT_PRECISION=fp32"):
        embedding._check_agreement(pytorch._st, int8._model, "the bundled model", "int8")
    with pytest.raises(ModelError, match="does not run this model faithfully"):
        embedding._check_agreement(pytorch._st, fp32._model, "the bundled model", "fp32")


@pytest.mark.slow
def test_int8_answers_the_dev_set_within_two_questions_of_fp32(settings, tmp_path):
    """Every dev-set figure of `eval` within two questions of fp32 (the ranker was fitted on fp32 features)."""
    if not DEV_SET.is_file():
        pytest.skip(f"{DEV_SET} not available")
    questions = load_questions(DEV_SET)
    exact = settings.replace(model=BUNDLED_BASE, precision="fp32", index=tmp_path / "fp32")
    faster = exact.replace(precision="int8", index=tmp_path / "int8")
    build_index(exact, progress=lambda *args: None)
    build_index(faster, progress=lambda *args: None)
    int8 = evaluate(Retriever.load(faster.index, settings=faster), questions)
    fp32 = evaluate(Retriever.load(exact.index, settings=exact), questions)
    for mode, groups in fp32.modes.items():
        for lang, expected in groups.items():
            got, n = int8.modes[mode][lang], expected.questions
            assert round(abs(got.hit_at_1.value - expected.hit_at_1.value) * n) <= 2, (mode, lang, int8.misses)
            assert round(abs(got.hit_at_3.value - expected.hit_at_3.value) * n) <= 2, (mode, lang, int8.misses)
    assert abs(int8.declined.value - fp32.declined.value) * int8.out_of_scope <= 1.01
    assert abs(int8.wrongly_declined.value - fp32.wrongly_declined.value) * int8.in_scope <= 1.01
