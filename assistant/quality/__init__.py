"""Quality: measuring the product and learning its models from the question bank.

Owns the evaluation (``evaluation``), the cross-validated choice of ranking and
decline (``tuning``) and the training of the retriever adapter and the reader
(``training``). Used by the CLI (``eval``, ``tune``, ``train``) and the tests;
may import every stage below serving. Nothing that answers imports it.
"""
