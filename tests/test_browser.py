"""What a user sees in headless Chromium, against `python -m assistant serve` on a temp corpus.

`make screenshot` runs only the screenshot test and keeps the picture in docs/.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from assistant.settings import Settings
from assistant.serving.ui import OFFLINE_ENV

from .conftest import CHROMIUM

pytestmark = [pytest.mark.browser, pytest.mark.slow]

ROOT = Path(__file__).resolve().parent.parent
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update"]
SLT_EXTRACT = "tiltaksplan for å styrke SLT-samarbeidet"
SLT_LABEL = "[1] KS konsultasjonsmøte 26.04.2024, linje 17"
ANSWER_TIMEOUT = 60_000

if not CHROMIUM.exists():
    pytest.skip(f"{CHROMIUM} is missing (install it with `make browser`)", allow_module_level=True)

from playwright.sync_api import Browser, Locator, Page, expect, sync_playwright  # noqa: E402


SECOND_MEETING = "ks-konsultasjonsmote-2025-04-24.txt"  # SLT again, a year later: answers span two meetings


@pytest.fixture(scope="module")
def server(ui_settings: Settings, free_port: int, tmp_path_factory) -> Iterator[str]:
    """The real entry point: it builds the missing index, then serves."""
    (ui_settings.sources / SECOND_MEETING).write_bytes((ROOT / "tests" / "eval" / "texts" / SECOND_MEETING).read_bytes())
    log_path = tmp_path_factory.mktemp("server") / "serve.log"
    env = {**os.environ, **OFFLINE_ENV, "ASSISTANT_SOURCES": str(ui_settings.sources)}
    command = [sys.executable, "-m", "assistant", "serve", "--index", str(ui_settings.index), "--port", str(free_port)]
    with log_path.open("w") as log:
        process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{free_port}/"
    try:
        _wait_until_up(url, process, log_path)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()


def _wait_until_up(url: str, process: subprocess.Popen, log_path: Path, timeout: float = 400) -> None:
    """Long enough for a first run that converts and exports the model into the session's new cache."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"serve exited with {process.returncode}:\n{log_path.read_text()}")
        try:
            if httpx.get(url + "gradio_api/info", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    pytest.fail(f"serve did not come up in {timeout:.0f} s:\n{log_path.read_text()}")


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser: Browser, server: str) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1280, "height": 900}, locale="nb-NO")
    page = context.new_page()
    page.goto(server)
    expect(page.locator("#index-status")).to_contain_text("tekstbiter", timeout=ANSWER_TIMEOUT)
    yield page
    context.close()


def ask(page: Page, question: str, expected: str) -> Locator:
    """Type, press Enter, and wait for the answer to contain the expected text."""
    box = page.get_by_role("textbox", name="Spørsmål")
    box.fill(question)
    box.press("Enter")
    answer = page.locator("#chatbot .message.bot").last
    expect(answer).to_contain_text(expected, timeout=ANSWER_TIMEOUT)
    return answer


def test_answer_shows_quote_highlight_citation_and_source(page: Page) -> None:
    answer = ask(page, "Hva krevde KS om SLT i april 2024?", SLT_EXTRACT)
    expect(answer.locator("strong, b").filter(has_text=SLT_EXTRACT).first).to_be_visible()
    expect(answer).to_contain_text(SLT_LABEL)

    last_label = answer.locator("sub").last.inner_text().strip()
    answer.locator("sub").last.click()
    expect(page.get_by_role("radio", name=last_label)).to_be_checked()
    expect(page.locator("#viewer .doc-title strong")).to_have_text(last_label)

    page.get_by_role("radio", name=SLT_LABEL).check()
    expect(page.locator("#viewer .doc-title strong")).to_have_text(SLT_LABEL)
    expect(page.locator("#viewer .doc-title .file")).to_have_text("ks-konsultasjonsmote-2024-04-26.txt")
    cited = page.locator("#viewer #kilde-start")
    expect(cited).to_contain_text(SLT_EXTRACT)
    expect(cited.locator(".no")).to_have_text("17")
    expect(cited.locator("mark")).to_contain_text(SLT_EXTRACT)
    assert _visible_in_viewer(page), "the cited line is not scrolled into the viewer"


