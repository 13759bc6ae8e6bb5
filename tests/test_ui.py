"""The chat page through its Gradio endpoints, as a client sees it: a real model, a real index, the real server.

The fast tests at the top check the pieces that keep uploads safe without a server.
"""

from __future__ import annotations

import re
from pathlib import Path

import httpx
import pytest

from assistant.settings import Settings
from assistant.ui import Refused, safe_name, save_uploads, user_questions

SLT_EXTRACT = "tiltaksplan for å styrke SLT-samarbeidet"
SLT_CITATION = "ks-konsultasjonsmote-2024-04-26.txt, linje 17"
SWIMMING_FACT = "Kommunestyret i Eksempelby vedtok 14. mars å bygge en ny svømmehall til 212 millioner kroner."


def plain(markdown: str) -> str:
    """The text a reader sees: Markdown backslash escapes removed."""
    return re.sub(r"\\(.)", r"\1", markdown)


# ---- fast: names and history ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("../../evil.txt", "evil.txt"),
        ("C:\\temp\\..\\notat.MD", "notat.MD"),
        ("møte 2024 (utkast).docx", "møte 2024 (utkast).docx"),
    ],
)
def test_safe_name_keeps_only_the_base_name(raw: str, expected: str) -> None:
    assert safe_name(raw) == expected


@pytest.mark.parametrize("raw", ["..", "../.hidden.txt", "~$lock.docx", "notes.txt~", "program.exe", "noext", "a/b/"])
def test_safe_name_refuses_hidden_temporary_and_unsupported_names(raw: str) -> None:
    with pytest.raises(Refused):
        safe_name(raw)


def test_unsupported_and_binary_uploads_are_refused_with_a_reason(tmp_path: Path) -> None:
    sources = tmp_path / "sources"
    sources.mkdir()
    exe = tmp_path / "program.exe"
    exe.write_bytes(b"MZ\x00\x01")
    binary = tmp_path / "data.txt"
    binary.write_bytes(bytes(range(256)) * 4)
    lines, changed = save_uploads([str(exe), str(binary)], Settings(sources=sources), replace=False)
    assert not changed and not list(sources.iterdir())
    assert "program.exe: ikke lagret – filtypen «.exe» støttes ikke" in lines[0]
    assert lines[1].startswith("data.txt: ikke lagret – kan ikke leses som tekst")


def test_an_existing_file_is_replaced_only_when_asked(tmp_path: Path) -> None:
    sources = tmp_path / "sources"
    sources.mkdir()
    (sources / "referat.md").write_text("gammel tekst\n", encoding="utf-8")
    upload = tmp_path / "upload" / "referat.md"
    upload.parent.mkdir()
    upload.write_text("ny tekst\n", encoding="utf-8")
    settings = Settings(sources=sources)

    lines, changed = save_uploads([str(upload)], settings, replace=False)
    assert not changed and "referat.md: ikke lagret" in lines[0] and "Erstatt eksisterende filer" in lines[0]
    assert (sources / "referat.md").read_text(encoding="utf-8") == "gammel tekst\n"

    lines, changed = save_uploads([str(upload)], settings, replace=True)
    assert changed and lines == ["referat.md: erstattet"]
    assert (sources / "referat.md").read_text(encoding="utf-8") == "ny tekst\n"
    assert sorted(p.name for p in sources.iterdir()) == ["referat.md"]


def test_user_questions_accepts_strings_and_messages() -> None:
    history = [
        "Hva krevde KS om SLT?",
        {"role": "assistant", "content": "svar"},
        {"role": "user", "content": [{"type": "text", "text": "Og kostnadene?"}]},
        {"role": "user", "content": "  "},
    ]
    assert user_questions(history) == ["Hva krevde KS om SLT?", "Og kostnadene?"]
    assert user_questions(None) == []


# ---- slow: the running app through gradio_client ------------------------------------------------


@pytest.fixture(scope="module")
def app_url(ui_settings: Settings, free_port: int):
    from assistant import build_index
    from assistant.server import create_app, running

    build_index(ui_settings)
    settings = ui_settings.replace(port=free_port)
    with running(create_app(settings), settings) as url:
        yield url


