"""The chat page through its Gradio endpoints, as a client sees it: a real model, a real index, the real server.

The fast tests at the top check the pieces that keep uploads safe without a server.
"""

from __future__ import annotations

import re
import shutil
import socket
from pathlib import Path

import httpx
import pytest

from assistant.settings import Settings
from assistant.serving.library import Refused, safe_name, save_uploads
from assistant.serving.ui import NO_DISK_SPACE, user_questions
from tests.conftest import small_disk
from tests.hostile import fill_disk, zip_bomb_docx

SLT_EXTRACT = "tiltaksplan for å styrke SLT-samarbeidet"
SLT_CITATION = "KS konsultasjonsmøte 26.04.2024, linje 17"
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
    lines, changed = save_uploads([str(exe), str(binary)], Settings(sources=sources), replace=False, received=tmp_path)
    assert not changed and not list(sources.iterdir())
    assert "program.exe: ikke lagret – filtypen «.exe» støttes ikke" in lines[0]
    assert lines[1].startswith("data.txt: ikke lagret – kan ikke leses som tekst")


def test_only_files_in_the_upload_folder_are_read(tmp_path: Path) -> None:
    """A path the client names outside the folder the page received files into is refused, never read."""
    sources, received = tmp_path / "sources", tmp_path / "received"
    sources.mkdir()
    received.mkdir()
    secret = tmp_path / "tokens.txt"
    secret.write_text("hemmelig-token-0123456789abcdef\n", encoding="utf-8")
    (received / "lenke.txt").symlink_to(secret)
    escape = received / ".." / "tokens.txt"
    lines, changed = save_uploads([str(secret), str(escape), str(received / "lenke.txt")], Settings(sources=sources),
                                  replace=False, received=received)
    assert not changed and not list(sources.iterdir())
    assert all("ikke lagret – bare filer som er lastet opp" in line for line in lines)


def test_an_existing_file_is_replaced_only_when_asked(tmp_path: Path) -> None:
    sources = tmp_path / "sources"
    sources.mkdir()
    (sources / "referat.md").write_text("gammel tekst\n", encoding="utf-8")
    upload = tmp_path / "upload" / "referat.md"
    upload.parent.mkdir()
    upload.write_text("ny tekst\n", encoding="utf-8")
    settings = Settings(sources=sources)

    lines, changed = save_uploads([str(upload)], settings, replace=False, received=tmp_path)
    assert not changed and "referat.md: ikke lagret" in lines[0] and "Erstatt eksisterende filer" in lines[0]
    assert (sources / "referat.md").read_text(encoding="utf-8") == "gammel tekst\n"

    lines, changed = save_uploads([str(upload)], settings, replace=True, received=tmp_path)
    assert changed and lines == ["referat.md: erstattet"]
    assert (sources / "referat.md").read_text(encoding="utf-8") == "ny tekst\n"
    assert sorted(p.name for p in sources.iterdir()) == ["referat.md"]


def test_a_zip_bomb_upload_is_refused_without_unpacking_it(tmp_path: Path) -> None:
    sources = tmp_path / "sources"
    sources.mkdir()
    bomb = zip_bomb_docx(tmp_path / "rapport.docx", unpacked_mb=300)
    lines, changed = save_uploads([str(bomb)], Settings(sources=sources), replace=False, received=tmp_path)
    assert not changed and not list(sources.iterdir())
    assert lines[0].startswith("rapport.docx: ikke lagret – kan ikke leses som tekst")
    assert "unpacks to 300 MB, more than the limit of 50 MB" in lines[0]


def test_an_upload_on_a_full_disk_leaves_no_temporary_file(tiny_disk: Path, tmp_path: Path) -> None:
    sources = tiny_disk / "sources"
    sources.mkdir()
    (sources / "gammel.md").write_text("# Gammel\n\nTekst.\n", encoding="utf-8")
    fill_disk(tiny_disk, leave=64 * 1024)
    upload = tmp_path / "referat.md"
    upload.write_text("# Referat\n\n" + "Kommunestyret vedtok budsjettet. " * 10_000, encoding="utf-8")
    lines, changed = save_uploads([str(upload)], Settings(sources=sources), replace=False, received=tmp_path)
    assert not changed
    assert lines == ["referat.md: ikke lagret – ikke nok diskplass."]
    assert sorted(p.name for p in sources.iterdir()) == ["gammel.md"]


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
    from assistant.serving.server import create_app, running

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


