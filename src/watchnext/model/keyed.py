"""The id tables as one TorchRec ``EmbeddingBagCollection``: the form TorchRec's planner shards.

Needs the ``sharded`` extra (torchrec, fbgemm-gpu-cpu); imported only for
``train.embeddings = "sharded"``. It computes exactly what ``InputLayer``'s tables compute:

    emb(id)          = table[id]                 one id: a SUM bag of that id alone
    mean_emb(ids)    = mean of table[i], i in ids  a multi-valued feature: a MEAN bag
    id == MISSING (0)  is left out of the bag      nn.Embedding's / EmbeddingBag's padding_idx

so an empty bag (a missing id, or only padding) is a zero vector, and row 0 is never read or
trained: the tables export to ``InputLayer``'s ``nn.Embedding`` / ``nn.EmbeddingBag`` weights
unchanged (train/sharded.py).

Initial values are drawn per block of rows from a generator seeded by (seed, table, block), so
a table's values do not depend on how the planner cut it or on which process holds a block:
a run on 1 process and on 2 starts from the same tables.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn
from torchrec import EmbeddingBagCollection, EmbeddingBagConfig, KeyedJaggedTensor, PoolingType

from watchnext.data.encoder import FeatureEncoder
from watchnext.data.vocab import MISSING

INIT_STD = 0.05  # InputLayer's initialisation
_BLOCK = 65_536  # rows per seeded initialisation block


def table_name(feature: str) -> str:
    return f"t_{feature}"


class KeyedIdTables(nn.Module):
    """One bag per id feature, categorical features first, in the encoder's order."""

    def __init__(self, encoder: FeatureEncoder, device: str = "meta"):
        """On the ``meta`` device (no memory) by default: DMP allocates each process's share."""
        super().__init__()
        features = [*encoder.categorical, *encoder.multi]
        self.features = [f.name for f in features]
        self.num_categorical = len(encoder.categorical)
        self.dims = [f.embedding_dim for f in features]
        self.ebc = EmbeddingBagCollection(tables=[
            EmbeddingBagConfig(name=table_name(f.name), embedding_dim=f.embedding_dim,
                               num_embeddings=encoder.vocab_size(f.name), feature_names=[f.name],
                               pooling=PoolingType.SUM if i < self.num_categorical
                               else PoolingType.MEAN)
            for i, f in enumerate(features)], device=torch.device(device))

    def jagged(self, categorical: torch.Tensor, multi: torch.Tensor) -> KeyedJaggedTensor:
        """The ids (``Batch.categorical``, ``Batch.multi``) as one jagged tensor, feature-major,
        MISSING ids left out."""
        columns = [categorical[:, i:i + 1] for i in range(self.num_categorical)]
        columns += [multi[:, j] for j in range(len(self.features) - self.num_categorical)]
        values, lengths = [], []
        for ids in columns:
            present = ids != MISSING
            values.append(ids[present])
            lengths.append(present.sum(1))
        return KeyedJaggedTensor.from_lengths_sync(keys=self.features, values=torch.cat(values),
                                                   lengths=torch.cat(lengths).to(torch.int64))

    def forward(self, categorical: torch.Tensor, multi: torch.Tensor) -> torch.Tensor:
        """``[N, sum of dims]``: the features' embeddings side by side, as InputLayer orders them."""
        by_feature = self.ebc(self.jagged(categorical, multi)).to_dict()
        return torch.cat([by_feature[name] for name in self.features], dim=1)


def fill_initial(out: torch.Tensor, seed: int, table: int, dim: int, row: int = 0,
                 column: int = 0) -> None:
    """Write table number ``table``'s (``dim`` columns) initial values into ``out``, the part of
    it from row ``row`` and column ``column`` (row MISSING is zero), one seeded block of rows at
    a time, so the only temporary is one block."""
    rows, columns = out.shape
    for block in range(row // _BLOCK, (row + rows - 1) // _BLOCK + 1):
        key = np.random.SeedSequence([seed, table, block]).generate_state(1, np.uint64)[0]
        generator = torch.Generator().manual_seed(int(key >> np.uint64(1)))
        values = torch.randn(_BLOCK, dim, generator=generator)[:, column:column + columns] * INIT_STD
        lo, hi = max(row, block * _BLOCK), min(row + rows, (block + 1) * _BLOCK)
        out[lo - row:hi - row].copy_(values[lo - block * _BLOCK:hi - block * _BLOCK])
    if row <= MISSING < row + rows:
        out[MISSING - row].zero_()
