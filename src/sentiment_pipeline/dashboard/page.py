"""``GET /dashboard``: the model card and its evaluation, live traffic, the last monitor run,
and a box to try a text. Server-rendered HTML with inline SVG charts and a few lines of inline
JavaScript for the text box: no CDN, no build step, works offline.

The evaluation panels come from the git-tracked result files the pipeline wrote for the served
model (metrics/, plots/); the live panels from the prediction log; drift and the estimated
accuracy from ``monitor.json`` of the last ``sentiment-pipeline monitor`` run.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from html import escape
from pathlib import Path

import numpy as np
from sqlalchemy import Engine, func, select

from sentiment_pipeline.core import paths
from sentiment_pipeline.core.files import read_json
from sentiment_pipeline.dashboard import highlight
from sentiment_pipeline.dashboard.review_panel import review_panel
from sentiment_pipeline.monitoring.charts import bar_chart, heatmap, line_chart
from sentiment_pipeline.monitoring.html import checks_table
from sentiment_pipeline.predlog.prediction_log import predictions
from sentiment_pipeline.predlog.review import ReviewQueue

LIVE_ROWS = 1000  # the class mix and confidence panels use the newest predictions
MINUTES = 60      # requests over time: the last hour, per minute


# ------------------------------------------------------------------ what the pipeline measured
@dataclass
class Evaluation:
    """The served model's evaluation files, read once at start-up (they change with the model)."""

    test: dict = field(default_factory=dict)
    confusion: tuple[list[str], list[list[int]]] | None = None
    cv: list[dict] = field(default_factory=list)
    baselines: dict = field(default_factory=dict)
    train_prior: dict[str, float] = field(default_factory=dict)


def _read(root: Path, relative: Path):
    file = root / relative
    try:
        return read_json(file) if file.is_file() else None
    except (OSError, ValueError):
        return None


def load_evaluation(root: Path, classes: list[str]) -> Evaluation:
    root = Path(root)
    evaluation = Evaluation(test=_read(root, paths.TEST_METRICS) or {}, cv=_read(root, paths.CV_COMPARISON) or [],
                            baselines=_read(root, paths.BASELINES) or {})
    rows = _read(root, paths.CONFUSION_MATRIX)
    if rows:
        index = {c: i for i, c in enumerate(classes)}
        matrix = [[0] * len(classes) for _ in classes]
        for row in rows:
            if row.get("actual") in index and row.get("predicted") in index:
                matrix[index[row["actual"]]][index[row["predicted"]]] += 1
        evaluation.confusion = (classes, matrix)
    data = _read(root, paths.DATA_REPORT) or {}
    train_counts = data.get("class_counts", {}).get("train", {})
    total = sum(train_counts.values())
    if total:
        evaluation.train_prior = {c: train_counts.get(c, 0) / total for c in classes}
    return evaluation


# ------------------------------------------------------------------ live, from the prediction log
@dataclass
class Live:
    minutes: list[str]
    requests_per_minute: list[int]
    class_counts: dict[str, int]
    confidences: list[float]
    total: int


def _minute(engine: Engine, column):
    """The minute a timestamp falls in, computed by the database (so a page load reads one
    row per minute, not one per prediction)."""
    if engine.dialect.name == "sqlite":
        return func.strftime("%Y-%m-%d %H:%M", column)
    return func.to_char(func.date_trunc("minute", func.timezone("UTC", column)), "YYYY-MM-DD HH24:MI")


