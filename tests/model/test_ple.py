import torch

from tests.conftest import make_impressions, small_config_dict
from watchnext.api import Ranker
from watchnext.config import config_from_dict
from watchnext.model.ple import PLE, ExtractionLayer


def _ple(**kw):
    args = {"in_dim": 6, "gate_dim": 6, "num_tasks": 3, "task_experts": 2, "shared_experts": 2,
            "num_layers": 2, "expert_units": (5,), **kw}
    return PLE(**args)


def _all_gates(ple, x, gate_x):
    """Every gate of every layer: the task gates [T, N, m_t + m_s] and the shared gates."""
    task, shared, q, gate_q = [], [], x, gate_x
    for layer in ple.layers:
        q, gates, shared_gate = layer(q, gate_q)
        gate_q = q
        task.append(gates)
        shared.append(shared_gate)
    return task, shared


def test_every_gate_sums_to_one_without_dropout():
    ple = _ple(num_layers=3).eval()
    x = torch.randn(64, 6)
    features, gates = ple(x, x)
    assert features.shape == (3, 64, 5) and gates.shape == (64, 3, 4)
    torch.testing.assert_close(gates.sum(-1), torch.ones(64, 3))
    task, shared = _all_gates(ple, x, x)
    for gates in task:
        torch.testing.assert_close(gates.sum(-1), torch.ones(3, 64))
    assert [g is None for g in shared] == [False, False, True]  # no shared gate in the last layer
    for gates in shared[:-1]:
        assert gates.shape == (64, 3 * 2 + 2)
        torch.testing.assert_close(gates.sum(-1), torch.ones(64))


def test_gate_dropout_zeroes_weights_in_training_only_and_keeps_sums():
    ple = _ple(gate_dropout=0.3).train()
    torch.manual_seed(0)
    x = torch.randn(512, 6)
    task, shared = _all_gates(ple, x, x)
    for gates in [*task, shared[0]]:
        torch.testing.assert_close(gates.sum(-1), torch.ones(gates.shape[:-1]))
        assert 0.2 < (gates == 0).float().mean().item() < 0.4
    task, shared = _all_gates(ple.eval(), x, x)
    assert all((g > 0).all() for g in [*task, shared[0]])


def _reference(ple, x, gate_x):
    """PLE written from the paper's equations: one expert and one gate at a time."""
    def expert(layer, i, q):
        for w, b in zip(layer.experts.weights, layer.experts.biases, strict=True):
            q = torch.relu(q @ w[i] + b[i])
        return q

    t = ple.num_tasks
    q = [x] * (t + 1)  # q_1..q_T, q_s
    gate_q = [gate_x] * (t + 1)
    for layer in ple.layers:
        m_t, m_s = layer.task_experts, layer.shared_experts
        own = [[expert(layer, k * m_t + i, q[k]) for i in range(m_t)] for k in range(t)]
        shared = [expert(layer, t * m_t + i, q[t]) for i in range(m_s)]
        new = []
        for k in range(t):
            w, b = layer.task_gates.weights[0][k], layer.task_gates.biases[0][k]
            g = torch.softmax(gate_q[k] @ w + b, -1)
            candidates = own[k] + shared
            new.append(sum(g[:, i:i + 1] * e for i, e in enumerate(candidates)))
        if layer.shared_gate is not None:
            g = torch.softmax(layer.shared_gate(gate_q[t]), -1)
            candidates = [e for experts in own for e in experts] + shared
            new.append(sum(g[:, i:i + 1] * e for i, e in enumerate(candidates)))
        q = gate_q = new
    return torch.stack(q)


def test_forward_matches_the_equations_one_expert_at_a_time():
    torch.manual_seed(0)
    ple = _ple(num_layers=3, task_experts=2, shared_experts=3, expert_units=(7, 5),
               gate_dim=4).eval()
    x, gate_x = torch.randn(20, 6), torch.randn(20, 4)
    features, _ = ple(x, gate_x)
    torch.testing.assert_close(features, _reference(ple, x, gate_x))


def test_a_task_reads_its_own_and_the_shared_experts_only():
    """One layer (CGC): changing task 1's private experts moves task 1's output, not task 0's."""
    torch.manual_seed(0)
    layer = ExtractionLayer(6, 6, num_tasks=2, task_experts=2, shared_experts=1,
                            expert_units=(5,), shared_gate=False).eval()
    x = torch.randn(30, 6)
    before, _, _ = layer(x, x)
    with torch.no_grad():
        layer.experts.weights[0][2:4].add_(1.0)  # task 1's two experts
    after, _, _ = layer(x, x)
    torch.testing.assert_close(after[0], before[0])
    assert (after[1] - before[1]).abs().max() > 1e-3
    with torch.no_grad():
        layer.experts.weights[0][4].add_(1.0)  # the shared expert
    shared_moved, _, _ = layer(x, x)
    assert (shared_moved[0] - after[0]).abs().max() > 1e-3


def test_a_ple_ranker_trains_saves_and_loads(tmp_path):
    config = config_from_dict(small_config_dict(kind="ple", shared_experts=2))
    impressions = make_impressions()
    ranker = Ranker(config.replace(train={"max_epochs": 1})).fit(impressions)
    ranker.save(tmp_path / "ple")
    loaded = Ranker.load(tmp_path / "ple")
    assert loaded.model.ple is not None
    torch.testing.assert_close(torch.from_numpy(loaded.predict(impressions)),
                               torch.from_numpy(ranker.predict(impressions)))