def _visible_in_viewer(page: Page) -> bool:
    return page.evaluate(
        """() => {
            const box = document.querySelector('#viewer .doc').getBoundingClientRect();
            const line = document.querySelector('#viewer #kilde-start').getBoundingClientRect();
            return line.top >= box.top && line.top < box.bottom;
        }"""
    )


def test_uploaded_file_can_be_asked_about(page: Page, tmp_path: Path) -> None:
    budget = tmp_path / "budsjettmote.md"
    budget.write_text(
        "# Budsjettmøte\n\nFormannskapet i Eksempelby foreslo å bruke 37 millioner kroner på nye gatelys.\n",
        encoding="utf-8",
    )
    page.get_by_text("Legg til tekster").click()
    page.locator("#upload-files input[type=file]").set_input_files(str(budget))
    expect(page.locator("#upload-files")).to_contain_text("budsjettmote.md")
    page.get_by_role("button", name="Legg til og oppdater indeksen").click()
    result = page.get_by_label("Resultat")
    expect(result).to_have_value(re.compile("budsjettmote.md: lagt til"), timeout=ANSWER_TIMEOUT)
    expect(result).to_have_value(re.compile("Indeksen er oppdatert"))
    expect(page.locator("#index-status")).to_contain_text("4 dokumenter")

    answer = ask(page, "Hva foreslo formannskapet om gatelys?", "37 millioner kroner")
    expect(answer).to_contain_text("budsjettmote.md")


def test_out_of_scope_question_says_so_and_the_chat_clears(page: Page) -> None:
    # Both our button and the Chatbot's own bin icon (also "Tøm samtalen" in Norwegian) reset everything.
    for clear in (page.locator("#clear"), page.locator("#chatbot").get_by_role("button", name="Tøm samtalen")):
        ask(page, "Hva er oppskriften på pepperkaker?", "Jeg fant ikke")
        clear.click()
        expect(page.locator("#chatbot .message")).to_have_count(0)
        expect(page.locator("#citations")).to_be_hidden()
        expect(page.locator("#viewer")).to_contain_text("Still et spørsmål")


def test_markup_in_sources_shows_as_text_and_never_runs(page: Page, hostile: dict[str, str]) -> None:
    dialogs: list[str] = []
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    answer = ask(page, hostile["question"], hostile["source"])
    expect(answer).to_contain_text(hostile["payload"])
    expect(page.locator("#viewer .doc")).to_contain_text(hostile["payload"])
    assert page.locator("#chatbot img, #viewer img, #chatbot script, #viewer script").count() == 0
    assert page.evaluate("window.__xss") is None
    assert dialogs == []


def test_phone_width_keeps_the_chat_usable(browser: Browser, server: str) -> None:
    context = browser.new_context(viewport={"width": 400, "height": 800})
    page = context.new_page()
    page.goto(server)
    ask(page, "Which ministers did KS meet?", "Erling Sande")
    expect(page.get_by_role("button", name="Send")).to_be_visible()
    assert page.evaluate("document.documentElement.scrollWidth") <= 400
    context.close()


def test_answers_from_two_meetings_are_grouped_under_their_titles(page: Page) -> None:
    answer = ask(page, "Hvilke forslag om SLT kom KS med?", SLT_EXTRACT)
    headings = answer.locator("h4")
    expect(headings).to_have_count(2)
    expect(headings.filter(has_text="KS konsultasjonsmøte 26.04.2024")).to_have_count(1)
    expect(headings.filter(has_text="Vårmøtet 2025")).to_have_count(1)
    expect(answer.locator("details summary")).to_have_text("Kilder")
    answer.locator("details summary").click()
    for source in ("ks-konsultasjonsmote-2024-04-26.txt", SECOND_MEETING):
        expect(answer.locator("details li").filter(has_text=source).first).to_be_visible()