def read_live(engine: Engine, classes: list[str], model_version: str | None = None,
              now: datetime | None = None) -> Live:
    now = now or datetime.now(UTC)
    start = (now - timedelta(minutes=MINUTES - 1)).replace(second=0, microsecond=0)
    minute = _minute(engine, predictions.c.created_at).label("minute")
    per_minute_query = (select(minute, func.count().label("n")).where(predictions.c.created_at >= start)
                        .group_by(minute))
    newest_query = select(predictions.c.label, predictions.c.confidence).order_by(predictions.c.id.desc())
    if model_version:
        newest_query = newest_query.where(predictions.c.model_version == model_version)
    with engine.connect() as connection:
        # the highest id: the row count without a full scan (the log is append-only)
        total = connection.execute(select(func.max(predictions.c.id))).scalar_one() or 0
        counted = {row.minute: int(row.n) for row in connection.execute(per_minute_query)}
        newest = connection.execute(newest_query.limit(LIVE_ROWS)).all()
    slots = [(start + timedelta(minutes=i)) for i in range(MINUTES)]
    per_minute = [counted.get(slot.strftime("%Y-%m-%d %H:%M"), 0) for slot in slots]
    counts = {c: 0 for c in classes}
    for label, _ in newest:
        if label in counts:
            counts[label] += 1
    return Live(minutes=[slot.strftime("%H:%M UTC") for slot in slots], requests_per_minute=per_minute,
                class_counts=counts, confidences=[float(c) for _, c in newest], total=int(total))


def read_monitor(file: Path) -> dict | None:
    """The last monitor run; None when there is none or the file is not a monitor result."""
    try:
        result = json.loads(file.read_text(encoding="utf-8")) if file.is_file() else None
    except (OSError, ValueError):
        return None
    if not isinstance(result, dict) or not isinstance(result.get("checks", []), list):
        return None
    if not all(isinstance(c, dict) and {"name", "value", "threshold", "drift", "applicable"} <= set(c)
               for c in result.get("checks", [])):
        return None
    return result


def read_monitor_history(engine: Engine) -> list[dict] | None:
    """The stored monitor runs the drift panel charts; None when the log cannot be read."""
    from sentiment_pipeline.monitoring.history import dashboard_runs

    return dashboard_runs(engine)


# ------------------------------------------------------------------ rendering
STYLE = """
body{font-family:system-ui,sans-serif;margin:0;background:#f5f6f8;color:#222}
header{background:#263238;color:#fff;padding:12px 24px}header h1{font-size:18px;margin:0}
header p{margin:4px 0 0;font-size:13px;color:#cfd8dc}
main{display:grid;grid-template-columns:repeat(auto-fill,minmax(460px,1fr));gap:16px;padding:16px 24px}
section{background:#fff;border-radius:6px;padding:12px 16px;box-shadow:0 1px 2px rgba(0,0,0,.08)}
section h2{font-size:14px;margin:0 0 8px}section p{font-size:13px;margin:6px 0}
table{border-collapse:collapse;font-size:12px}td,th{border:1px solid #e0e0e0;padding:3px 7px;text-align:left}
.ok{color:#2e7d32}.drift{color:#c62828;font-weight:bold}.na{color:#888}
.status{display:inline-block;padding:4px 10px;border-radius:4px;color:#fff;font-weight:bold;font-size:13px}
.status.ok{background:#2e7d32;color:#fff}.status.drift{background:#c62828;color:#fff}.status.none,.status.insufficient_data{background:#888}
textarea{width:100%;box-sizing:border-box;font:inherit;font-size:13px}button{margin-top:6px;padding:6px 14px}
#prediction-result{margin-top:8px;font-size:13px;min-height:1.5em}.muted{color:#777;font-size:12px}
"""

