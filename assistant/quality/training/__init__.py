"""Training the two learned readers from the invented texts and questions in ``training/``.

``mining`` runs the product's own retriever over the training questions to find
what a reader must tell apart (the hard negatives); ``reader`` trains the
cross-encoder that reads a question and a sentence together; ``retriever``
fine-tunes the embedding model. Nothing here runs when the product answers:
the shipped results are small adapters in ``assistant/data/``.
"""
