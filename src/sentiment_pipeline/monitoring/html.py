"""The monitor's self-contained HTML report (inline SVG and CSS, no scripts, no network)."""

from __future__ import annotations

from html import escape

from sentiment_pipeline.monitoring.charts import bar_chart

STYLE = """
body{font-family:system-ui,sans-serif;margin:24px;color:#222;max-width:1100px}
h1{font-size:20px}h2{font-size:16px;margin-top:28px}
table{border-collapse:collapse;font-size:13px}td,th{border:1px solid #ddd;padding:4px 8px;text-align:left}
.ok{color:#2e7d32}.drift{color:#c62828;font-weight:bold}.na{color:#888}
.status{display:inline-block;padding:6px 12px;border-radius:4px;color:#fff;font-weight:bold}
.status.ok{background:#2e7d32;color:#fff}.status.drift{background:#c62828}.status.insufficient_data{background:#888}
.charts{display:flex;flex-wrap:wrap;gap:16px}
"""


def _fmt(value, digits: int = 4) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return escape(str(value))


def checks_table(checks: list[dict]) -> str:
    rows = []
    for check in checks:
        state = ("drift" if check["drift"] else "ok") if check["applicable"] else "na"
        word = {"drift": "beyond threshold", "ok": "ok", "na": "not applicable"}[state]
        rows.append(f'<tr><td>{escape(check["name"])}</td><td>{_fmt(check["value"])}</td>'
                    f'<td>{_fmt(check["threshold"])}</td><td class="{state}">{word}</td>'
                    f'<td>{escape(check.get("detail") or "")}</td></tr>')
    return ("<table><tr><th>check</th><th>value</th><th>threshold</th><th>state</th><th>what</th></tr>"
            + "".join(rows) + "</table>")


def separating_words(result: dict) -> str:
    """What tells production text from training text, per the text-drift classifier: its
    strongest n-grams in each direction with their coefficients, and the texts it told apart
    most confidently on each side ("" when the monitor did not fit it)."""
    found = result.get("text_drift")
    if not isinstance(found, dict) or "toward_production" not in found:
        return ""

    def words(side: str, title: str) -> str:
        rows = "".join(f'<tr><td>{escape(str(w.get("ngram")))}</td><td>{_fmt(w.get("weight"), 3)}</td></tr>'
                       for w in found.get(side) or [] if isinstance(w, dict))
        return (f'<table id="drift-words-{side.removeprefix("toward_")}"><tr><th>{escape(title)}</th><th>weight</th></tr>'
                + (rows or '<tr><td colspan="2" class="na">none</td></tr>') + "</table>")

    def examples(side: str) -> str:
        items = "".join(f'<li>{escape(str(e.get("text")))} <span class="na">({_fmt(e.get("probability"), 2)})</span></li>'
                        for e in (found.get("examples") or {}).get(side) or [] if isinstance(e, dict))
        return f'<ul id="drift-examples-{side}" style="font-size:12px">{items or "<li class=na>none</li>"}</ul>'

    return (f'<p>ROC-AUC {_fmt(found.get("auc"), 3)} over {escape(str(found.get("rows_per_side")))} texts per side; '
            'weights are the classifier\'s coefficients on TF-IDF n-grams (positive: production).</p>'
            f'<div class="charts" style="display:flex;flex-wrap:wrap;gap:16px">{words("toward_production", "toward production")}'
            f'{words("toward_training", "toward training")}</div>'
            '<p>Told apart most confidently (cleaned text, out-of-fold probability of its side):</p>'
            f'<p><b>production</b></p>{examples("production")}<p><b>training</b></p>{examples("training")}')


def _bin_labels(edges: list[float], digits: int = 1) -> list[str]:
    labels = [f"{edges[i]:g}-{edges[i + 1]:g}" for i in range(len(edges) - 1)]
    labels[-1] = f"{edges[-2]:g}+" if edges[-1] >= 400 else labels[-1]
    return labels


def charts(result: dict) -> str:
    """Class mix against the prior, confidence and text-length histograms against the reference."""
    if "output" not in result:
        return ""
    classes = result["classes"]
    mix = result["output"]["class_mix"]
    parts = [bar_chart(classes, {"window (predicted)": mix["shares"], "training prior": mix["prior"]},
                       title="Predicted class mix vs training prior", y_max=1.0, chart_id="class-mix")]
    hist = result.get("histograms", {})
    if "confidence" in hist:
        h = hist["confidence"]
        parts.append(bar_chart(_bin_labels(h["edges"]), {"window": h["window"], "test split": h["reference"]},
                               title="Confidence", width=520, chart_id="confidence-histogram"))
    if "text_length" in hist:
        h = hist["text_length"]
        parts.append(bar_chart(_bin_labels(h["edges"]), {"window": h["window"], "training split": h["reference"]},
                               title="Cleaned text length (characters)", width=520, chart_id="length-histogram"))
    perf = result["performance"]
    accuracy = {"test split (measured)": perf["reference_accuracy"],
                "window (estimated, CBPE)": perf["estimated"]["accuracy"]}
    if perf["live"]["accuracy"] is not None:
        accuracy["window (feedback labels)"] = perf["live"]["accuracy"]
    parts.append(bar_chart(list(accuracy), {"accuracy": list(accuracy.values())}, title="Accuracy",
                           y_max=1.0, width=420, chart_id="accuracy"))
    return '<div class="charts">' + "".join(parts) + "</div>"


def render_report(result: dict) -> str:
    status = result.get("status", "unknown")
    window = result.get("window", {})
    perf = result.get("performance")
    summary = [f'<p><span class="status {escape(status)}">{escape(status.replace("_", " "))}</span> '
               f'{escape(result.get("message", ""))}</p>',
               f'<p>Model {escape(str(result.get("model_version")))} ({escape(str(result.get("model_family")))}); '
               f'{result.get("rows", 0)} prediction(s) from {_fmt(window.get("first"))} to {_fmt(window.get("newest"))}; '
               f'generated {escape(str(result.get("generated_at")))}.</p>']
    if perf:
        live = perf["live"]
        summary.append(f'<p>Estimated accuracy {_fmt(perf["estimated"]["accuracy"])} and macro-F1 '
                       f'{_fmt(perf["estimated"]["f1_macro"])} (CBPE, prior-adapted); the same estimate on the test split '
                       f'{_fmt(perf.get("reference_estimated_accuracy"))}, accuracy measured there '
                       f'{_fmt(perf["reference_accuracy"])}; feedback labels: {live["rows"]}'
                       + (f', live accuracy {_fmt(live["accuracy"])}, macro-F1 {_fmt(live["f1_macro"])}'
                          if live["accuracy"] is not None else "") + ".</p>")
    words = separating_words(result)
    return ("<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>Sentiment model monitor</title>"
            f"<style>{STYLE}</style></head><body><h1>Sentiment model monitor</h1>{''.join(summary)}"
            f"<h2>Checks</h2>{checks_table(result.get('checks', []))}"
            + (f"<h2>Text drift: what separates production from training</h2>{words}" if words else "")
            + f"<h2>Distributions</h2>{charts(result)}"
            "</body></html>")
