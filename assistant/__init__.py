"""Cited, extractive answers from meeting texts: dense + lexical retrieval, no LLM.

    from assistant import Retriever, answer
    r = Retriever.load("index")
    a = answer("Hva krevde KS om SLT?", r)
"""

from .answering.answer import answer
from .answering.types import Answer, Citation
from .ingest.chunking import Chunk, chunk_document
from .storage.indexing import BuildReport, build_index
from .search.retrieval import Hit, Retriever
from .settings import Settings
from .ingest.sources import Document
from .storage.errors import StoreError

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
