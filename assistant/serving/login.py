"""The login page and the sessions it opens: Norwegian, self-contained, and the same for every route.

Gradio's own login form is English, forgets the user name after a wrong
password and speaks only to Gradio's routes. This page posts to the gate in
``auth.py``, which checks the password (throttled), opens a session and
redirects to the chat; the session cookie then opens the page, Gradio's routes,
the JSON API and MCP alike, as Basic credentials or a token do.
"""

from __future__ import annotations

import html
import secrets
import threading
import time
from collections import OrderedDict

COOKIE = "ks-session"
SESSION_SECONDS = 7 * 24 * 3600
MAX_SESSIONS = 10_000


class Sessions:
    """Open sessions: a random token per login, for a week; the oldest go first past MAX_SESSIONS."""

    def __init__(self, seconds: float = SESSION_SECONDS, limit: int = MAX_SESSIONS) -> None:
        self.seconds, self.limit = seconds, limit
        self._open: OrderedDict[str, tuple[str, float]] = OrderedDict()
        self._lock = threading.Lock()

    def open(self, user: str) -> str:
        token = secrets.token_urlsafe(32)
        with self._lock:
            self._open[token] = (user, time.monotonic() + self.seconds)
            while len(self._open) > self.limit:
                self._open.popitem(last=False)
        return token

    def user(self, token: str | None) -> str | None:
        if not token:
            return None
        with self._lock:
            found = self._open.get(token)
            if found is None:
                return None
            if found[1] < time.monotonic():
                del self._open[token]
                return None
            return found[0]

    def close(self, token: str | None) -> None:
        with self._lock:
            self._open.pop(token or "", None)


ERRORS = {
    "wrong": "Feil brukernavn eller passord.",
    "busy": "For mange innloggingsforsøk akkurat nå. Vent noen sekunder og prøv igjen.",
    "missing": "Skriv inn brukernavn og passord.",
}

_PAGE = """<!doctype html>
<html lang="nb">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Logg inn – Møteassistent</title>
<style>
  body {{ font-family: system-ui, sans-serif; background: #f4f5f7; color: #1f2328; margin: 0;
         display: flex; min-height: 100vh; align-items: center; justify-content: center; }}
  main {{ background: white; padding: 2rem 2.25rem; border-radius: 10px; width: min(22rem, 90vw);
         box-shadow: 0 1px 4px rgba(0,0,0,.12); }}
  h1 {{ font-size: 1.35rem; margin: 0 0 .25rem; }}
  p.lead {{ margin: 0 0 1.25rem; color: #57606a; }}
  label {{ display: block; font-weight: 600; margin: .9rem 0 .3rem; }}
  input {{ width: 100%; box-sizing: border-box; font-size: 1rem; padding: .55rem .6rem;
          border: 1px solid #8c959f; border-radius: 6px; }}
  button {{ margin-top: 1.4rem; width: 100%; font-size: 1rem; padding: .65rem; border: 0; border-radius: 6px;
           background: #1d4ed8; color: white; cursor: pointer; }}
  button:hover {{ background: #1e40af; }}
  .error {{ background: #fff1f0; border: 1px solid #cf222e; color: #82071e; padding: .6rem .7rem;
           border-radius: 6px; margin: 0 0 .5rem; }}
</style>
</head>
<body>
<main>
  <h1>Møteassistent</h1>
  <p class="lead">Logg inn for å spørre i møtetekstene.</p>
  {error}
  <form method="post" action="login">
    <label for="username">Brukernavn</label>
    <input id="username" name="username" autocomplete="username" value="{username}" {focus_user} required>
    <label for="password">Passord</label>
    <input id="password" name="password" type="password" autocomplete="current-password" {focus_password} required>
    <button type="submit">Logg inn</button>
  </form>
</main>
</body>
</html>
"""


def login_page(username: str = "", error: str = "") -> bytes:
    """The form, with the name already typed kept, and why the last attempt failed (every value escaped)."""
    message = f'<p class="error" role="alert">{html.escape(ERRORS.get(error, error))}</p>' if error else ""
    return _PAGE.format(
        error=message,
        username=html.escape(username, quote=True),
        focus_user="" if username else "autofocus",
        focus_password="autofocus" if username else "",
    ).encode("utf-8")
