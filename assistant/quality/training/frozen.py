"""What both trainers share: the frozen lower layers run once, and an epoch counter that resumes.

Only the top layers are trained, so the output of the layers below is the same in every epoch;
computing it once per text (kept as float16, one row per token) makes an epoch cost only the
trained layers, which is what makes training on two CPU cores possible.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np


class FrozenStates:
    """The frozen lower layers' output for every token sequence, float16, one row per token."""

    def __init__(self, encoder, ids: Sequence[Sequence[int]], below: int, pad_id: int, batch: int) -> None:
        import torch
        from tqdm.auto import tqdm

        self.lengths = np.array([len(i) for i in ids], np.int64)
        self.offsets = np.concatenate([[0], np.cumsum(self.lengths)])
        self.states = torch.empty((int(self.offsets[-1]), encoder.config.hidden_size), dtype=torch.float16)
        order = np.argsort(self.lengths, kind="stable")
        with torch.inference_mode():
            for start in tqdm(range(0, len(order), batch), desc="frozen layers", unit="batch", mininterval=10):
                rows = order[start : start + batch]
                width = int(self.lengths[rows].max())
                input_ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
                mask = torch.zeros((len(rows), width), dtype=torch.long)
                for j, row in enumerate(rows):
                    input_ids[j, : self.lengths[row]] = torch.tensor(ids[row])
                    mask[j, : self.lengths[row]] = 1
                hidden, attend = encoder.embeddings(input_ids=input_ids), additive(mask)
                for layer in encoder.encoder.layer[:below]:
                    hidden = layer(hidden, attend)
                for j, row in enumerate(rows):
                    self.states[self.offsets[row] : self.offsets[row + 1]] = hidden[j, : self.lengths[row]].half()

    def batch(self, rows: Sequence[int]):
        """The kept states of ``rows``, padded to the longest, with their attention mask."""
        import torch

        width = int(self.lengths[list(rows)].max())
        hidden = torch.zeros((len(rows), width, self.states.shape[1]), dtype=torch.float32)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for j, row in enumerate(rows):
            n = int(self.lengths[row])
            hidden[j, :n] = self.states[self.offsets[row] : self.offsets[row] + n].float()
            mask[j, :n] = 1
        return hidden, mask


def additive(mask):
    """The attention mask as BERT layers take it when called directly: 0 to attend, -1e9 to ignore."""
    return (1.0 - mask[:, None, None, :].float()) * -1e9


@dataclass
class Progress:
    """The last finished epoch and every epoch's figures, saved in the checkpoint."""

    epoch: int = 0
    history: list[dict[str, float]] = field(default_factory=list)
