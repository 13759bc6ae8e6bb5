"""The Qdrant backend end to end: real model, real builds, the same answers as the local backend.

Every test runs on Qdrant's local mode (``QdrantClient(path=tmp)``). With
ASSISTANT_QDRANT_URL set (and ASSISTANT_QDRANT_API_KEY if the server wants
one), the same tests run again against that server, marked ``qdrant_server``,
each in collections of its own that it deletes afterwards; without it they are
skipped, saying why.
"""

from __future__ import annotations

import os
import shutil
import threading
import uuid
from datetime import date

import pytest

from assistant import Retriever, Settings, build_index

from assistant import answer
from assistant.storage.backends import open_backend
from assistant.storage.backends.migrate import migrate
from assistant.quality.evaluation import load_questions, load_split, rank_of_answer
from assistant.storage.filters import FilterError
from tests.conftest import BANK, CORPUS, DEV_SET

pytestmark = pytest.mark.slow

SERVER = os.environ.get("ASSISTANT_QDRANT_URL", "")
TARGETS = [
    "local mode",
    pytest.param("server", marks=[
        pytest.mark.qdrant_server,
        pytest.mark.skipif(not SERVER, reason="ASSISTANT_QDRANT_URL is not set: no Qdrant server to run against"),
    ]),
]
SLT = "tiltaksplan for å styrke SLT-samarbeidet"
APRIL_2024 = "ks-konsultasjonsmote-2024-04-26.txt"
NOTE = "Formannskapet i Eksempelby vedtok å kjøpe tre elbusser til skoleskyss."


@pytest.fixture(scope="module", params=TARGETS)
def target(request, tmp_path_factory):
    """Settings overrides naming a Qdrant: local mode in a fresh folder, or the server under a fresh alias."""
    alias = f"test-{uuid.uuid4().hex[:8]}"
    where = {"qdrant_url": SERVER} if request.param == "server" else {
        "qdrant_url": "", "qdrant_path": str(tmp_path_factory.mktemp("qdrant"))
    }
    overrides = {"backend": "qdrant", "qdrant_collection": alias, **where}
    yield overrides
    if request.param == "server":
        client = open_backend(Settings(**overrides)).client
        for collection in client.get_collections().collections:
            if collection.name.startswith(f"{alias}-"):
                client.delete_collection(collection.name)


def on(settings: Settings, target: dict, **changes: object) -> Settings:
    """These settings on the target Qdrant; each alias names one index."""
    alias = f"{target['qdrant_collection']}-{changes.pop('name', 'main')}"
    return settings.replace(**{**target, "qdrant_collection": alias}, **changes)


def figures(retriever: Retriever, questions) -> tuple[list[list[tuple]], dict[str, float]]:
    """Each question's top 5 (passages, in order) and the hybrid hit@1, hit@3 and decline figures, as `eval` counts them."""
    tops, ranks, declined, wrongly = [], [], [], []
    for q in questions:
        hits = retriever.search(q.question, 5, history=q.history)
        tops.append([(h.source, h.start_line, h.end_line, h.text) for h in hits])
        found = answer(q.question, retriever, history=q.history).found
        if q.expected:
            ranks.append(rank_of_answer(hits, q))
            wrongly.append(not found)
        else:
            declined.append(not found)
    return tops, {
        "hit@1": sum(r == 1 for r in ranks) / len(ranks),
        "hit@3": sum(r is not None and r <= 3 for r in ranks) / len(ranks),
        "declined": sum(declined),
        "wrongly declined": sum(wrongly),
    }


def same_top5(local: Retriever, qdrant: Retriever, questions) -> float:
    top5 = lambda r, q: [(h.source, h.start_line, h.text) for h in r.search(q.question, 5, history=q.history)]  # noqa: E731
    return sum(top5(local, q) == top5(qdrant, q) for q in questions) / len(questions)


def same_answers(local: Retriever, qdrant: Retriever, questions) -> tuple[float, dict, dict]:
    """Share of questions with the same top 5 on both backends, and each backend's figures."""
    local_tops, local_figures = figures(local, questions)
    qdrant_tops, qdrant_figures = figures(qdrant, questions)
    return sum(a == b for a, b in zip(local_tops, qdrant_tops)) / len(questions), local_figures, qdrant_figures


# ---- the evaluation: same answers --------------------------------------------------------------


