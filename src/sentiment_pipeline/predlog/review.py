"""The review queue: logged predictions that most need a human label, for ``GET /v1/review``,
``sentiment-pipeline export-review`` and the dashboard's "to review" panel.

Only the newest ``serve.review_window_rows`` logged predictions are read (the work is bounded
on a log of millions of rows); of those, the candidates are the ones with their text logged
(``serve.log_text``) and no feedback yet. The policies order them:

* ``low_confidence``: the lowest probability of the predicted label first;
* ``margin``: the smallest gap between the two highest class probabilities first (the logged
  probabilities; with two classes it orders as ``low_confidence`` does);
* ``disagreement``: predictions on which the served ensemble's members vote for different
  labels, the most divided first (then the lowest confidence). The members are not logged: the
  candidate texts are re-scored at query time by the members of the served model, so only rows
  logged by the served version are candidates (an older model's members are gone); the others
  are counted in ``other_versions``. A served model that is not an ensemble has no members:
  :class:`NotAnEnsemble`.

Ties go to the newest prediction.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Literal, get_args

import numpy as np
from sqlalchemy import Engine, exists, select

from sentiment_pipeline.core.errors import PipelineError
from sentiment_pipeline.predlog.schema import feedback, predictions

Policy = Literal["low_confidence", "margin", "disagreement"]
POLICIES: tuple[str, ...] = get_args(Policy)


class NotAnEnsemble(PipelineError):
    """``disagreement`` asked of a served model that has no members to disagree."""


@dataclass(frozen=True)
class ReviewItem:
    prediction_id: str
    created_at: datetime
    text: str
    label: str
    confidence: float
    margin: float  # top-1 minus top-2 probability
    probabilities: dict[str, float]
    model_version: str
    disagreement: float | None = None  # share of the members not voting with the largest group
    member_labels: dict[str, str] | None = None  # disagreement: each member's label


@dataclass(frozen=True)
class ReviewQueue:
    policy: str
    window_rows: int  # the window: at most this many of the newest predictions were read
    candidates: int  # of those, unlabelled with their text logged (and, for disagreement, of the served version)
    items: list[ReviewItem] = field(default_factory=list)
    other_versions: int = 0  # disagreement: unlabelled rows of another model version, left out


def margin_of(probabilities: dict[str, float]) -> float:
    """Top-1 minus top-2 probability; 1.0 for a single class."""
    top = sorted((float(p) for p in probabilities.values()), reverse=True)
    return top[0] - top[1] if len(top) > 1 else 1.0


def _candidates(engine: Engine, window_rows: int) -> list:
    newest = select(predictions).order_by(predictions.c.id.desc()).limit(window_rows).subquery()
    labelled = exists().where(feedback.c.prediction_id == newest.c.prediction_id)
    query = (select(newest.c.id, newest.c.prediction_id, newest.c.created_at, newest.c.text, newest.c.label,
                    newest.c.confidence, newest.c.probabilities, newest.c.model_version)
             .where(newest.c.text.is_not(None), ~labelled).order_by(newest.c.id.desc()))
    with engine.connect() as connection:
        return list(connection.execute(query))


def _item(row, **extra) -> ReviewItem:
    probabilities = {str(k): float(v) for k, v in (row.probabilities or {}).items()}
    # the log writes UTC; SQLite gives the time back without its zone
    created_at = row.created_at if row.created_at.tzinfo else row.created_at.replace(tzinfo=UTC)
    return ReviewItem(prediction_id=row.prediction_id, created_at=created_at, text=row.text, label=row.label,
                      confidence=float(row.confidence), margin=margin_of(probabilities),
                      probabilities=probabilities, model_version=row.model_version, **extra)


def ensemble_members(predictor) -> list[str]:
    """The names of the served ensemble's members (in their order), or :class:`NotAnEnsemble`."""
    model = predictor.model
    classifier = model[-1] if hasattr(model, "steps") else model
    members = getattr(classifier, "members_", None)
    if not members or len(members) < 2:
        raise NotAnEnsemble(f"policy 'disagreement' needs an ensemble; the served model {predictor.version} is "
                            f"'{predictor.metadata.get('family')}' (use low_confidence or margin)")
    names = (predictor.metadata.get("params") or {}).get("members")
    if not isinstance(names, list) or len(names) != len(members):
        names = [f"member{i}" for i in range(len(members))]
    return [str(n) for n in names]


def member_votes(predictor, texts: Sequence[str]) -> np.ndarray:
    """(members, texts) indices into ``predictor.classes``: each member's label for each text,
    from the same cleaning and features the served model uses."""
    ensemble_members(predictor)
    model = predictor.model
    if hasattr(model, "steps"):  # the pipeline's model: features, then the ensemble
        classifier, features = model[-1], model[:-1].transform(predictor.clean(texts))
    else:  # an ensemble taking the cleaned texts itself
        classifier, features = model, predictor.clean(texts)
    order = [int(c) if not isinstance(c, str) else predictor.classes.index(c) for c in classifier.classes_]
    votes = [np.asarray(order)[np.argmax(member.predict_proba(features), axis=1)] for member in classifier.members_]
    return np.vstack(votes)


def disagreement_scores(votes: np.ndarray) -> np.ndarray:
    """Per text (column), the share of the members not in the largest group of equal votes:
    0 when all agree, 0.5 for 2 against 2, 0.75 for four members voting four ways."""
    n_members = votes.shape[0]
    largest = np.array([np.bincount(column).max() for column in votes.T]) if votes.size else np.zeros(0)
    return 1.0 - largest / n_members


def review_queue(engine: Engine, policy: str, limit: int, window_rows: int, predictor=None) -> ReviewQueue:
    """The ``limit`` candidates of the newest ``window_rows`` predictions that ``policy`` puts
    first. ``disagreement`` needs the served ``predictor`` (an ensemble)."""
    if policy not in POLICIES:
        raise ValueError(f"policy must be one of {', '.join(POLICIES)}, got {policy!r}")
    if policy == "disagreement":
        if predictor is None:
            raise NotAnEnsemble("policy 'disagreement' needs the served model")
        names = ensemble_members(predictor)  # before reading: a clear error, no work done
    rows = _candidates(engine, window_rows)
    if policy != "disagreement":
        items = [_item(row) for row in rows]
        key = (lambda i: i.confidence) if policy == "low_confidence" else (lambda i: i.margin)
        # rows are newest first and sorted() is stable: ties stay newest first
        return ReviewQueue(policy, window_rows, len(rows), sorted(items, key=key)[:limit])
    served = [row for row in rows if row.model_version == predictor.version]
    if not served:
        return ReviewQueue(policy, window_rows, 0, [], other_versions=len(rows))
    votes = member_votes(predictor, [row.text for row in served])
    scores = disagreement_scores(votes)
    items = [_item(row, disagreement=float(score),
                   member_labels={name: predictor.classes[int(v)] for name, v in zip(names, votes[:, i], strict=True)})
             for i, (row, score) in enumerate(zip(served, scores, strict=True)) if score > 0]
    items.sort(key=lambda i: (-(i.disagreement or 0.0), i.confidence))
    return ReviewQueue(policy, window_rows, len(served), items[:limit], other_versions=len(rows) - len(served))
