"""Run a parser in a child process that cannot stall or exhaust the server.

PDF, Word and HTML parsers are large libraries fed with bytes from strangers: a
16 kB PDF can keep pypdf busy for minutes and a 3 MB one can take gigabytes. So
each such file is parsed in a child under a hard limit on address space and CPU
time, killed at a wall-clock deadline. Children are forked by a small helper
process (started once, single-threaded, the parsers already imported), never by
the server itself: forking a process with threads can inherit a held lock, and
multiprocessing's own fork server re-imports the program's main module in every
child.
"""

from __future__ import annotations

import importlib
import os
import pickle
import resource
import select
import signal
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import IO, Any

PRELOAD = ("assistant.ingest.formats", "pypdf", "docx", "bs4", "lxml.etree", "charset_normalizer")
_HEADER = struct.Struct("!Q")


@dataclass(frozen=True)
class Limits:
    seconds: float = 40.0  # wall clock per file, past the parsers' own 30 s; the child is killed after it
    memory_mb: int = 1024  # address space of the child


class Refusal(Exception):
    """The child stopped without a result: too slow, too large, or it crashed. The message says which."""


class Failure(Exception):
    """The parser raised; ``kind`` is the exception's class name, the message its text."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


@dataclass(frozen=True)
class Outcome:
    value: Any
    seconds: float
    peak_mb: float  # the child's own peak resident memory


def run_limited(fn: Callable[..., Any], *args: Any, limits: Limits = Limits()) -> Outcome:
    """``fn(*args)`` (a module-level function) in a child under ``limits``.

    Its exceptions come back as Failure; a child killed for time or memory, or one that crashed, as Refusal.
    """
    return _helper.call((fn.__module__, fn.__qualname__, args, limits))


class _Helper:
    """The parent's end: one helper process, asked one request at a time."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._process: subprocess.Popen[bytes] | None = None

    def call(self, request: tuple[str, str, tuple[Any, ...], Limits]) -> Outcome:
        limits = request[3]
        with self._lock:
            for attempt in (1, 2):  # a helper that died (killed, out of memory) is started again once
                process = self._started()
                try:
                    _send(process.stdin, request)  # type: ignore[arg-type]
                    reply = _receive(process.stdout, limits.seconds + 10)  # type: ignore[arg-type]
                except (OSError, EOFError, TimeoutError):
                    self._stop()
                    if attempt == 2:
                        raise Refusal("the parsing helper stopped") from None
                    continue
                break
        status, payload, seconds, peak_mb = reply
        if status == "refused":
            raise Refusal(payload)
        if status == "error":
            raise Failure(*payload)
        return Outcome(payload, seconds, peak_mb)

    def _started(self) -> subprocess.Popen[bytes]:
        if self._process is None or self._process.poll() is not None:
            code = f"import sys; sys.path[:0] = {sys.path!r}; from {__name__} import serve; serve()"
            self._process = subprocess.Popen(
                [sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, close_fds=True
            )
        return self._process

    def _stop(self) -> None:
        if self._process is not None:
            self._process.kill()
            self._process.wait()
            self._process = None


_helper = _Helper()


def shutdown() -> None:
    """Stop the helper process (it is started again when needed); its children's figures are then the caller's."""
    with _helper._lock:
        process = _helper._process
        if process is not None and process.stdin is not None:
            process.stdin.close()
            process.wait()
        _helper._process = None


def _send(stream: IO[bytes], value: object) -> None:
    data = pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
    stream.write(_HEADER.pack(len(data)) + data)
    stream.flush()


def _receive(stream: IO[bytes], timeout: float | None = None) -> Any:
    if timeout is not None and not select.select([stream], [], [], timeout)[0]:
        raise TimeoutError("no reply")
    header = _read_exactly(stream.fileno(), _HEADER.size)
    return pickle.loads(_read_exactly(stream.fileno(), _HEADER.unpack(header)[0]))


def _read_exactly(fd: int, size: int) -> bytes:
    chunks, left = [], size
    while left:
        chunk = os.read(fd, min(left, 1 << 20))
        if not chunk:
            raise EOFError("closed")
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


# ---- the helper process -------------------------------------------------------------------------


def serve() -> None:
    """The helper's loop: read a request, fork a child for it, answer with the child's result or its fate."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C in the terminal is the parent's to handle
    stdin, stdout = os.fdopen(os.dup(0), "rb"), os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)  # a parser that prints cannot corrupt the replies
    os.dup2(os.open(os.devnull, os.O_RDONLY), 0)
    for name in PRELOAD:
        try:
            importlib.import_module(name)
        except ImportError:
            pass
    while True:
        try:
            module, name, args, limits = _receive(stdin)
        except EOFError:
            return
        fn = getattr(importlib.import_module(module), name)
        _send(stdout, _in_child(fn, args, limits))


def _in_child(fn: Callable[..., Any], args: tuple[Any, ...], limits: Limits) -> tuple[str, Any, float, float]:
    start = time.monotonic()
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: limits first, then the parser; it never returns into the loop
        os.close(read_end)
        _run_child(write_end, fn, args, limits)
    os.close(write_end)
    data = _collect(read_end, start + limits.seconds)
    os.close(read_end)
    if data is None:
        os.kill(pid, signal.SIGKILL)
    _, status = os.waitpid(pid, 0)
    seconds = time.monotonic() - start
    if data:
        try:
            result = pickle.loads(data)
            return result[0], result[1], seconds, result[2]
        except Exception:  # a child killed while writing leaves half a message
            pass
    return "refused", _why(status, data is None, limits), seconds, 0.0


def _collect(fd: int, deadline: float) -> bytes | None:
    """Everything the child writes until it closes the pipe, or None when the deadline passes first."""
    chunks = []
    while True:
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([fd], [], [], left)[0]:
            return None
        chunk = os.read(fd, 1 << 20)
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)


def _run_child(fd: int, fn: Callable[..., Any], args: tuple[Any, ...], limits: Limits) -> None:
    code = 0
    try:
        memory = limits.memory_mb * 1024 * 1024
        resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
        cpu = int(limits.seconds) + 1
        resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1))
        too_big = ("error", ("MemoryError", f"reading it needs more than {limits.memory_mb} MB of memory"))
        try:
            result: tuple[str, Any] = ("ok", fn(*args))
        except MemoryError:
            result = too_big
        except Exception as exc:  # parsers raise many unrelated types for corrupt input
            result = ("error", (type(exc).__name__, str(exc)))
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        try:
            data = pickle.dumps((*result, peak), protocol=pickle.HIGHEST_PROTOCOL)
        except MemoryError:
            data = pickle.dumps((*too_big, peak))
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
    except BaseException:
        code = 1
    finally:
        os._exit(code)


def _why(status: int, timed_out: bool, limits: Limits) -> str:
    if timed_out or (os.WIFSIGNALED(status) and os.WTERMSIG(status) in (signal.SIGKILL, signal.SIGXCPU)):
        return f"reading it took longer than {limits.seconds:g} s"
    if os.WIFSIGNALED(status):
        return f"the parser crashed ({signal.Signals(os.WTERMSIG(status)).name})"
    return "the parser stopped without a result"
