"""The gate-health kind's comparison: Fisher's exact test between the two arms, with its power."""

from __future__ import annotations

import pytest

from watchnext.sim.polarisation import compare, effective_experts
from watchnext.sim.stats import fisher_exact_greater


def _arm(gate_dropout: float, polarised: int, runs: int) -> dict:
    return {"gate_dropout": gate_dropout, "polarised_runs": polarised, "runs": [{}] * runs}


def test_the_arm_without_gate_dropout_is_tested_for_polarising_more_often():
    test = compare({"gate_dropout_0.1": _arm(0.1, 0, 30), "no_gate_dropout": _arm(0.0, 6, 30)})
    assert (test["more_polarised"], test["than"]) == ("no_gate_dropout", "gate_dropout_0.1")
    assert test["p_value"] == pytest.approx(fisher_exact_greater(6, 30, 0, 30)) and test["p_value"] < 0.05
    assert 0.7 < test["power_20_vs_0"] < 0.8  # 30 seeds an arm: ~74% power for 20% vs 0%
    assert compare({"only": _arm(0.1, 1, 8)}) is None


def test_effective_experts():
    assert effective_experts([0.25] * 4) == pytest.approx(4)
    assert effective_experts([1.0, 0.0, 0.0]) == pytest.approx(1)
