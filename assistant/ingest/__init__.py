"""Ingest: from a file on disk to passages with their meeting, line numbers and words.

Owns the formats (text, Markdown, HTML, Word, PDF, archives) and the sandbox that
parses untrusted files, the meeting a document records (title, date, kind), the
chunking into passages and sentences, and the Norwegian analysis BM25 counts
(``lexical``). Imports nothing else of the package but ``settings``: every
other stage builds on it.
"""
