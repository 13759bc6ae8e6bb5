"""Cited, extractive answers from meeting texts: dense + lexical retrieval, no LLM.

    from assistant import Retriever, answer
    r = Retriever.load("index")
    a = answer("Hva krevde KS om SLT?", r)
"""

from .answer import Answer, Citation, answer
from .chunking import Chunk, chunk_document
from .indexing import BuildReport, build_index
from .retrieval import Hit, Retriever
from .settings import Settings
from .sources import Document
from .store import StoreError

__all__ = [
    "Answer",
    "BuildReport",
    "Chunk",
    "Citation",
    "Document",
    "Hit",
    "Retriever",
    "Settings",
    "StoreError",
    "answer",
    "build_index",
    "chunk_document",
]
