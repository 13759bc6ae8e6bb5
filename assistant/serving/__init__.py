"""Serving: the ways in, the CLI, the browser page, the JSON API and MCP, with their one auth.

Owns the service every front end shares (``service``: one retriever, the
cache of answers, the index's manifest and generation), the FastAPI app and
its routes (``server``, ``api``), the Gradio page (``ui``, ``viewer``,
``library``, ``documents``), auth and limits, and the CLI (``cli``). The top
stage: may import every other; reaches the index only through ``service``.
"""
