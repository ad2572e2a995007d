"""The audit's verdicts, the warning on the tower, and the JSON and table forms."""

import math

import numpy as np
import pytest

from tests.evaluate.test_bias_estimators import multiplicative
from watchnext.data.errors import DataError
from watchnext.evaluate.bias import LearnedBias
from watchnext.evaluate.bias_audit import AuditLog, Estimate
from watchnext.evaluate.bias_audit_report import (
    Audit,
    run_audit,
    table_rows,
    to_json,
    tower_warnings,
    verdict,
)


def _estimate(values, half=0.2):
    """Position 1 is the reference (a zero-width interval); others +-half around the value."""
    value = dict(enumerate(values, start=1))
    width = {p: half if p > 1 else 0.0 for p in value}
    return Estimate(value, {p: v - width[p] for p, v in value.items()},
                    {p: v + width[p] for p, v in value.items()})


ESTIMATES = {"randomised": {"phone": _estimate([0, -0.5, -0.9])},
             "fixed_effects": {"phone": _estimate([0, -0.45, -0.95])},
             "pbm": {"phone": _estimate([0, -0.3, -0.6], half=0.05)}}


def test_no_warning_when_the_tower_is_inside_every_logit_interval():
    assert tower_warnings(ESTIMATES, {"phone": {1: 0.0, 2: -0.5, 3: -0.9}}) == []


def test_warning_names_estimator_device_position_and_distance():
    warnings = tower_warnings(ESTIMATES, {"phone": {1: 0.0, 2: -0.5, 3: -0.2}})
    assert [(w.estimator, w.device, w.position) for w in warnings] == [
        ("randomised", "phone", 3), ("fixed_effects", "phone", 3)]
    assert warnings[0].distance == pytest.approx(0.5) and warnings[1].distance == pytest.approx(0.55)
    assert "phone position 3: tower -0.200 is 0.500 logit above the randomised interval" \
        in str(warnings[0])


def test_pbm_is_another_scale_and_never_flags_the_tower():
    only_pbm = {"pbm": ESTIMATES["pbm"]}
    assert tower_warnings(only_pbm, {"phone": {1: 0.0, 2: -0.5, 3: -0.9}}) == []


def test_a_device_the_tower_does_not_know_is_a_note_not_a_warning():
    log = multiplicative(3000, 0)
    tower = LearnedBias({"tablet": {1: 0.0, 2: 5.0, 3: 5.0, 4: 5.0}}, {"tablet": 0.0})
    audit = run_audit(log, replicates=20, tower=tower)
    assert audit.warnings == [] and any("no learned curve for device(s) all" in n
                                        for n in audit.notes)


def test_the_tower_is_flagged_on_a_real_fit_only_where_it_is_off():
    log = multiplicative(8000, 0)
    audit = run_audit(log, replicates=50, pbm=False)
    assert audit.summary["rows"] == 8000 and audit.tower == {}
    inside = dict(audit.estimates["fixed_effects"]["all"].value)
    assert run_audit(log, replicates=50, pbm=False,
                     tower=LearnedBias({"all": inside}, {"all": 0.0})).warnings == []
    off = {**inside, 4: inside[4] + 1.0}
    flagged = run_audit(log, replicates=50, pbm=False,
                        tower=LearnedBias({"all": off}, {"all": 0.0})).warnings
    assert {(w.estimator, w.position) for w in flagged} == {("randomised", 4),
                                                             ("fixed_effects", 4)}


def test_verdicts():
    flat = Estimate({1: 0.0, 2: 0.1}, {1: 0.0, 2: -0.3}, {1: 0.0, 2: 0.5},
                    {"p_value": {0: 0.41}})
    assert verdict(flat, omnibus=True) == ("no detectable position effect among positions 1-2 "
                                           "(every 95% interval covers 0; chi-square test of "
                                           "equal click rates p = 0.41)")
    steep = ESTIMATES["randomised"]["phone"]
    assert verdict(steep, omnibus=False).startswith("position effect detected: positions 2, 3")


def test_json_and_table_keep_unidentified_cells_visible():
    est = Estimate({1: 0.0, 2: math.nan}, {1: 0.0, 2: math.nan}, {1: 0.0, 2: math.nan})
    audit = Audit({"max_position": 2}, {"fixed_effects": {"tv": est}})
    raw = to_json(audit)
    assert raw["estimators"]["fixed_effects"]["tv"]["positions"]["2"] == {
        "value": None, "low": None, "high": None}
    header, rows = table_rows(audit)
    assert header[:2] == ["device", "position"] and rows[1][-1] == "not identified"
    assert not any("…" in cell for row in rows for cell in row)


def test_nothing_to_identify_is_a_data_error():
    n = 6
    log = AuditLog(np.zeros(n), np.arange(1, n + 1), np.zeros(n, np.int64), ["all"],
                   np.arange(n), np.arange(n), np.zeros(n, bool), source="x.parquet")
    with pytest.raises(DataError, match="x.parquet: no item is shown at more than one position"):
        run_audit(log)
