"""The sandbox that parses untrusted files: a child that runs out of time or memory, or crashes, is stopped and
reported, and the caller goes on."""

from __future__ import annotations

import os
import threading
import time

import pytest

from assistant.ingest.sandbox import Failure, Limits, Refusal, run_limited


def test_a_result_and_the_childs_own_figures_come_back() -> None:
    outcome = run_limited(sorted, [3, 1, 2])
    assert outcome.value == [1, 2, 3] and outcome.seconds < 30 and outcome.peak_mb > 0


def test_an_exception_in_the_child_comes_back_with_its_kind_and_message() -> None:
    with pytest.raises(Failure, match="invalid literal") as caught:
        run_limited(int, "ikke et tall")
    assert caught.value.kind == "ValueError"


def test_a_child_past_its_deadline_is_killed_and_the_next_call_works() -> None:
    started = time.monotonic()
    with pytest.raises(Refusal, match="took longer than 0.5 s"):
        run_limited(time.sleep, 30, limits=Limits(seconds=0.5))
    assert time.monotonic() - started < 10
    assert run_limited(len, "tre").value == 3


def test_a_child_past_its_memory_is_stopped_with_a_clear_reason() -> None:
    with pytest.raises(Failure, match="needs more than 300 MB of memory"):
        run_limited(bytearray, 1_000_000_000, limits=Limits(memory_mb=300))


def test_a_crashing_child_is_reported_and_the_parent_lives_on() -> None:
    with pytest.raises(Refusal, match="crashed \\(SIGABRT\\)"):
        run_limited(os.abort)
    assert run_limited(len, "to").value == 2


def test_calls_from_several_threads_each_get_their_own_answer() -> None:
    results: dict[int, int] = {}

    def ask(n: int) -> None:
        results[n] = run_limited(len, "x" * n).value

    threads = [threading.Thread(target=ask, args=(n,)) for n in range(1, 6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == {n: n for n in range(1, 6)}
