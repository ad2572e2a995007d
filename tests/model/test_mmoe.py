import torch

from watchnext.model.mmoe import MMoE, gate_dropout


def test_gates_sum_to_one_without_dropout():
    mmoe = MMoE(in_dim=6, gate_dim=6, num_experts=4, num_tasks=3, expert_units=(5,)).eval()
    x = torch.randn(64, 6)
    mixed, gates = mmoe(x, x)
    assert mixed.shape == (3, 64, 5) and gates.shape == (64, 3, 4)
    torch.testing.assert_close(gates.sum(-1), torch.ones(64, 3))


def test_gates_sum_to_one_with_gate_dropout_and_some_are_zeroed():
    mmoe = MMoE(in_dim=6, gate_dim=6, num_experts=4, num_tasks=3, expert_units=(5,),
                gate_dropout=0.3).train()
    torch.manual_seed(0)
    x = torch.randn(512, 6)
    _, gates = mmoe(x, x)
    torch.testing.assert_close(gates.sum(-1), torch.ones(512, 3))
    zero_share = (gates == 0).float().mean().item()
    assert 0.2 < zero_share < 0.4


def test_gate_dropout_renormalises_and_keeps_fully_dropped_rows():
    gates = torch.softmax(torch.randn(1000, 2, 8), -1)
    dropped = gate_dropout(gates, 0.1, torch.Generator().manual_seed(0))
    kept = dropped > 0
    torch.testing.assert_close(dropped.sum(-1), torch.ones(1000, 2))
    ratio = dropped[kept] / gates[kept]
    assert (ratio >= 1 - 1e-6).all()
    everything = gate_dropout(gates, 0.999999, torch.Generator().manual_seed(0))
    torch.testing.assert_close(everything, gates)


def test_mixture_is_the_gate_weighted_sum_of_experts():
    mmoe = MMoE(in_dim=3, gate_dim=3, num_experts=2, num_tasks=2, expert_units=(4,)).eval()
    x = torch.randn(5, 3)
    mixed, gates = mmoe(x, x)
    experts = mmoe.experts(x)  # [E, N, d]
    expected = gates[:, 1, 0:1] * experts[0] + gates[:, 1, 1:2] * experts[1]
    torch.testing.assert_close(mixed[1], expected)