@pytest.fixture(scope="module")
def dev_qdrant(built, target, tmp_path_factory):
    """The bundled corpus built on Qdrant by `build`, as the local index in `built` was."""
    settings = on(built, target, name="dev", index=tmp_path_factory.mktemp("dev-index"))
    report = build_index(settings, progress=lambda *_: None)
    assert report.chunks_embedded == report.chunks_total > 0
    return settings


@pytest.fixture(scope="module")
def bank_qdrant(bank_settings, target):
    """The evaluation bank's index copied into Qdrant by `migrate`."""
    settings = on(bank_settings, target, name="bank")
    migrate(settings, "qdrant")
    retriever = Retriever.load(settings.index, settings=settings)
    retriever.today = lambda: date(2026, 11, 27)
    return retriever


def test_dev_set_answers_as_on_the_local_backend(dev_qdrant, retriever, dev_questions):
    questions = load_questions(DEV_SET)
    same, local, qdrant = same_answers(retriever, Retriever.load(dev_qdrant.index, settings=dev_qdrant), questions)
    assert same >= 0.98 and local == qdrant, (same, local, qdrant)


def test_bank_test_half_answers_as_on_the_local_backend(bank_qdrant, bank_retriever):
    questions = load_split(BANK / "split.json").half(load_questions(BANK / "questions"), "test")
    same, local, qdrant = same_answers(bank_retriever, bank_qdrant, questions)
    assert same >= 0.98 and local == qdrant, (same, local, qdrant)


def test_where_filters_every_hit(bank_qdrant):
    kind = bank_qdrant.search("Hva sa de om SLT?", k=10, where={"kind": "kommunestyre"})
    assert kind and {h.kind for h in kind} == {"kommunestyre"}
    dated = bank_qdrant.search("Hva sa de om SLT?", k=10, where={"after": "2024-09-01", "before": "2024-12-31"})
    assert dated and all("2024-09-01" <= h.date <= "2024-12-31" for h in dated)
    source = bank_qdrant.search("barnevern", k=10, where={"source": APRIL_2024})
    assert source and {h.source for h in source} == {APRIL_2024}
    with pytest.raises(FilterError, match="finnes-ikke.txt"):
        bank_qdrant.search("barnevern", k=5, where={"source": "finnes-ikke.txt"})
    named = bank_qdrant.search("Hva foreslo KS om SLT i konsultasjonsmøtet i april 2024?", k=5)
    assert named[0].source == APRIL_2024 and SLT in named[0].text and named[0].meeting == 1.0


def test_a_list_comes_whole(bank_qdrant):
    a = answer("Hvilke tiltak krevde KS av staten for å styrke klima- og naturhensyn i april 2024?", bank_qdrant)
    items = [c for c in a.citations if c.lead_in.startswith("KS pekte på områder hvor staten kan bidra")]
    shown = [c.start_line for c in items]
    assert shown == sorted(shown) and set(shown) <= {38, 39, 40, 41, 42} and len(shown) >= 4


# ---- builds ------------------------------------------------------------------------------------


def test_build_rebuild_change_and_delete(target, tmp_path):
    dev_questions = load_questions(DEV_SET) if DEV_SET.is_file() else []
    sources = tmp_path / "sources"
    shutil.copytree(CORPUS, sources)
    (sources / "notat.md").write_text("# Formannskapet\n\nFormannskapet møttes i mars.\n\nDet ble ikke fattet vedtak.\n", encoding="utf-8")
    settings = on(Settings.from_env(sources=sources, index=tmp_path / "index"), target)
    quiet = {"progress": lambda *_: None}

    first = build_index(settings, **quiet)
    local = settings.replace(backend="local", index=tmp_path / "local")
    build_index(local, **quiet)
    assert (first.files_added, first.chunks_embedded) == (2, first.chunks_total)
    retriever = Retriever.load(settings.index, settings=settings)
    hit = retriever.search("Hva krevde KS om SLT?", k=1)[0]
    assert SLT in hit.text and (hit.source, hit.start_line) == (APRIL_2024, 17)

    again = build_index(settings, **quiet)
    assert (again.files_unchanged, again.chunks_embedded, again.chunks_total) == (2, 0, first.chunks_total)
    assert retriever.refresh() and retriever.search("Hva krevde KS om SLT?", k=1)[0].text == hit.text

    with (sources / "notat.md").open("a", encoding="utf-8") as out:
        out.write(f"\n{NOTE}\n")
    changed = build_index(settings, **quiet)
    assert (changed.files_changed, changed.chunks_embedded, changed.chunks_total) == (1, 1, first.chunks_total + 1)
    assert retriever.refresh()
    assert retriever.search("Hva vedtok formannskapet om elbusser?", k=1)[0].text == NOTE
    assert passages(settings) == changed.chunks_total
    build_index(local, **quiet)  # the same two builds, so both embedded the same texts in the same batches
    if dev_questions:  # the collection keeps its first mean passage length; the local index recomputes it
        same = same_top5(Retriever.load(local.index, settings=local), retriever, dev_questions)
        assert same >= 0.95, same

    (sources / "notat.md").unlink()
    removed = build_index(settings, **quiet)
    assert (removed.files_removed, removed.chunks_embedded) == (1, 0)
    assert retriever.refresh()
    with pytest.raises(FilterError, match="notat.md"):  # a removed document is no longer a document to filter on
        retriever.search("elbusser", k=5, where={"source": "notat.md"})
    assert "notat.md" not in {h.source for h in retriever.search("Hva vedtok formannskapet om elbusser?", k=5)}
    assert passages(settings) == removed.chunks_total == first.chunks_total - 2


