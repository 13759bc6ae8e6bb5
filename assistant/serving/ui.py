"""The chat page: ask in Norwegian or English, read cited extracts, open them in the source, add texts.

Every character taken from a source text or a question is HTML-escaped on the
server: Gradio's sanitizer drops scripts and event handlers but would still
render tags such as ``<img>``.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

OFFLINE_ENV = {"GRADIO_ANALYTICS_ENABLED": "False", "HF_HUB_OFFLINE": "1", "HF_HUB_DISABLE_TELEMETRY": "1"}
for _name, _value in OFFLINE_ENV.items():
    os.environ.setdefault(_name, _value)

import gradio as gr  # noqa: E402  (the environment above must be set before gradio is imported)
from gradio.utils import get_upload_folder as gradio_upload_folder  # noqa: E402

from . import documents  # noqa: E402
from ..answering.answer import escape  # noqa: E402
from .auth import Credentials  # noqa: E402
from ..storage.indexing import index_status  # noqa: E402
from .library import (  # noqa: E402
    ALL_MEETINGS,
    TABLE_HEADERS,
    document_rows,
    meeting_choices,
    remove_question,
    save_uploads,
    skipped_text,
    stage_name,
)
from .service import BUILDING, LOADING, Reply, Service  # noqa: E402
from ..settings import Settings  # noqa: E402
from ..ingest.sources import SUPPORTED_SUFFIXES  # noqa: E402
from ..storage.errors import WriteError  # noqa: E402
from .viewer import source_view  # noqa: E402

log = logging.getLogger(__name__)

EXAMPLES = (
    "Hva krevde KS om SLT?",
    "Hvor mye økte kostnadene i barnevernet fra 2021 til 2022?",
    "What did KS demand on SLT?",
    "Which ministers did KS meet?",
)
NO_DISK_SPACE = "Ikke nok diskplass: indeksen ble ikke oppdatert. Den forrige indeksen svarer fortsatt; frigjør plass og prøv igjen."
NEEDS_TOKEN = (
    "Å legge til eller fjerne tekster krever innlogging: denne serveren tar bare imot API-token "
    "(Authorization: Bearer …). Be den som driver serveren om et token, eller om en bruker (--auth)."
)
VIEWER_HINT = '<p class="hint">Still et spørsmål. Kildene til svaret åpnes her, med de siterte linjene markert.</p>'

# System fonts only; dark blue buttons keep white text above WCAG AA contrast (the default orange does not).
THEME = gr.themes.Default(
    primary_hue="blue", font=["system-ui", "sans-serif"], font_mono=["ui-monospace", "monospace"]
).set(
    button_primary_background_fill="*primary_700",
    button_primary_background_fill_hover="*primary_800",
    button_primary_text_color="white",
)
CSS = """
#viewer .doc { max-height: 55vh; overflow: auto; position: relative; border: 1px solid var(--border-color-primary);
  border-radius: var(--radius-md); font-family: var(--font-mono); font-size: 0.85rem; line-height: 1.5; }