@pytest.fixture(scope="module")
def client(app_url: str):
    from gradio_client import Client

    return Client(app_url, verbose=False)


def ask(client, question: str, history: list | None = None) -> str:
    return client.predict(question, history, api_name="/chat")


@pytest.mark.slow
@pytest.mark.parametrize("question", ["Hva krevde KS om SLT?", "What did KS demand on SLT?"])
def test_chat_quotes_and_cites_the_answer(client, question: str) -> None:
    markdown = ask(client, question)
    assert SLT_EXTRACT in plain(markdown)
    assert SLT_CITATION in plain(markdown) or SLT_CITATION.replace("linje", "line") in plain(markdown)


@pytest.mark.slow
def test_follow_up_uses_the_earlier_questions(client) -> None:
    history = [{"role": "user", "content": "Hva sa KS om barnevernet?"}, {"role": "assistant", "content": "…"}]
    assert "2 milliarder kroner fra 2021 til 2022" in plain(ask(client, "Og hvor mye økte kostnadene?", history))


@pytest.mark.slow
def test_out_of_scope_empty_and_huge_questions(client) -> None:
    assert "Jeg fant ikke" in ask(client, "Hva er oppskriften på pepperkaker?")
    assert ask(client, "   ").startswith("Skriv et spørsmål")
    huge = ask(client, "Hva krevde KS om SLT? " + "x" * 100_000)
    assert "bare de første 1000 tegnene ble brukt" in plain(huge)


@pytest.mark.slow
def test_source_markup_comes_back_escaped(client, hostile: dict[str, str]) -> None:
    markdown = ask(client, hostile["question"])
    assert hostile["source"] in plain(markdown)
    assert "&lt;img src=x onerror=" in markdown and "&lt;script&gt;" in markdown
    assert "<img" not in markdown and "<script" not in markdown


@pytest.mark.slow
def test_uploaded_markdown_is_indexed_and_cited(client, ui_settings: Settings, tmp_path: Path) -> None:
    from gradio_client import handle_file

    note = tmp_path / "notat.md"
    note.write_text(f"# Kommunestyremøte\n\n{SWIMMING_FACT}\n", encoding="utf-8")
    report = client.predict([handle_file(str(note))], False, api_name="/upload")
    assert "notat.md: lagt til" in report and "Indeksen er oppdatert: 1 nye" in report
    assert (ui_settings.sources / "notat.md").read_text(encoding="utf-8") == note.read_text(encoding="utf-8")

    markdown = plain(ask(client, "Hva vedtok kommunestyret om svømmehallen?"))
    assert "notat.md" in markdown and "212 millioner kroner" in markdown


@pytest.mark.slow
def test_upload_names_cannot_leave_the_sources_folder(client, app_url: str, ui_settings: Settings) -> None:
    body = b"Kommunestyret diskuterte en sti langs elva i Eksempelby.\n"
    response = httpx.post(app_url + "gradio_api/upload", files=[("files", ("../../evil.txt", body, "text/plain"))])
    response.raise_for_status()
    [server_path] = response.json()
    payload = {"path": server_path, "orig_name": "../../evil.txt", "meta": {"_type": "gradio.FileData"}}
    report = client.predict([payload], False, api_name="/upload")

    outside = [ui_settings.sources.parent / "evil.txt", ui_settings.sources.parent.parent / "evil.txt"]
    assert not any(p.exists() for p in outside)
    saved = [p for p in ui_settings.sources.iterdir() if "evil" in p.name]
    assert all(p.parent == ui_settings.sources and not p.name.startswith(".") for p in saved)
    assert "evil" in report and ("lagt til" in report or "ikke lagret" in report)


@pytest.mark.slow
def test_unsupported_type_is_refused(client, ui_settings: Settings, tmp_path: Path) -> None:
    from gradio_client import handle_file
    from gradio_client.exceptions import AppError

    program = tmp_path / "program.exe"
    program.write_bytes(b"MZ not a text")
    try:
        report = client.predict([handle_file(str(program))], False, api_name="/upload")
    except AppError as exc:  # Gradio checks file_types before our handler runs
        assert "Invalid file type" in str(exc)
    else:
        assert "støttes ikke" in report
    assert not (ui_settings.sources / "program.exe").exists()