def passages(settings: Settings) -> int:
    """Passage points the collection holds: none left behind by updates."""
    from qdrant_client import models as qm

    backend = open_backend(settings)
    only = qm.Filter(must=[qm.FieldCondition(key="added", range=qm.Range(gte=0))])
    return backend.client.count(backend.target(), count_filter=only, exact=True).count


def test_alias_switch_while_a_search_is_in_flight(dev_qdrant):
    """A full rebuild switches the alias to a new collection while a search waits half-way; the search
    finishes on the old collection with the right answer, and the next one uses the new collection."""
    retriever = Retriever.load(dev_qdrant.index, settings=dev_qdrant)
    old = retriever.stored
    paused, release, results = threading.Event(), threading.Event(), []
    original = old.vectors_of

    def halfway(ids):
        paused.set()
        release.wait(120)
        return original(ids)

    old.vectors_of = halfway
    search = threading.Thread(target=lambda: results.append(retriever.search("Hva krevde KS om SLT?", k=3)))
    search.start()
    try:
        assert paused.wait(60)
        build_index(dev_qdrant, full=True, progress=lambda *_: None)
        assert open_backend(dev_qdrant).target() != old.collection
    finally:
        release.set()
        search.join(120)
    assert results and SLT in results[0][0].text
    assert retriever.refresh() and retriever.stored.collection != old.collection
    assert SLT in retriever.search("Hva krevde KS om SLT?", k=1)[0].text


# ---- migrate, ask and the page -----------------------------------------------------------------


def test_migrate_then_ask_on_qdrant(built, target, tmp_path, capsys):
    from assistant.serving.cli import main

    flags = ["--backend", "qdrant", "--qdrant-collection", f"{target['qdrant_collection']}-cli"]
    flags += ["--qdrant-url", target["qdrant_url"]] if target["qdrant_url"] else ["--qdrant-path", target["qdrant_path"]]
    assert main(["migrate", "--to", "qdrant", "--index", str(built.index), *flags[2:]]) == 0
    assert "nothing was embedded" in capsys.readouterr().out
    assert main(["ask", "Hva krevde KS om SLT?", "--index", str(tmp_path / "unused"), *flags]) == 0
    out = capsys.readouterr().out
    assert SLT in out and "linje 17" in out


def test_the_page_and_the_api_answer_on_qdrant(dev_qdrant, free_port):
    import httpx
    from gradio_client import Client

    from assistant.serving.server import create_app, running
    from tests.test_ui import SLT_CITATION, SLT_EXTRACT, ask, plain

    settings = dev_qdrant.replace(port=free_port)
    with running(create_app(settings), settings) as url:
        client = Client(url, verbose=False)
        markdown = plain(ask(client, "Hva krevde KS om SLT?"))
        assert SLT_EXTRACT in markdown and SLT_CITATION in markdown
        assert "Jeg fant ikke" in ask(client, "Hva er oppskriften på pepperkaker?")
        health = httpx.get(url + "api/health").json()
        assert health["status"] == "ok" and health["generation"] == open_backend(settings).current()
