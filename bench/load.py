"""Load: 16 concurrent clients against one `python -m assistant serve`, /api/answer against the page's /chat.

Each client sends its next request as soon as the previous one is answered
(a closed loop), so requests per second and latency are two views of the same
run: with 16 clients, latency ≈ 16 / throughput. The scenarios take turns in
short rounds, so that all of them see the same load from other users of the
machine. Questions come in two kinds:

- repeated: the bench's questions over and over, as examples and popular
  questions are; after the first round the answers are remembered;
- distinct: every request a question the server has not seen (a question
  plus a number), so every one is computed: the worst case.

`python bench/load.py` runs this section alone; `make bench` runs it after the others.
"""

from __future__ import annotations

import argparse
import http.client
import itertools
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
CLIENTS = 16
ENV = {"GRADIO_ANALYTICS_ENABLED": "False", "HF_HUB_OFFLINE": "1", "HF_HUB_DISABLE_TELEMETRY": "1"}
SCENARIOS = (("/chat", "repeated"), ("/api/answer", "repeated"), ("/chat", "distinct"), ("/api/answer", "distinct"))


def questions() -> list[str]:
    lines = []
    for name in ("heldout.jsonl", "calibration.jsonl"):
        lines += (ROOT / "tests" / name).read_text(encoding="utf-8").splitlines()
    return [json.loads(line)["question"] for line in lines if line.strip()]


class Client:
    """One client on one kept-alive connection. The standard library's http.client costs about 0.3 ms of CPU
    per request here; httpx's async client cost 5 ms, more than the server, and so measured itself."""

    def __init__(self, url: str) -> None:
        parsed = urlsplit(url)
        self.connection = http.client.HTTPConnection(parsed.hostname, parsed.port, timeout=120)

    def request(self, method: str, path: str, body: object = None) -> bytes:
        data = json.dumps(body).encode() if body is not None else None
        self.connection.request(method, path, body=data, headers={"Content-Type": "application/json"} if data else {})
        response = self.connection.getresponse()
        content = response.read()
        if response.status != 200:
            raise RuntimeError(f"{method} {path} answered {response.status}: {content[:200]!r}")
        return content

    def api_answer(self, question: str) -> None:
        json.loads(self.request("POST", "/api/answer", {"question": question}))

    def chat(self, question: str) -> None:
        """Gradio's REST protocol, as a program uses /chat: POST the call, then read its event stream."""
        event = json.loads(self.request("POST", "/gradio_api/call/chat", {"data": [question, None]}))["event_id"]
        stream = self.request("GET", f"/gradio_api/call/chat/{event}")
        if b"event: complete" not in stream:
            raise RuntimeError(f"/chat did not answer: {stream[:200]!r}")


def closed_loop(url: str, endpoint: str, asked: Iterator[str], seconds: float) -> list[float]:
    """CLIENTS clients in threads, each asking again as soon as it is answered; every latency in seconds."""
    latencies: list[float] = []
    lock = threading.Lock()
    deadline = time.perf_counter() + seconds

    def one_client() -> None:
        client = Client(url)
        call = client.chat if endpoint == "/chat" else client.api_answer
        while time.perf_counter() < deadline:
            with lock:
                question = next(asked)
            started = time.perf_counter()
            call(question)
            latencies.append(time.perf_counter() - started)

    with ThreadPoolExecutor(CLIENTS) as pool:
        for done in [pool.submit(one_client) for _ in range(CLIENTS)]:
            done.result()
    return latencies


def measure(url: str, rounds: int, seconds: float) -> dict[str, dict[str, float]]:
    base = questions()
    numbers = itertools.count(1)
    feeds = {"repeated": itertools.cycle(base), "distinct": (f"{q} {next(numbers)}" for q in itertools.cycle(base))}
    warm = Client(url)
    for question in base:  # every repeated question once through each endpoint, as earlier users would have
        warm.chat(question)
        warm.api_answer(question)
    samples: dict[tuple[str, str], list[float]] = {s: [] for s in SCENARIOS}
    spent = dict.fromkeys(SCENARIOS, 0.0)
    for _ in range(rounds):
        for endpoint, kind in SCENARIOS:
            started = time.perf_counter()
            samples[endpoint, kind] += closed_loop(url, endpoint, feeds[kind], seconds)
            spent[endpoint, kind] += time.perf_counter() - started
    return {
        f"{endpoint} {kind}": {
            "requests": len(samples[endpoint, kind]),
            "per_s": round(len(samples[endpoint, kind]) / spent[endpoint, kind], 1),
            "p50_ms": round(1000 * float(np.median(samples[endpoint, kind])), 1),
            "p95_ms": round(1000 * float(np.percentile(samples[endpoint, kind], 95)), 1),
        }
        for endpoint, kind in SCENARIOS
    }


def run(index: Path, rounds: int = 3, seconds: float = 5.0) -> dict[str, object]:
    """Start the real server on ``index``, load it, stop it; figures per scenario and the ratios asked for."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"http://127.0.0.1:{port}/"
    command = [sys.executable, "-m", "assistant", "serve", "--index", str(index), "--sources", str(ROOT / "assistant" / "data" / "corpus"), "--port", str(port)]
    server = subprocess.Popen(command, cwd=ROOT, env={**os.environ, **ENV}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 180
        while not _healthy(url):
            if server.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("the server did not start")
            time.sleep(0.1)
        load_before = os.getloadavg()[0]
        figures = measure(url, rounds, seconds)
    finally:
        server.terminate()
        server.wait(30)
    result: dict[str, object] = {
        "clients": CLIENTS,
        "rounds": rounds,
        "seconds_per_round": seconds,
        "load_average": [round(load_before, 2), round(os.getloadavg()[0], 2)],
        **figures,
    }
    for kind in ("repeated", "distinct"):
        api, page = figures[f"/api/answer {kind}"], figures[f"/chat {kind}"]
        result[f"ratio_{kind}"] = round(api["per_s"] / page["per_s"], 1)
    return result


def _healthy(url: str) -> bool:
    try:
        Client(url).request("GET", "/api/health")
    except (OSError, RuntimeError, http.client.HTTPException):
        return False
    return True


def table(load: dict[str, object]) -> str:
    lines = [
        f"load: {load['clients']} concurrent clients, closed loop, {load['rounds']} rounds of "
        f"{load['seconds_per_round']} s per scenario, taking turns; load average {load['load_average']}",
        "  scenario                    requests/s   p50 ms   p95 ms",
    ]
    for endpoint, kind in SCENARIOS:
        f = load[f"{endpoint} {kind}"]
        lines.append(f"  {endpoint + ' ' + kind:<27} {f['per_s']:>10} {f['p50_ms']:>8} {f['p95_ms']:>8}")
    lines.append(f"  /api/answer ÷ /chat: {load['ratio_repeated']}x (repeated), {load['ratio_distinct']}x (distinct)")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=5.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="ks-load-") as tmp:
        index = Path(tmp) / "index"
        subprocess.run([sys.executable, "-m", "assistant", "build", "--index", str(index), "--sources", str(ROOT / "assistant" / "data" / "corpus")],
                       cwd=ROOT, env={**os.environ, **ENV}, check=True, capture_output=True)
        print(table(run(index, args.rounds, args.seconds)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
