from __future__ import annotations

from pathlib import Path

from assistant.settings import BUNDLED_MODEL, Settings


def test_defaults():
    s = Settings()
    assert (s.index, s.sources, s.model, s.host, s.port) == (Path("index"), Path("source_texts"), BUNDLED_MODEL, "127.0.0.1", 7860)


def test_environment_then_explicit_overrides(monkeypatch):
    monkeypatch.setenv("ASSISTANT_PORT", "8001")
    monkeypatch.setenv("ASSISTANT_INDEX", "/tmp/x")
    monkeypatch.setenv("ASSISTANT_MAX_FILE_MB", "2.5")
    s = Settings.from_env()
    assert (s.port, s.index, s.max_file_mb) == (8001, Path("/tmp/x"), 2.5)
    s = Settings.from_env(port=9000, index=None)
    assert (s.port, s.index) == (9000, Path("/tmp/x"))
