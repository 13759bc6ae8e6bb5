"""Answering: ranked passages to an answer that quotes them, or a decline.

Owns what an answer is (``types``), the decision which extracts answer and
which sentence to highlight (``answer``, with the reader in ``reading``), and
the Markdown and plain text it is shown as (``render``). May import ``search``
and the stages below it.
"""
