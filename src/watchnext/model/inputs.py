"""The input layer: id embeddings and transformed numeric features, concatenated."""

from __future__ import annotations

import torch
from torch import nn

from watchnext.data.batch import Batch
from watchnext.data.encoder import FeatureEncoder
from watchnext.data.vocab import MISSING


class InputLayer(nn.Module):
    """x = [emb(id_1), ..., emb(id_c), mean_emb(ids_m1), ..., dense]"""

    def __init__(self, encoder: FeatureEncoder, sparse: bool = False):
        super().__init__()
        self.embeddings = nn.ModuleList(
            nn.Embedding(encoder.vocab_size(f.name), f.embedding_dim, padding_idx=MISSING,
                         sparse=sparse)
            for f in encoder.categorical)
        self.bags = nn.ModuleList(
            nn.EmbeddingBag(encoder.vocab_size(f.name), f.embedding_dim, mode="mean",
                            padding_idx=MISSING, sparse=sparse)
            for f in encoder.multi)
        for table in [*self.embeddings, *self.bags]:
            nn.init.normal_(table.weight, std=0.05)
            with torch.no_grad():
                table.weight[MISSING].zero_()
        self.num_dense = len(encoder.numeric)
        self.out_dim = (sum(e.embedding_dim for e in self.embeddings)
                        + sum(b.embedding_dim for b in self.bags) + self.num_dense)

    def forward(self, batch: Batch) -> torch.Tensor:
        parts = [emb(batch.categorical[:, i]) for i, emb in enumerate(self.embeddings)]
        parts += [bag(batch.multi[:, j]) for j, bag in enumerate(self.bags)]
        parts.append(batch.dense)
        return torch.cat(parts, dim=1)