def test_the_meeting_picker_limits_answers_to_one_meeting(page: Page) -> None:
    picker = page.get_by_role("combobox", name="Møte")
    picker.click()
    options = page.get_by_role("option")
    expect(options.first).to_have_accessible_name("Alle møter")
    expect(options.filter(has_text="Vårmøtet 2025")).to_have_count(1)
    options.filter(has_text="Vårmøtet 2025").click()
    answer = ask(page, "Hva krevde KS om SLT?", "Søkte bare i")
    expect(answer).to_contain_text("Vårmøtet 2025")
    expect(answer).not_to_contain_text("KS konsultasjonsmøte 26.04.2024")
    picker.click()
    page.get_by_role("option", name="Alle møter").click()
    expect(ask(page, "Hva foreslo KS om SLT i april 2024?", SLT_EXTRACT)).not_to_contain_text("Søkte bare i")


def test_the_documents_panel_removes_after_asking_and_restores(page: Page, ui_settings: Settings, hostile: dict) -> None:
    page.get_by_role("button", name="Dokumenter").click()
    table = page.locator("#documents-table")
    expect(table).to_contain_text("KS konsultasjonsmøte")
    expect(table).to_contain_text(hostile["source"])
    page.get_by_role("combobox", name="Dokument").click()
    page.get_by_role("option", name=hostile["source"]).click()
    page.get_by_role("button", name="Fjern …").click()
    expect(page.locator("#remove-question")).to_contain_text("til papirkurven")
    page.get_by_role("button", name="Avbryt").click()
    expect(page.locator("#remove-confirm:visible")).to_have_count(0)  # Gradio may briefly render the group twice
    assert (ui_settings.sources / hostile["source"]).is_file()  # nothing happens without the confirmation

    page.get_by_role("button", name="Fjern …").click()
    page.get_by_role("button", name="Ja, flytt til papirkurven").click()
    result = page.locator("#documents-result textarea")
    expect(result).to_have_value(re.compile("flyttet til papirkurven"), timeout=ANSWER_TIMEOUT)
    expect(result).to_have_value(re.compile("Indeksen er oppdatert"))
    expect(table).not_to_contain_text(hostile["source"])
    assert (ui_settings.sources / ".trash" / hostile["source"]).is_file()
    assert not (ui_settings.sources / hostile["source"]).exists()

    page.get_by_role("combobox", name="I papirkurven").click()
    page.get_by_role("option", name=hostile["source"]).click()
    page.get_by_role("button", name="Gjenopprett").click()
    expect(result).to_have_value(re.compile("er gjenopprettet"), timeout=ANSWER_TIMEOUT)
    expect(table).to_contain_text(hostile["source"])
    assert (ui_settings.sources / hostile["source"]).is_file()


def test_copy_button_and_status_line(page: Page) -> None:
    expect(page.locator("#index-status")).to_contain_text(re.compile(r"\d+ dokumenter, \d+ tekstbiter, bygget \d\d\.\d\d\.\d{4} kl\. \d\d:\d\d"))
    answer = ask(page, "Hva foreslo KS om SLT i april 2024?", SLT_EXTRACT)
    answer.hover()
    copy = page.locator("#chatbot").get_by_role("button", name=re.compile("Copy|Kopier", re.IGNORECASE)).last
    expect(copy).to_be_visible()


def test_screenshot(page: Page, tmp_path: Path) -> None:
    ask(page, "Hva foreslo KS om SLT i april 2024?", SLT_EXTRACT)
    expect(page.locator("#viewer #kilde-start")).to_be_visible()
    out = Path(os.environ.get("SCREENSHOT_OUT") or tmp_path / "screenshot.png")
    out.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(out))
    assert out.stat().st_size > 20_000