#viewer .doc-title { margin: 0 0 0.5em; }
#viewer .doc-title .file { color: var(--body-text-color-subdued); font-family: var(--font-mono); font-size: 0.8rem; }
#viewer .note { margin: 0 0 0.5em; color: var(--body-text-color); font-style: italic; }
#viewer .ln { display: flex; gap: 0.75em; padding: 0 0.5em; }
#viewer .no { flex: 0 0 3.2em; text-align: right; color: var(--body-text-color-subdued); user-select: none; }
#viewer .tx { flex: 1; min-width: 0; white-space: pre-wrap; overflow-wrap: anywhere; }
#viewer .cited { background: #fff3bf; color: #1f2328; }
#viewer .cited .no { color: #1f2328; font-weight: 600; }
#viewer mark { background: none; color: inherit; }
#viewer mark strong { background: #ffd43b; }
#chatbot .message.bot sub { cursor: pointer; text-decoration: underline dotted; }
"""
# Scrolls only the viewer box (not the page) to the first cited line, whenever new HTML arrives.
VIEWER_JS = """
const show = () => {
  const box = element.querySelector('.doc');
  const line = element.querySelector('#kilde-start');
  if (box && line) box.scrollTop = Math.max(0, line.offsetTop - box.clientHeight / 3);
};
watch('value', show);
show();
"""
# After an answer, show its beginning: the question at the top of the chat, not the end of a long reply.
SHOW_ANSWER_JS = """
() => setTimeout(() => {
  const asked = document.querySelectorAll('#chatbot .message.user');
  const last = asked[asked.length - 1];
  let box = last && last.parentElement;
  while (box && !(box.scrollHeight > box.clientHeight && /auto|scroll/.test(getComputedStyle(box).overflowY))) {
    box = box.parentElement;
  }
  if (box) box.scrollTop += last.getBoundingClientRect().top - box.getBoundingClientRect().top - 8;
}, 60)
"""
# A click on a citation label under an answer selects it in "Vis i teksten".
PAGE_JS = """
() => {
  document.addEventListener('click', (event) => {
    const sub = event.target.closest && event.target.closest('#chatbot sub');
    if (!sub) return;
    const wanted = sub.textContent.trim();
    for (const label of document.querySelectorAll('#citations label')) {
      if (label.textContent.trim() === wanted) {
        label.querySelector('input')?.click();
        document.getElementById('viewer')?.scrollIntoView({block: 'nearest'});
        return;
      }
    }
  });
}
"""


# ---- questions and history -------------------------------------------------------------------


def user_questions(history: Sequence[object] | None) -> list[str]:
    """Earlier user questions from an API history: plain strings or {"role", "content"} messages."""
    questions: list[str] = []
    for item in history or []:
        if isinstance(item, str):
            text = item
        elif isinstance(item, dict) and item.get("role") == "user":
            text = _message_text(item.get("content"))
        else:
            continue
        if text.strip():
            questions.append(text)
    return questions


def _message_text(content: object) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, dict):
        return str(content.get("text") or "")
    if isinstance(content, list):
        return " ".join(_message_text(part) for part in content).strip()
    return ""


def _bot(markdown: str) -> dict[str, object]:
    # A list of parts keeps the text byte-exact; plain strings are cleandoc'ed by the Chatbot.
    return {"role": "assistant", "content": [{"type": "text", "text": markdown}]}


def _user(question: str, limit: int) -> dict[str, object]:
    shown = question if len(question) <= limit else question[:limit] + " …"
    return {"role": "user", "content": [{"type": "text", "text": escape(shown)}]}


# ---- the page --------------------------------------------------------------------------------


def build_app(
    service: Service, tools: Sequence[Callable[..., object]] = (), credentials: Credentials | None = None
) -> gr.Blocks:
    """The page, its /chat and /upload endpoints, and ``tools`` as the only documented endpoints (the MCP tools).

    The page's own endpoints stay callable but undocumented, so MCP clients list only the tools. With
    tokens but no users the page is open, so adding and removing texts asks for a token like the API.
    """
    settings = service.settings
    limit = settings.max_question_chars
    credentials = credentials or Credentials()
    token_needed = bool(credentials.token_digests and not credentials.users)

    def may_change(request: gr.Request | None) -> bool:
        if not token_needed:
            return True  # no auth at all, or users: the gate let only logged-in clients this far
        headers = request.headers if request is not None else {}
        return credentials.check_header(headers.get("authorization", ""))

    def respond(message: str, messages: list, questions: list[str], meeting: str | None = "") -> Iterator[tuple]:
        message = message or ""
        shown = [*(messages or []), *([_user(message, limit)] if message.strip() else [])]
        if message.strip() and not service.ready:
            yield "", [*shown, _bot(LOADING)], questions, gr.skip(), gr.skip(), gr.skip()
        reply = service.reply(message, questions, {"source": meeting} if meeting else None)
        asked = [*questions, message[:limit]] if message.strip() else questions
        yield ("", [*shown, _bot(reply.markdown)], asked, *viewer_outputs(reply))

    def viewer_outputs(reply: Reply) -> tuple[list, dict, str]:
        cited = [(c.label(reply.language), c) for c in reply.citations]
        if not cited:
            return [], gr.update(choices=[], value=None, visible=False), VIEWER_HINT
        first_label, first = cited[0]
        radio = gr.update(choices=[label for label, _ in cited], value=first_label, visible=True)
        return cited, radio, source_view(service, first, reply.language)

    def pick_example(messages: list, questions: list[str], meeting: str, evt: gr.SelectData) -> Iterator[tuple]:
        yield from respond(str(evt.value.get("text", "")), messages, questions, meeting)

    def show(label: str | None, cited: list) -> str:
        for known, citation in cited or []:
            if known == label:
                return source_view(service, citation, "en" if citation.label("en") == label else "no")
        return VIEWER_HINT

    def clear() -> tuple:
        return "", [], [], [], gr.update(choices=[], value=None, visible=False), VIEWER_HINT

    def chat(message: str, history: list | None = None) -> str:
        """Svar med ordrette, kildehenviste utdrag (Markdown); history: tidligere spørsmål eller meldinger."""
        return service.reply(message or "", user_questions(history)).markdown

    # Gradio reads the return hint unevaluated, and this module's hints are strings.
    chat.__annotations__ = {"message": str, "history": list | None, "return": str}

    def rebuilt(lines: list[str], progress: gr.Progress, force: bool = False) -> str:
        """An incremental rebuild after the texts changed; its summary, or why the old index still answers."""
        try:
            if force or index_status(settings) is not None:
                lines.append(service.rebuild(_progress_reporter(progress)).summary("no"))
        except WriteError as exc:
            log.warning("rebuilding failed: %s", exc)
            lines.append(NO_DISK_SPACE if exc.disk_full else f"Indeksen kunne ikke oppdateres: {exc}")
        except Exception as exc:  # the files are in place; say why the index is not, never a traceback
            log.exception("rebuilding failed")
            lines.append(f"Indeksen kunne ikke oppdateres: {exc}")
        return "\n".join(lines)

    def upload(
        files: list[str] | None, replace: bool = False, request: gr.Request = None, progress: gr.Progress = gr.Progress()
    ) -> str:
        """Lagre opplastede tekster i tekstmappen og oppdater indeksen; svaret er en statusrapport."""
        if not may_change(request):
            return NEEDS_TOKEN
        if not files:
            return "Velg én eller flere filer først."
        lines, changed = save_uploads(files, settings, bool(replace), Path(gradio_upload_folder()))
        return rebuilt(lines, progress, force=changed)

    def remove(source: str | None, request: gr.Request = None, progress: gr.Progress = gr.Progress()) -> tuple:
        if not may_change(request):
            return gr.update(visible=False), NEEDS_TOKEN
        try:
            moved = documents.remove(settings, source or "")
        except (documents.DocumentError, OSError) as exc:
            return gr.update(visible=False), f"Ikke fjernet: {exc}"
        return gr.update(visible=False), rebuilt([f"{source} er flyttet til papirkurven ({moved})."], progress, True)

    def restore(name: str | None, request: gr.Request = None, progress: gr.Progress = gr.Progress()) -> str:
        if not may_change(request):
            return NEEDS_TOKEN
        try:
            back = documents.restore(settings, name or "")
        except (documents.DocumentError, OSError) as exc:
            return f"Ikke gjenopprettet: {exc}"
        return rebuilt([f"{back} er gjenopprettet."], progress, True)

    def confirm(source: str | None) -> tuple:
        question = remove_question(documents.inventory(settings, service.sources()), source)
        return gr.update(visible=bool(question)), question

    def library() -> tuple:
        """The panel's table, skipped files, remove and restore choices, the meeting picker and the status line."""
        found = documents.inventory(settings, service.sources())
        sources = [d.source for d in found.documents]
        return (
            gr.update(value=document_rows(found)),
            skipped_text(found),
            gr.update(choices=sources, value=None),
            gr.update(choices=found.trash, value=None),
            gr.update(choices=meeting_choices(found)),
            service.status_line(),
        )

    def page_status() -> Iterator[str]:
        if not service.ready and not service.error:
            yield service.status_line()
            try:
                service.retriever()
            except Exception:  # the status line below says what is wrong
                pass
        yield service.status_line()

    with gr.Blocks(title="Møteassistent", analytics_enabled=False, delete_cache=(3600, 3600)) as app:
        cited = gr.State([])
        questions = gr.State([])
        gr.Markdown(
            "## Møteassistent\n"
            "Svarer med ordrette, kildehenviste utdrag fra møtetekstene. Spør på norsk eller engelsk."
        )
        with gr.Row(equal_height=False):
            with gr.Column(scale=3, min_width=340):
                meeting = gr.Dropdown(
                    choices=[(ALL_MEETINGS, "")], value="", label="Møte", elem_id="meeting-picker", interactive=True
                )
                chatbot = gr.Chatbot(
                    label="Samtale",
                    elem_id="chatbot",
                    height="60vh",
                    buttons=["copy"],
                    latex_delimiters=[],
                    autoscroll=False,
                    placeholder="**Spør om møtetekstene.** Svarene er ordrette sitater med kildehenvisning.",
                    examples=[{"text": q} for q in EXAMPLES],
                )
                msg = gr.Textbox(
                    label="Spørsmål",
                    placeholder="Skriv et spørsmål og trykk Enter",
                    elem_id="msg",
                    lines=1,
                    max_lines=6,
                )
                with gr.Row():
                    send = gr.Button("Send", variant="primary", elem_id="send", scale=2)
                    reset = gr.Button("Tøm samtalen", elem_id="clear", scale=1)
            with gr.Column(scale=2, min_width=300):
                status = gr.Markdown(service.status_line(), elem_id="index-status")
                choice = gr.Radio(choices=[], label="Vis i teksten", elem_id="citations", visible=False)
                viewer = gr.HTML(VIEWER_HINT, elem_id="viewer", js_on_load=VIEWER_JS)
                with gr.Accordion("Legg til tekster", open=False, elem_id="upload-panel"):
                    files = gr.File(
                        label=f"Tekstfiler ({', '.join(SUPPORTED_SUFFIXES)}; høyst {settings.max_file_mb:g} MB)",
                        file_count="multiple",
                        file_types=list(SUPPORTED_SUFFIXES),
                        elem_id="upload-files",
                    )
                    replace = gr.Checkbox(label="Erstatt eksisterende filer", value=False, elem_id="replace")
                    add = gr.Button("Legg til og oppdater indeksen", elem_id="upload-button")
                    result = gr.Textbox(label="Resultat", lines=4, interactive=False, elem_id="upload-result")
                with gr.Accordion("Dokumenter", open=False, elem_id="documents-panel"):
                    table = gr.Dataframe(
                        headers=TABLE_HEADERS, interactive=False, wrap=True, elem_id="documents-table"
                    )
                    skipped = gr.Markdown(elem_id="documents-skipped")
                    with gr.Row():
                        which = gr.Dropdown(choices=[], label="Dokument", elem_id="remove-choice", scale=3)
                        remove_button = gr.Button("Fjern …", elem_id="remove-button", scale=1)
                    with gr.Group(visible=False, elem_id="remove-confirm") as confirmation:
                        question = gr.Markdown(elem_id="remove-question")
                        with gr.Row():
                            yes = gr.Button("Ja, flytt til papirkurven", variant="stop", elem_id="remove-yes")
                            no = gr.Button("Avbryt", elem_id="remove-no")
                    with gr.Row():
                        trashed = gr.Dropdown(choices=[], label="I papirkurven", elem_id="restore-choice", scale=3)
                        restore_button = gr.Button("Gjenopprett", elem_id="restore-button", scale=1)
                    changed = gr.Textbox(label="Resultat", lines=3, interactive=False, elem_id="documents-result")

        answer_outputs = [msg, chatbot, questions, cited, choice, viewer]
        library_outputs = [table, skipped, which, trashed, meeting, status]
        private = {"api_visibility": "private", "show_progress": "minimal"}
        quiet = {"api_visibility": "private", "show_progress": "hidden"}
        asked = [msg, chatbot, questions, meeting]
        msg.submit(respond, asked, answer_outputs, **private).then(None, js=SHOW_ANSWER_JS)
        send.click(respond, asked, answer_outputs, **private).then(None, js=SHOW_ANSWER_JS)
        chatbot.example_select(pick_example, [chatbot, questions, meeting], answer_outputs, **private).then(
            None, js=SHOW_ANSWER_JS
        )
        choice.input(show, [choice, cited], viewer, **private)
        reset.click(clear, None, answer_outputs, queue=False, **private)
        chatbot.clear(clear, None, answer_outputs, queue=False, **private)  # the Chatbot's own bin icon
        add.click(lambda: BUILDING, None, status, queue=False, **quiet).then(
            upload, [files, replace], result, api_name="upload", api_visibility="undocumented"
        ).then(lambda: None, None, files, **quiet).then(library, None, library_outputs, **quiet)
        remove_button.click(confirm, which, [confirmation, question], **quiet)
        no.click(lambda: gr.update(visible=False), None, confirmation, queue=False, **quiet)
        yes.click(lambda: BUILDING, None, status, queue=False, **quiet).then(
            remove, which, [confirmation, changed], **private
        ).then(library, None, library_outputs, **quiet)
        restore_button.click(lambda: BUILDING, None, status, queue=False, **quiet).then(
            restore, trashed, changed, **private
        ).then(library, None, library_outputs, **quiet)
        app.load(page_status, None, status, **quiet).then(library, None, library_outputs, **quiet)
        gr.api(chat, api_name="chat", api_visibility="undocumented")
        for tool in tools:
            gr.api(tool, api_name=tool.__name__, queue=False)
    return app


def _progress_reporter(progress: gr.Progress) -> Callable[[str, int, int], None]:
    def report(stage: str, done: int, total: int) -> None:
        progress((done, total or None), desc=stage_name(stage), unit="trinn")

    return report


# Gradio picks its language from the browser's; the product speaks Norwegian whatever the browser says.
# The script must run before Gradio's own (server.NorwegianPage puts it first in the page's <head>).
NORWEGIAN = """<script>
for (const name of ["language", "languages"]) {
  Object.defineProperty(navigator, name, {get: () => (name === "language" ? "nb-NO" : ["nb-NO", "nb", "no"])});
}
</script>"""


def page_options(settings: Settings) -> dict[str, object]:
    """How the page is mounted: offline, no monitoring, no SSR, our theme, in Norwegian; the same for serve() and the tests."""
    return {
        "max_file_size": int(settings.max_file_mb * 1_000_000),
        "enable_monitoring": False,
        "footer_links": ["api", "settings"],
        "ssr_mode": False,
        "show_error": False,
        "theme": THEME,
        "css": CSS,
        "js": PAGE_JS,
    }
