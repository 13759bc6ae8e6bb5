"""Cold start: process start to the first answer, for `ask` at each precision and for the app."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path



from common import QUESTION, ROOT, child_env, median, peak_mb, run_child  # bench/common.py, which puts the project on the path
from assistant.models import embedding


# ---- cold start -----------------------------------------------------------------------------------


def cold_start(work: Path, repeats: int) -> dict[str, object]:
    """Process start to first answer (CLI, both precisions) and to the app accepting and answering."""
    result: dict[str, object] = {"repeats": repeats}
    for precision in embedding.PRECISIONS:
        index = str(work / f"bundled-{precision}")
        seconds, rss, _ = run_child(["build", "--index", index, "--sources", str(ROOT / "assistant" / "data" / "corpus"), "--precision", precision])
        asks = [run_child(["ask", QUESTION, "--index", index, "--precision", precision]) for _ in range(repeats)]
        result[precision] = {"bundled_build_s": round(seconds, 2), "bundled_build_peak_rss_mb": rss,
                             "ask_first_answer_s": median([a[0] for a in asks]),
                             "ask_peak_rss_mb": max(a[1] for a in asks)}
    app = [_app_start(work / "bundled-q4") for _ in range(repeats)]
    result["app_accepting_s"] = median([a["accepting_s"] for a in app])
    result["app_first_answer_s"] = median([a["first_answer_s"] for a in app])
    result["app_peak_rss_mb"] = max(a["peak_rss_mb"] for a in app)
    return result


def _app_start(index: Path) -> dict[str, float]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"http://127.0.0.1:{port}/"
    start = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "assistant", "serve", "--index", str(index), "--sources",
                             str(ROOT / "assistant" / "data" / "corpus"), "--port", str(port)], cwd=ROOT, env=child_env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait_until(lambda: _get(url + "gradio_api/info"), proc, 180)
        accepting = time.perf_counter() - start
        _ask_app(url, QUESTION)
        first_answer = time.perf_counter() - start
        rss = peak_mb(Path(f"/proc/{proc.pid}/status").read_text())
    finally:
        proc.terminate()
        proc.wait(30)
    return {"accepting_s": accepting, "first_answer_s": first_answer, "peak_rss_mb": rss}


def _wait_until(ready: Callable[[], bool], proc: subprocess.Popen, limit: float) -> None:
    deadline = time.monotonic() + limit
    while not ready():
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError("the app did not start")
        time.sleep(0.05)


def _get(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


def _ask_app(url: str, question: str) -> str:
    """Gradio's REST protocol: POST the call, then read its event stream until 'complete'."""
    request = urllib.request.Request(url + "gradio_api/call/chat", json.dumps({"data": [question, None]}).encode(),
                                     {"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=120) as response:
        event = json.loads(response.read())["event_id"]
    with urllib.request.urlopen(f"{url}gradio_api/call/chat/{event}", timeout=120) as response:
        stream = response.read().decode()
    if "event: complete" not in stream:
        raise RuntimeError(f"the app did not answer: {stream[:200]}")
    return stream


