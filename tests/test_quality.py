"""Quality gates on the steering side's dev questions and our own held-out set (real model and index)."""

from __future__ import annotations

import pytest

from assistant.evaluation import evaluate, load_questions

from .conftest import DEV_SET, HELDOUT

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def dev_report(retriever):
    if not DEV_SET.is_file():
        pytest.skip(f"{DEV_SET} not available")
    return evaluate(retriever, load_questions(DEV_SET))


def test_dev_set_ranking(dev_report):
    hybrid = dev_report.modes["hybrid"]["all"]
    assert hybrid.hit_at_1 >= 0.95, dev_report.misses
    assert hybrid.hit_at_3 == 1.0, dev_report.misses


def test_dev_set_declines_exactly_the_out_of_scope_questions(dev_report):
    assert dev_report.declined == dev_report.out_of_scope > 0
    assert dev_report.wrongly_declined == 0


def test_extracts_stay_short(dev_report):
    assert 0 < dev_report.mean_top1_chars < 400


def test_hybrid_beats_each_retriever_alone_and_fixed_weights(dev_report):
    modes = dev_report.modes
    assert modes["hybrid"]["all"].mrr_at_5 > modes["dense"]["all"].mrr_at_5
    assert modes["hybrid"]["all"].mrr_at_5 > modes["lexical"]["all"].mrr_at_5
    assert modes["hybrid"]["all"].mrr_at_5 >= modes["fixed"]["all"].mrr_at_5


def test_heldout_set_does_not_regress(retriever):
    """Written before tuning and never tuned on; the floor guards against regressions only."""
    report = evaluate(retriever, load_questions(HELDOUT), modes=("hybrid",))
    assert report.modes["hybrid"]["all"].hit_at_3 >= 0.9
    assert report.wrongly_declined <= 2
