"""Search: a question to ranked passages with the evidence for each.

Owns the retriever (``retrieval``: dense and sentence cosines, BM25, the named
meeting, filters, follow-ups) and the learned ranking and decline models
stored in ``data/ranking.json`` (``ranking``). May import ``storage``,
``models`` and ``ingest``.
"""
