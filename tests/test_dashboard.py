"""The dashboard's pieces without a browser: charts, panels, live counts from a log."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import insert

from sentiment_pipeline.dashboard import page
from sentiment_pipeline.monitoring import charts
from sentiment_pipeline.predlog.prediction_log import connect, predictions

from .conftest import PROJECT_ROOT

CLASSES = ["negative", "neutral", "positive"]


def test_bar_chart_draws_one_bar_per_value_and_checks_lengths():
    svg = charts.bar_chart(["a", "b"], {"x": [0.2, 0.4], "y": [0.1, 0.3]}, title="T <&>")
    assert svg.count("<rect") == 2 * 2 + 2  # bars + legend swatches
    assert "T &lt;&amp;&gt;" in svg
    with pytest.raises(ValueError, match="series 'x' has 1 values for 2 categories"):
        charts.bar_chart(["a", "b"], {"x": [1]}, title="t")
    with pytest.raises(ValueError, match="at least one"):
        charts.bar_chart(["a"], {}, title="t")


def test_heatmap_and_line_chart_check_their_shapes():
    assert charts.heatmap([[1, 2], [3, 4]], ["a", "b"], ["a", "b"], title="m").count("<rect") == 4
    with pytest.raises(ValueError, match="2 x 2"):
        charts.heatmap([[1, 2]], ["a", "b"], ["a", "b"], title="m")
    assert "no data yet" in charts.line_chart([], [], title="t")
    with pytest.raises(ValueError, match="differ in length"):
        charts.line_chart(["a"], [], title="t")


def test_live_counts_per_minute_class_mix_and_confidences(tmp_path):
    engine = connect(f"sqlite:///{tmp_path / 'log.db'}")
    now = datetime(2026, 12, 2, 12, 30, 30, tzinfo=UTC)
    rows = [{"created_at": now - timedelta(minutes=m), "prediction_id": f"p{k}-{i}", "request_id": "r",
             "text": "t", "text_sha256": "0" * 64, "cleaned_length": 1, "label": CLASSES[i % 3],
             "confidence": 0.55 + 0.1 * (i % 3), "probabilities": {}, "model_version": "v", "latency_ms": 1.0}
            for k, m in enumerate((0, 0, 5, 90)) for i in range(3)]
    with engine.begin() as connection:
        connection.execute(insert(predictions), rows)
    live = page.read_live(engine, CLASSES, now=now)
    assert live.total == 12
    assert live.requests_per_minute[-1] == 6 and live.requests_per_minute[-6] == 3  # 90 minutes ago: out
    assert sum(live.requests_per_minute) == 9 and live.minutes[-1] == "12:30 UTC"
    assert live.class_counts == {"negative": 4, "neutral": 4, "positive": 4}
    assert len(live.confidences) == 12


def test_panels_say_what_is_missing_instead_of_failing(tmp_path):
    evaluation = page.load_evaluation(tmp_path, CLASSES)  # no result files at all
    html = page.render({"family": "linear_svm", "classes": CLASSES, "version": "abc"}, evaluation,
                       live=None, monitor_result=None, monitor_source="logs/monitor/monitor.json", max_chars=100)
    for panel in ("model-card", "try-it", "drift", "requests", "class-mix", "confidence", "confusion-matrix",
                  "per-class", "cv-comparison"):
        assert f'id="{panel}"' in html
    assert "no monitor run" in html and "not available" in html and "not readable" in html
    assert "https://" not in html and "http://" not in html.replace("http://www.w3.org/2000/svg", "")


def test_a_broken_monitor_file_reads_as_no_run(tmp_path):
    broken = tmp_path / "monitor.json"
    broken.write_text("{not json")
    assert page.read_monitor(broken) is None and page.read_monitor(tmp_path / "absent.json") is None


def test_the_model_card_panel_names_each_familys_resampling():
    from sentiment_pipeline.inference.predictor import resampling_chosen

    card = {"family": "ensemble", "params": {"method": "soft_vote"},
            "ensemble": {"members": [{"family": "logreg", "params": {"C": 1.0, "resampling": "class_weight"}},
                                     {"family": "xgboost", "params": {"resampling": "smote"}}]}}
    assert resampling_chosen(card) == {"logreg": "class_weight", "xgboost": "smote"}
    assert resampling_chosen({"family": "logreg", "params": {"resampling": "smote"}}) == {"logreg": "smote"}
    assert resampling_chosen({"family": "logreg", "params": {"C": 1.0}}) == {}
    evaluation = page.load_evaluation(PROJECT_ROOT, CLASSES)
    html = page.model_card_panel({"family": "ensemble", "resampling": resampling_chosen(card)}, evaluation)
    assert "<th>resampling (chosen by CV)</th><td>logreg: class_weight, xgboost: smote</td>" in html
