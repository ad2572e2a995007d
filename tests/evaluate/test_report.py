from watchnext.api import Ranker


def test_report_has_every_section(config, impressions):
    ranker = Ranker(config).fit(impressions)
    report = ranker.evaluate(impressions)
    assert set(report["tasks"]) == {"click", "watch", "like"}
    assert {"auc", "logloss", "gauc"} <= set(report["tasks"]["click"])
    assert "rmse" in report["tasks"]["watch"]
    assert 0 <= report["ndcg_at_k"]["click"] <= 1
    gates = report["experts"]["mean_gate"]
    assert all(abs(sum(row) - 1) < 1e-3 for row in gates.values())
    bias = report["learned_bias"]
    assert set(bias) == {"click", "watch"}
    assert set(bias["click"]["curves"]) == set(bias["click"]["serving"]) == {"phone", "tablet", "tv"}
    assert list(bias["click"]["curves"]["phone"]) == [str(p) for p in range(1, 9)]


def test_learned_click_bias_falls_with_position(config, impressions):
    """The synthetic log's click logit falls by 0.4 per slot; the shallow tower should see it."""
    from tests.conftest import make_impressions

    ranker = Ranker(config.replace(train={"max_epochs": 6})).fit(make_impressions(6000, seed=3))
    curve = ranker.learned_bias()["click"].curves["phone"]
    assert curve[1] > curve[3] > curve[5]


def test_predictions_do_not_depend_on_the_chunk_size(config, impressions):
    import numpy as np

    from watchnext.evaluate.report import predict_batch

    ranker = Ranker(config.replace(train={"max_epochs": 1})).fit(impressions)
    batch = ranker.encoder.transform(impressions)
    whole, whole_gates = predict_batch(ranker.model, batch, chunk_size=len(batch))
    chunked, chunked_gates = predict_batch(ranker.model, batch, chunk_size=37)
    assert whole.shape == (len(batch), len(config.tasks))
    np.testing.assert_allclose(chunked, whole, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(chunked_gates, whole_gates, rtol=1e-5, atol=1e-6)
    assert predict_batch(ranker.model, batch, gates=False)[1] is None


def test_ple_reports_expert_utilisation(config, impressions):
    """PLE's gates (last layer: each task's own experts, then the shared ones) are reported too."""
    ple = config.replace(model={"kind": "ple", "task_experts": 1, "shared_experts": 2},
                         train={"max_epochs": 1})
    report = Ranker(ple).fit(impressions).evaluate(impressions)
    gates = report["experts"]["mean_gate"]
    assert set(gates) == {"click", "watch", "like"}
    assert all(len(row) == 3 and abs(sum(row) - 1) < 1e-3 for row in gates.values())
    assert isinstance(report["experts"]["polarised_tasks"], list)


def test_metrics_in_serving_mode_and_with_positions(config, impressions):
    ranker = Ranker(config.replace(train={"max_epochs": 2})).fit(impressions)
    report = ranker.evaluate(impressions)
    serving, logged = report["tasks"], report["tasks_with_position"]
    assert serving["click"]["logloss"] != logged["click"]["logloss"]  # the tower's bias differs
    assert serving["like"] == logged["like"]  # satisfaction tasks get no position bias
    no_tower = Ranker(config.replace(bias={"method": "adversarial"}, train={"max_epochs": 1})).fit(
        impressions).evaluate(impressions)
    assert no_tower["tasks"] == no_tower["tasks_with_position"]
