"""Storage: building, keeping and opening the index, on local files or in Qdrant.

Owns the build (``indexing``: sources to passages to vectors to a new
generation, incrementally), the local files (``store``), BM25 (``bm25``),
the filters a search may carry (``filters``), the errors an index can raise
(``errors``) and the backends (``backends``: local FAISS, Qdrant). Only this
stage opens index files. May import ``models`` and ``ingest``. A new backend
plugs in under ``backends``.
"""