SCRIPT = """
document.getElementById('predict-form').addEventListener('submit', async (event) => {
  event.preventDefault();
  const out = document.getElementById('prediction-result');
  const text = document.getElementById('predict-text').value;
  out.textContent = '...';
  try {
    const response = await fetch('/v1/predict', {method: 'POST', headers: {'content-type': 'application/json'},
                                                 body: JSON.stringify({text: text, explain: EXPLAIN_WORDS})});
    const body = await response.json();
    if (!response.ok) {
      const details = (body.details || []).map(d => d.field + ': ' + d.message).join('; ');
      out.textContent = 'error ' + response.status + ': ' + body.error + (details ? ' (' + details + ')' : '');
      return;
    }
    const p = body.predictions[0];
    out.innerHTML = '<p><b id="predicted-label"></b> (confidence <span id="predicted-confidence"></span>)</p>' +
                    '<table id="predicted-probabilities"><tr><th>class</th><th>probability</th></tr></table>';
    const table = document.getElementById('predicted-probabilities');
    for (const [name, value] of Object.entries(p.probabilities)) {
      const row = table.insertRow();
      row.insertCell().textContent = name;
      row.insertCell().textContent = value.toFixed(4);
    }
    document.getElementById('predicted-label').textContent = p.label;
    document.getElementById('predicted-confidence').textContent = p.confidence.toFixed(4);
    showExplanation(out, text, p);  // dashboard/highlight.py
  } catch (error) {
    out.textContent = 'request failed: ' + error;
  }
});
"""


def _fmt(value, digits: int = 4) -> str:
    return f"{value:.{digits}f}" if isinstance(value, (int, float)) and not isinstance(value, bool) else "—"


def _section(panel_id: str, title: str, body: str) -> str:
    return f'<section id="{panel_id}" data-panel="{panel_id}"><h2>{escape(title)}</h2>{body}</section>'


def model_card_panel(metadata: dict, evaluation: Evaluation) -> str:
    cv, test = metadata.get("cv", {}), metadata.get("test", {})
    params = ", ".join(f"{escape(str(k))}={escape(json.dumps(v))}" for k, v in sorted(metadata.get("params", {}).items()))
    resampling = ", ".join(f"{escape(family)}: {escape(chosen)}"
                           for family, chosen in metadata.get("resampling", {}).items())
    rows = [("family", escape(str(metadata.get("family")))), ("params", params or "—"),
            ("resampling (chosen by CV)", resampling or "—"),
            ("CV macro-F1", f'{_fmt(cv.get("f1_macro_mean"))} ± {_fmt(cv.get("f1_macro_std"))} ({escape(str(cv.get("folds")))} folds)'),
            ("test accuracy", _fmt(test.get("accuracy"))), ("test macro-F1", _fmt(test.get("f1_macro"))),
            ("test ROC-AUC (macro)", _fmt(test.get("roc_auc_macro"))), ("ECE", _fmt(test.get("ece"))),
            ("version", escape(str(metadata.get("version")))),
            ("training data md5", escape(str(metadata.get("training_data_md5")))),
            ("git revision", escape(str(metadata.get("git_revision") or "—")[:12]))]
    for name, scores in evaluation.baselines.items():
        if isinstance(scores, dict) and "accuracy" in scores:
            rows.append((f"baseline {escape(name)}", f'accuracy {_fmt(scores.get("accuracy"))}, macro-F1 {_fmt(scores.get("f1_macro"))}'))
    table = "".join(f"<tr><th>{k}</th><td>{v}</td></tr>" for k, v in rows)
    return _section("model-card", "Model card", f"<table>{table}</table>")


