"""The dashboard's "to review" panel: the head of the review queue (predlog/review.py) and the
two commands of the Label Studio round trip."""

from __future__ import annotations

import logging
from html import escape

from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from sentiment_pipeline.predlog.review import ReviewQueue, review_queue

log = logging.getLogger(__name__)

PANEL_ROWS = 10  # the head of the queue; the rest is in GET /v1/review or export-review
PANEL_POLICY = "low_confidence"  # needs no ensemble, so every served model has the panel
TEXT_CHARS = 140  # a tweet; longer texts are cut with an ellipsis


def _short(text: str) -> str:
    return text if len(text) <= TEXT_CHARS else text[:TEXT_CHARS - 1] + "…"


COMMANDS = ("<p class=\"muted\">Label them in Label Studio:</p><pre id=\"review-commands\" style=\"font-size:12px;"
            "white-space:pre-wrap\">sentiment-pipeline export-review review.json --policy margin "
            "--config-output labeling.xml\n# import review.json into a project with labeling.xml, label, "
            "export JSON, then:\nsentiment-pipeline import-labels export.json</pre>")


def read_review(engine: Engine, window_rows: int) -> ReviewQueue | None:
    """The head of the queue for the panel; None when the log is not readable (said in the log)."""
    try:
        return review_queue(engine, PANEL_POLICY, PANEL_ROWS, window_rows)
    except SQLAlchemyError as exc:
        log.warning("dashboard: the review queue is not readable: %s", str(exc).splitlines()[0])
        return None


def review_panel(queue: ReviewQueue | None) -> str:
    """The panel's section; ``queue`` None: the log was not readable."""
    if queue is None:
        body = '<p class="muted">the prediction log is not readable</p>'
    elif not queue.items:
        body = (f'<p class="muted" id="review-empty">nothing to review: no unlabelled prediction with its text '
                f'among the newest {queue.window_rows}</p>')
    else:
        rows = "".join(f'<tr data-prediction-id="{escape(i.prediction_id)}"><td>{escape(_short(i.text))}</td>'
                       f"<td>{escape(i.label)}</td><td>{i.confidence:.4f}</td></tr>" for i in queue.items)
        body = (f"<p>The {len(queue.items)} least confident of {queue.candidates} unlabelled predictions "
                f"(among the newest {queue.window_rows:,} logged).</p>"
                f'<table id="review-queue"><tr><th>text</th><th>label</th><th>confidence</th></tr>{rows}</table>')
    return (f'<section id="to-review" data-panel="to-review"><h2>To review</h2>{body}{COMMANDS}</section>')
