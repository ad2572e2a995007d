import torch

from watchnext.data.batch import iterate
from watchnext.data.encoder import FeatureEncoder


def test_shuffled_iteration_is_seeded_and_covers_every_row(config, impressions):
    batch = FeatureEncoder(config).fit(impressions).transform(impressions)

    def order(seed):
        gen = torch.Generator().manual_seed(seed)
        return torch.cat([mb.dense[:, 0] for mb in iterate(batch, 256, True, gen)])

    assert torch.equal(order(1), order(1))
    assert not torch.equal(order(1), order(2))
    assert torch.equal(order(1).sort().values, batch.dense[:, 0].sort().values)


def test_select_keeps_fields_aligned(config, impressions):
    batch = FeatureEncoder(config).fit(impressions).transform(impressions)
    picked = batch.select(torch.tensor([5, 2]))
    assert picked.labels.tolist() == batch.labels[[5, 2]].tolist()
    assert picked.users.tolist() == batch.users[[5, 2]].tolist()