def evaluation_panels(evaluation: Evaluation, classes: list[str]) -> list[str]:
    panels = []
    if evaluation.confusion:
        names, matrix = evaluation.confusion
        panels.append(_section("confusion-matrix", "Confusion matrix (test split)",
                               heatmap(matrix, names, names, title="actual (rows) vs predicted (columns)")))
    else:
        panels.append(_section("confusion-matrix", "Confusion matrix (test split)", '<p class="muted">not available</p>'))
    per_class = evaluation.test.get("per_class", {})
    if per_class:
        metrics = ("precision", "recall", "f1")
        chart = bar_chart(classes, {m: [per_class.get(c, {}).get(m, 0.0) for c in classes] for m in metrics},
                          title="Per-class scores (test split)", y_max=1.0, width=440)
        rows = "".join(f"<tr><td>{escape(c)}</td>" + "".join(f"<td>{_fmt(per_class.get(c, {}).get(m))}</td>" for m in metrics)
                       + f"<td>{escape(str(per_class.get(c, {}).get('support', '—')))}</td></tr>" for c in classes)
        table = f"<table><tr><th>class</th><th>precision</th><th>recall</th><th>F1</th><th>support</th></tr>{rows}</table>"
        panels.append(_section("per-class", "Per-class scores", chart + table))
    else:
        panels.append(_section("per-class", "Per-class scores", '<p class="muted">not available</p>'))
    if evaluation.cv:
        families = [row["family"] for row in evaluation.cv]
        chart = bar_chart(families, {"CV macro-F1 (mean)": [row["cv_f1_macro_mean"] for row in evaluation.cv]},
                          title="CV macro-F1 per family (selection is by this)", width=440, digits=3)
        rows = "".join(f'<tr><td>{escape(r["family"])}</td><td>{_fmt(r["cv_f1_macro_mean"])} ± {_fmt(r["cv_f1_macro_std"])}</td>'
                       f'<td>{escape(str(r.get("n_candidates", "—")))}</td></tr>' for r in evaluation.cv)
        panels.append(_section("cv-comparison", "CV comparison of the families",
                               chart + f"<table><tr><th>family</th><th>CV macro-F1</th><th>candidates</th></tr>{rows}</table>"))
    else:
        panels.append(_section("cv-comparison", "CV comparison of the families", '<p class="muted">not available</p>'))
    return panels


def live_panels(live: Live | None, classes: list[str], prior: dict[str, float]) -> list[str]:
    if live is None:
        missing = '<p class="muted">the prediction log is not readable</p>'
        return [_section(p, t, missing) for p, t in (("requests", "Requests over time"), ("class-mix", "Predicted class mix"),
                                                     ("confidence", "Confidence"))]
    requests = line_chart(live.minutes, live.requests_per_minute, title="Predictions per minute, last hour", width=440)
    logged = sum(live.class_counts.values())
    shares = [live.class_counts[c] / logged if logged else 0.0 for c in classes]
    series = {f"newest {logged} predictions": shares}
    if prior:
        series["training prior"] = [prior.get(c, 0.0) for c in classes]
    mix = bar_chart(classes, series, title="Predicted class mix vs training prior", y_max=1.0, width=440)
    edges = [i / 10 for i in range(11)]
    counts, _ = np.histogram(np.asarray(live.confidences, dtype=float), bins=edges)
    confidence = bar_chart([f"{edges[i]:.1f}" for i in range(10)], {"predictions": counts.astype(int).tolist()},
                           title="Confidence of the newest predictions (bin start)", width=440, digits=0)
    return [_section("requests", "Requests over time", requests + f'<p class="muted">{live.total} predictions logged in total; times in UTC</p>'),
            _section("class-mix", "Predicted class mix", mix),
            _section("confidence", "Confidence", confidence)]