def test_titles_and_file_names_show_as_text_wherever_they_appear(page: Page, ui_settings: Settings, tmp_path: Path) -> None:
    """Metadata is text too: a title with HTML, Markdown and a URL, and a skipped file named with a link."""
    title = "<b>tykk</b> [lenke](https://example.invalid/x) **FET**"
    skipped_name = '<a href="https:example.invalid">klikk.txt'
    (ui_settings.sources / skipped_name).write_bytes(b"")
    note = tmp_path / "tittel.md"
    note.write_text(f"---\ntitle: '{title}'\ndate: 2024-05-02\n---\n\nFormannskapet i Eksempelby drøftet ny skilting av turstiene.\n",
                    encoding="utf-8")
    try:
        page.get_by_text("Legg til tekster").click()
        page.locator("#upload-files input[type=file]").set_input_files(str(note))
        page.get_by_role("button", name="Legg til og oppdater indeksen").click()
        expect(page.get_by_label("Resultat")).to_have_value(re.compile("Indeksen er oppdatert"), timeout=ANSWER_TIMEOUT)

        answer = ask(page, "Hva drøftet formannskapet om skilting av turstiene?", "skilting")
        expect(answer.locator("sub").first).to_contain_text(title)
        page.get_by_role("button", name="Dokumenter").click()
        expect(page.locator("#documents-table")).to_contain_text(title)
        skipped = page.locator("#documents-skipped")
        expect(skipped).to_contain_text(skipped_name)
        page.get_by_role("combobox", name="Dokument").click()
        page.get_by_role("option", name="tittel.md").click()
        page.get_by_role("button", name="Fjern …").click()
        question = page.locator("#remove-question")
        expect(question).to_contain_text(title)
        for shown in (answer, page.locator("#documents-table"), skipped, question):
            assert shown.locator("a, b, em, img").count() == 0
        assert question.locator("strong").count() == 1  # the title is bold as a whole, nothing inside it
        page.get_by_role("button", name="Avbryt").click()
    finally:
        (ui_settings.sources / skipped_name).unlink()
        (ui_settings.sources / "tittel.md").unlink(missing_ok=True)


def test_the_page_speaks_norwegian_whatever_the_browsers_language(browser: Browser, server: str) -> None:
    context = browser.new_context(viewport={"width": 1280, "height": 900}, locale="en-US")
    page = context.new_page()
    page.goto(server)
    expect(page.locator("#index-status")).to_contain_text("tekstbiter", timeout=ANSWER_TIMEOUT)
    page.get_by_text("Legg til tekster").click()
    expect(page.locator("#upload-files")).to_contain_text("Slipp fil her")
    expect(page.locator("footer")).to_contain_text("Bruk via API eller MCP")
    expect(page.locator("footer")).to_contain_text("Innstillinger")
    assert "Drop File Here" not in page.content() and "Use via API" not in page.content()
    context.close()


def test_the_login_page_is_norwegian_keeps_the_name_and_lets_the_user_in(
    browser: Browser, ui_settings: Settings, tmp_path_factory
) -> None:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    log_path = tmp_path_factory.mktemp("login") / "serve.log"
    env = {**os.environ, **OFFLINE_ENV, "ASSISTANT_SOURCES": str(ui_settings.sources)}
    command = [sys.executable, "-m", "assistant", "serve", "--index", str(ui_settings.index), "--port", str(port),
               "--auth", "anna:riktig passord"]
    with log_path.open("w") as log:
        process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/"
    try:
        deadline = time.monotonic() + 400
        while True:
            assert process.poll() is None, log_path.read_text()
            try:
                if httpx.get(url + "api/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, log_path.read_text()
            time.sleep(0.3)
        context = browser.new_context(locale="en-US")
        page = context.new_page()
        page.goto(url)
        expect(page.get_by_role("heading", name="Møteassistent")).to_be_visible()
        page.get_by_label("Brukernavn").fill("anna")
        page.get_by_label("Passord").fill("feil")
        page.get_by_role("button", name="Logg inn").click()
        expect(page.get_by_role("alert")).to_have_text("Feil brukernavn eller passord.")
        expect(page.get_by_label("Brukernavn")).to_have_value("anna")  # kept for the next try
        page.get_by_label("Passord").fill("riktig passord")
        page.get_by_role("button", name="Logg inn").click()
        ask(page, "Hva krevde KS om SLT i april 2024?", SLT_EXTRACT)
        context.close()
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
