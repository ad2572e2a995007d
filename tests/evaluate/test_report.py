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