def monitor_panel(result: dict | None, source: str, history: list[dict] | None = None) -> str:
    from sentiment_pipeline.monitoring.history import history_charts
    from sentiment_pipeline.monitoring.html import separating_words

    over_time = f'<h3 style="font-size:13px">Each check over the stored runs</h3>{history_charts(history)}'
    if result is None:
        body = (f'<p><span class="status none">no monitor run</span></p><p class="muted">run '
                f'<code>sentiment-pipeline monitor</code> (it writes {escape(source)})</p>')
        return _section("drift", "Drift and estimated accuracy", body + over_time)
    status = str(result.get("status", "unknown"))
    perf = result.get("performance") or {}
    estimated = (perf.get("estimated") or {}).get("accuracy")
    live = perf.get("live") or {}
    parts = [f'<p><span class="status {escape(status)}" id="drift-status">{escape(status.replace("_", " "))}</span> '
             f'{escape(str(result.get("message", "")))}</p>',
             f'<p>Window: {escape(str(result.get("rows", 0)))} predictions, newest {escape(str((result.get("window") or {}).get("newest")))}; '
             f'run {escape(str(result.get("generated_at")))}.</p>',
             f'<p>Estimated accuracy (CBPE, no labels): <b id="estimated-accuracy">{_fmt(estimated)}</b>; the same '
             f'estimate on the test split {_fmt(perf.get("reference_estimated_accuracy"))}, measured there '
             f'{_fmt(perf.get("reference_accuracy"))}'
             + (f'; on {escape(str(live.get("rows")))} feedback labels: {_fmt(live.get("accuracy"))}' if live.get("accuracy") is not None else "")
             + ".</p>", checks_table(result.get("checks", []))]
    words = separating_words(result)
    if words:
        parts.append(f'<h3 style="font-size:13px">What separates production text from training text</h3>{words}')
    return _section("drift", "Drift and estimated accuracy", "".join(parts) + over_time)


def predict_panel(max_chars: int) -> str:
    body = (f'<form id="predict-form"><textarea id="predict-text" rows="3" maxlength="{max_chars}" '
            'placeholder="Type a text, e.g. @united lost my bag again"></textarea>'
            '<button type="submit" id="predict-button">Predict</button></form><div id="prediction-result"></div>')
    return _section("try-it", "Try a text", body)


# Logged in through the form: the key is in an HttpOnly cookie, which only the server can clear.
LOGOUT = ('<form id="logout" method="post" action="/dashboard/logout" style="position:absolute;top:10px;right:24px">'
          '<button type="submit">Log out</button></form>')


def login_page(message: str | None = None) -> str:
    """The form asking for an ``admin`` API key (``POST /dashboard/login``); ``message`` says why
    the last key was refused."""
    error = f'<p id="login-error" class="drift">{escape(message)}</p>' if message else ""
    body = ('<form id="login-form" method="post" action="/dashboard/login">'
            '<p>An API key with the <b>admin</b> scope (and <b>predict</b> for the text box), from '
            '<code>sentiment-pipeline keys create</code>. The browser keeps it for 8 hours in a cookie '
            'that scripts cannot read and other sites cannot make it send.</p>'
            '<input id="login-key" name="key" type="password" autocomplete="off" required '
            'style="width:100%;box-sizing:border-box;font:inherit" placeholder="sp_...">'
            f'<button type="submit" id="login-button">Log in</button>{error}</form>')
    return ("<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
            f"<title>Sentiment model dashboard: log in</title><style>{STYLE}</style></head><body>"
            "<header><h1>Sentiment model dashboard</h1><p>log in</p></header>"
            f"<main>{_section('login', 'Log in', body)}</main></body></html>")


def render(metadata: dict, evaluation: Evaluation, live: Live | None, monitor_result: dict | None,
           monitor_source: str, max_chars: int, logout: bool = False,
           review: ReviewQueue | None = None, monitor_history: list[dict] | None = None) -> str:
    classes = list(metadata.get("classes", []))
    panels = [model_card_panel(metadata, evaluation), predict_panel(max_chars),
              monitor_panel(monitor_result, monitor_source, monitor_history), review_panel(review),
              *live_panels(live, classes, evaluation.train_prior),
              *evaluation_panels(evaluation, classes)]
    generated = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    return ("<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
            f"<title>Sentiment model dashboard</title><style>{STYLE}{highlight.STYLE}</style></head><body>"
            f"<header><h1>Sentiment model dashboard</h1><p>{escape(str(metadata.get('family')))} "
            f"model {escape(str(metadata.get('version')))} · classes {escape(', '.join(classes))} · {generated}</p>"
            f"{LOGOUT if logout else ''}</header>"
            f"<main>{''.join(panels)}</main><script>{highlight.SCRIPT}{SCRIPT}</script></body></html>")