@pytest.mark.slow
def test_the_page_on_a_full_disk_says_so_and_keeps_answering(built, tmp_path: Path) -> None:
    """Sources with a little space left, the index with none: a large upload is not saved, a small one is
    saved but cannot be indexed; neither leaves a temporary file, and the old index still answers."""
    from gradio_client import Client, handle_file

    from assistant.serving.server import create_app, running

    big, small = tmp_path / "stor.md", tmp_path / "notat.md"
    big.write_text("# Stor\n\n" + "Kommunestyret vedtok budsjettet. " * 10_000, encoding="utf-8")
    small.write_text(f"# Kommunestyremøte\n\n{SWIMMING_FACT}\n", encoding="utf-8")
    with small_disk(tmp_path / "texts", "1m") as texts, small_disk(tmp_path / "index", "2m") as index:
        shutil.copytree(built.sources, texts, dirs_exist_ok=True)
        shutil.copytree(built.index, index, dirs_exist_ok=True)
        fill_disk(texts, leave=64 * 1024)
        fill_disk(index)
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        settings = built.replace(sources=texts, index=index, port=port)
        with running(create_app(settings), settings) as url:
            client = Client(url, verbose=False)
            report = client.predict([handle_file(str(big))], False, api_name="/upload")
            assert report == "stor.md: ikke lagret – ikke nok diskplass."
            report = client.predict([handle_file(str(small))], False, api_name="/upload")
            assert report.splitlines() == ["notat.md: lagt til", NO_DISK_SPACE]
            assert not [p.name for p in texts.iterdir() if p.name.endswith(".tmp")]
            assert SLT_EXTRACT in plain(ask(client, "Hva krevde KS om SLT?"))


# ---- the upload route names a server file: D1 of the hostile probe --------------------------------------


def call_route(url: str, api_name: str, data: list, headers: dict[str, str] | None = None) -> tuple[str, str]:
    """POST /gradio_api/call/<name> as any HTTP client may, then read the event stream: (event, data)."""
    started = httpx.post(f"{url}gradio_api/call/{api_name}", json={"data": data}, headers=headers, timeout=30)
    started.raise_for_status()
    events = httpx.get(f"{url}gradio_api/call/{api_name}/{started.json()['event_id']}", headers=headers, timeout=120)
    last = [line for line in events.text.splitlines() if line.startswith(("event:", "data:"))][-2:]
    return last[0].removeprefix("event:").strip(), last[1].removeprefix("data:").strip()


@pytest.mark.slow
def test_the_upload_route_never_reads_a_file_the_client_names(app_url: str, ui_settings: Settings, tmp_path: Path) -> None:
    """The probe's request: a FileData whose path is a server file. It must not reach the texts."""
    secret = Path.cwd() / f"hemmelig-{tmp_path.name}.txt"
    secret.write_text("Tokenet til API-et er sk-hemmelig-0123456789abcdef.\n", encoding="utf-8")
    try:
        payload = {"path": str(secret), "orig_name": "x.txt", "meta": {"_type": "gradio.FileData"}}
        event, data = call_route(app_url, "upload", [[payload], False])
        assert event == "error" or "ikke lagret" in data
        assert not any("sk-hemmelig" in p.read_text(errors="ignore") for p in ui_settings.sources.rglob("*") if p.is_file())
    finally:
        secret.unlink()


@pytest.fixture(scope="module")
def token_only_url(ui_settings: Settings):
    """The page open, tokens on: chatting needs nothing, changing the texts needs a token."""
    from assistant import build_index
    from assistant.serving.auth import TOKENS_ENV, Credentials
    from assistant.serving.server import create_app, running

    build_index(ui_settings)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    settings = ui_settings.replace(port=port)
    with running(create_app(settings, Credentials.load(environ={TOKENS_ENV: PAGE_TOKEN})), settings) as url:
        yield url


PAGE_TOKEN = "ui-test-token-0123456789abcdef"


@pytest.mark.slow
def test_with_tokens_only_changing_the_texts_needs_a_token(token_only_url: str, ui_settings: Settings, tmp_path: Path) -> None:
    from gradio_client import Client, handle_file

    note = tmp_path / "tokennotat.md"
    note.write_text("# Notat\n\nFormannskapet i Eksempelby vedtok et nytt lysløype-prosjekt.\n", encoding="utf-8")
    anonymous = httpx.post(token_only_url + "gradio_api/upload", files=[("files", ("a.md", b"# A\n\nTekst.\n"))])
    assert anonymous.status_code == 401
    for api_name, data in (("upload", [[], False]),):
        event, reply = call_route(token_only_url, api_name, data)
        assert "krever innlogging" in reply
    assert "ks-konsultasjonsmote-2024-04-26.txt" in plain(ask(Client(token_only_url, verbose=False), "Hva krevde KS om SLT?"))
    trusted = Client(token_only_url, verbose=False, headers={"Authorization": f"Bearer {PAGE_TOKEN}"})
    report = trusted.predict([handle_file(str(note))], False, api_name="/upload")
    assert "tokennotat.md: lagt til" in report
    (ui_settings.sources / "tokennotat.md").unlink()
