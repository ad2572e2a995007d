"""The input layer: id embeddings and transformed numeric features, concatenated."""

from __future__ import annotations

import torch
from torch import nn

from watchnext.data.batch import Batch
from watchnext.data.encoder import FeatureEncoder
from watchnext.data.vocab import MISSING


class InputLayer(nn.Module):
    """x = [emb(id_1), ..., emb(id_c), mean_emb(ids_m1), ..., dense]

    With ``id_tables=False`` the layer holds no tables: the embeddings ``[emb(id_1), ...,
    mean_emb(ids_m1), ...]`` come from outside (TorchRec's sharded tables, model/keyed.py, which
    compute the same thing) and only the dense features are appended here.
    """

    def __init__(self, encoder: FeatureEncoder, sparse: bool = False, id_tables: bool = True):
        super().__init__()
        cat, multi = (encoder.categorical, encoder.multi) if id_tables else ([], [])
        self.embeddings = nn.ModuleList(
            nn.Embedding(encoder.vocab_size(f.name), f.embedding_dim, padding_idx=MISSING,
                         sparse=sparse)
            for f in cat)
        self.bags = nn.ModuleList(
            nn.EmbeddingBag(encoder.vocab_size(f.name), f.embedding_dim, mode="mean",
                            padding_idx=MISSING, sparse=sparse)
            for f in multi)
        for table in [*self.embeddings, *self.bags]:
            nn.init.normal_(table.weight, std=0.05)
            with torch.no_grad():
                table.weight[MISSING].zero_()
        self.num_dense = len(encoder.numeric)
        self.id_dim = sum(f.embedding_dim for f in [*encoder.categorical, *encoder.multi])
        self.out_dim = self.id_dim + self.num_dense

    def forward(self, batch: Batch, embedded: torch.Tensor | None = None) -> torch.Tensor:
        """``embedded``: the id features' embeddings ``[N, id_dim]`` when the tables live
        outside this layer."""
        if embedded is not None:
            return torch.cat([embedded, batch.dense], dim=1)
        parts = [emb(batch.categorical[:, i]) for i, emb in enumerate(self.embeddings)]
        parts += [bag(batch.multi[:, j]) for j, bag in enumerate(self.bags)]
        parts.append(batch.dense)
        return torch.cat(parts, dim=1)
