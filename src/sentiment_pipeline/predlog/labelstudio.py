"""The review queue out to Label Studio and its labels back into the feedback table.

Out: a Label Studio *tasks* JSON file (a list of ``{"data": ..., "predictions": [...]}``) with
the model's label as a pre-annotation (``score`` = its confidence) and the matching labeling
configuration (a ``Text`` and a single ``Choices`` named ``sentiment`` over the model's
classes). In: Label Studio's *JSON* export of the same project (the tasks with their
``annotations``), as documented at labelstud.io/guide/task_format and export.

The formats are pydantic models of the fields we read or write; Label Studio's many other
fields (``created_at``, ``lead_time``, ``project``, ...) are allowed and ignored. The
``label-studio-sdk`` package has such types, but it pulls in OpenCV, NLTK, Pillow and a code
generator (24 direct dependencies) for two dictionaries, so it is not a dependency.

Import rules (docs/serving.md#reviewing-predictions):

* each task needs ``data.prediction_id`` of a prediction in the log;
* a cancelled (skipped) annotation, or one with an empty result, is not a label; a task with
  no other annotation is left out (not labelled yet);
* a label is the one choice of the ``sentiment`` control and must be one of the model's
  classes; several annotations of one task must agree, else the task is left out and counted
  (annotators disagree: settle it in Label Studio and export again);
* anything malformed is one error naming the task (its index in the file and its id) and the
  field, and nothing is imported: the whole file is checked before one transaction writes it;
* each label becomes a feedback row with ``key_id`` ``label-studio`` (``export-feedback
  --key-id label-studio`` keeps only these) and a ``feedback_id`` derived from the task,
  the annotation, the label and the annotation's ``updated_at``, so importing the same export
  twice writes nothing the second time, and every edit of an annotation in Label Studio (even
  back to an earlier label) adds its label, which then wins (newest).
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from xml.sax.saxutils import quoteattr

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from sqlalchemy import Engine, select

from sentiment_pipeline.core.errors import DataError
from sentiment_pipeline.core.files import atomic_path
from sentiment_pipeline.predlog.review import ReviewItem, ReviewQueue

log = logging.getLogger(__name__)

FROM_NAME = "sentiment"  # the Choices control of the labeling configuration
TO_NAME = "text"  # the Text object it labels
KEY_ID = "label-studio"  # feedback.key_id of imported labels (API keys' ids are 12 digits)
FEEDBACK_ID_PREFIX = "ls"


# ------------------------------------------------------------------ the formats
class _Open(BaseModel):
    """Label Studio's objects carry many more fields than we read: they are allowed."""

    model_config = ConfigDict(extra="allow")


class ChoicesValue(_Open):
    choices: list[str]


class ChoicesResult(_Open):
    """One region of a result: for text classification, the chosen class(es) of a Choices control."""

    id: str | None = None
    from_name: str
    to_name: str
    type: str
    value: dict[str, Any]


class Prediction(_Open):
    """A pre-annotation (``predictions`` of a task)."""

    model_version: str | None = None
    score: float | None = None
    result: list[ChoicesResult]


class Annotation(_Open):
    id: int | str
    result: list[ChoicesResult] = Field(default_factory=list)
    was_cancelled: bool = False
    completed_by: int | dict[str, Any] | None = None
    updated_at: str | None = None


class TaskData(_Open):
    text: str
    prediction_id: str = Field(min_length=1, max_length=32)


class ExportedTask(_Open):
    """A task as Label Studio's JSON export gives it."""

    id: int | str | None = None
    data: TaskData
    annotations: list[Annotation] = Field(default_factory=list)
    predictions: list[Prediction | int] = Field(default_factory=list)  # full objects, or their ids


class ImportTask(BaseModel):
    """A task as we write it for Label Studio to import (no id: Label Studio gives its own)."""

    model_config = ConfigDict(extra="forbid")

    data: dict[str, Any]
    predictions: list[Prediction]


# ------------------------------------------------------------------ out
def labeling_config(classes: Iterable[str]) -> str:
    """The labeling configuration (XML) the tasks are made for: one choice of the classes."""
    choices = "".join(f"\n    <Choice value={quoteattr(c)}/>" for c in classes)
    return (f'<View>\n  <Text name="{TO_NAME}" value="$text"/>\n'
            f'  <Choices name="{FROM_NAME}" toName="{TO_NAME}" choice="single" showInLine="true">{choices}\n'
            "  </Choices>\n</View>\n")


def task_of(item: ReviewItem, policy: str) -> dict[str, Any]:
    """One review item as a Label Studio task with the model's label pre-annotated."""
    data: dict[str, Any] = {"text": item.text, "prediction_id": item.prediction_id, "model_label": item.label,
                            "confidence": item.confidence, "margin": item.margin, "policy": policy,
                            "created_at": item.created_at.isoformat(), "model_version": item.model_version}
    if item.member_labels is not None:
        data["member_labels"] = item.member_labels
    result = ChoicesResult(from_name=FROM_NAME, to_name=TO_NAME, type="choices", value={"choices": [item.label]})
    task = ImportTask(data=data, predictions=[Prediction(model_version=item.model_version, score=item.confidence,
                                                         result=[result])])
    return task.model_dump(mode="json", exclude_none=True)


def write_tasks(queue: ReviewQueue, target: Path, classes: list[str], config_target: Path | None = None) -> int:
    """Write ``queue`` as Label Studio tasks JSON (and the labeling config), each atomically."""
    tasks = [task_of(item, queue.policy) for item in queue.items]
    with atomic_path(target) as staged:
        staged.write_text(json.dumps(tasks, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    if config_target is not None:
        with atomic_path(config_target) as staged:
            staged.write_text(labeling_config(classes), encoding="utf-8")
    return len(tasks)


# ------------------------------------------------------------------ in
@dataclass(frozen=True)
class ImportedLabel:
    task: str  # "task 3 (id 17)", for messages
    prediction_id: str
    label: str
    feedback_id: str


@dataclass(frozen=True)
class ImportPlan:
    labels: list[ImportedLabel]
    tasks: int
    unlabelled: int  # no annotation that counts
    conflicting: int  # annotators disagree


def _where(index: int, raw: Any) -> str:
    task_id = raw.get("id") if isinstance(raw, dict) else None
    return f"task {index}" + (f" (id {task_id})" if task_id is not None else "")


def _field(location: tuple) -> str:
    text = ""
    for part in location:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "task"


def feedback_id(task_id: object, annotation_id: object, prediction_id: str, label: str,
                updated_at: str | None = None) -> str:
    """The same for the same annotation as exported (re-importing a file writes nothing), new for
    every edit of it (``updated_at``): changed A -> B -> A, the last A is a new row and wins."""
    parts = [str(task_id), str(annotation_id), prediction_id, label] + ([updated_at] if updated_at else [])
    digest = hashlib.sha256(json.dumps(parts).encode())
    return FEEDBACK_ID_PREFIX + digest.hexdigest()[:30]  # feedback.feedback_id is 32 characters


def _annotation_label(where: str, position: int, annotation: Annotation, classes: list[str]) -> str | None:
    """The label an annotation gives, None when it gives none (cancelled, or nothing chosen)."""
    if annotation.was_cancelled or not annotation.result:
        return None
    ours = [r for r in annotation.result if r.from_name == FROM_NAME and r.type == "choices"]
    field = f"annotations[{position}].result"
    if not ours:
        names = sorted({f"{r.from_name} ({r.type})" for r in annotation.result})
        raise DataError(f"{where}: {field}: no '{FROM_NAME}' choices (found {', '.join(names)}); "
                        "expected an export of a project with the labeling config of export-review --config-output")
    if len(ours) > 1:
        raise DataError(f"{where}: {field}: {len(ours)} '{FROM_NAME}' results; expected one")
    try:
        choices = ChoicesValue.model_validate(ours[0].value).choices
    except ValidationError:
        raise DataError(f"{where}: {field}[0].value.choices: expected a list of class names, "
                        f"got {ours[0].value!r}") from None
    if len(choices) != 1:
        raise DataError(f"{where}: {field}[0].value.choices: expected exactly one class, got {choices!r}")
    if choices[0] not in classes:
        raise DataError(f"{where}: {field}[0].value.choices: {choices[0]!r} is not one of the model's classes "
                        f"{classes}")
    return choices[0]


def plan_import(document: Any, classes: list[str], source: str = "the file") -> ImportPlan:
    """Check a parsed Label Studio JSON export whole; the labels it gives, or a :class:`DataError`
    naming the task and the field."""
    if not isinstance(document, list):
        raise DataError(f"{source}: expected Label Studio's JSON export (a list of tasks), "
                        f"got a JSON {type(document).__name__}")
    labels: list[ImportedLabel] = []
    by_prediction: dict[str, tuple[str, str]] = {}
    unlabelled = conflicting = 0
    for index, raw in enumerate(document):
        where = f"{source}: {_where(index, raw)}"
        if not isinstance(raw, dict):
            raise DataError(f"{where}: expected a task object, got a JSON {type(raw).__name__}")
        try:
            task = ExportedTask.model_validate(raw)
        except ValidationError as exc:
            error = exc.errors()[0]
            message = "missing" if error["type"] == "missing" else error["msg"]
            hint = " (was this task exported by export-review?)" if _field(error["loc"]).startswith("data") else ""
            raise DataError(f"{where}: {_field(error['loc'])}: {message}{hint}") from None
        given = [(a, label) for i, a in enumerate(task.annotations)
                 if (label := _annotation_label(where, i, a, classes)) is not None]
        distinct = {label for _, label in given}
        if not given:
            unlabelled += 1
            continue
        if len(distinct) > 1:
            conflicting += 1
            log.warning("%s: annotators disagree (%s); left out", where, ", ".join(sorted(distinct)))
            continue
        label = distinct.pop()
        prediction_id = task.data.prediction_id
        earlier = by_prediction.get(prediction_id)
        if earlier is not None and earlier[1] != label:
            raise DataError(f"{where}: data.prediction_id: {prediction_id!r} is also {earlier[0]}, labelled "
                            f"{earlier[1]!r} there and {label!r} here")
        by_prediction[prediction_id] = (_where(index, raw), label)
        labels += [ImportedLabel(_where(index, raw), prediction_id, label,
                                 feedback_id(task.id if task.id is not None else index, a.id, prediction_id, label,
                                             a.updated_at))
                   for a, _ in given]
    return ImportPlan(labels, len(document), unlabelled, conflicting)


def read_export(path: Path, classes: list[str]) -> ImportPlan:
    try:
        document = json.loads(path.read_bytes())
    except OSError as exc:
        raise DataError(f"{path}: cannot be read: {exc.strerror or exc}") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: not JSON ({str(exc).splitlines()[0]}); expected Label Studio's JSON export") from None
    return plan_import(document, classes, str(path))


@dataclass(frozen=True)
class ImportResult:
    plan: ImportPlan
    written: int  # new feedback rows
    already: int  # rows of an earlier import of the same labels


def import_labels(engine: Engine, path: Path, classes: list[str]) -> ImportResult:
    """Read, check and write a Label Studio JSON export into the feedback table, all or nothing:
    every prediction id must be in the log (checked in the writing transaction)."""
    from sentiment_pipeline.predlog.prediction_log import _insert_ignoring_duplicates, now
    from sentiment_pipeline.predlog.schema import feedback, predictions

    plan = read_export(path, classes)
    ids = sorted({label.prediction_id for label in plan.labels})
    fids = [label.feedback_id for label in plan.labels]
    with engine.begin() as connection:
        known: set[str] = set()
        present: set[str] = set()
        for start in range(0, len(ids), 500):  # bounded IN lists
            chunk = ids[start:start + 500]
            known.update(connection.scalars(select(predictions.c.prediction_id)
                                            .where(predictions.c.prediction_id.in_(chunk))))
        for start in range(0, len(fids), 500):
            chunk = fids[start:start + 500]
            present.update(connection.scalars(select(feedback.c.feedback_id).where(feedback.c.feedback_id.in_(chunk))))
        for label in plan.labels:
            if label.prediction_id not in known:
                raise DataError(f"{path}: {label.task}: data.prediction_id: no prediction {label.prediction_id!r} "
                                "in the log (another server's export, or pruned?); nothing imported")
        new = {label.feedback_id: label for label in plan.labels if label.feedback_id not in present}
        rows = [{"created_at": now(), "prediction_id": label.prediction_id, "label": label.label,
                 "feedback_id": fid, "key_id": KEY_ID} for fid, label in new.items()]
        if rows:
            connection.execute(_insert_ignoring_duplicates(connection, feedback, "feedback_id"), rows)
    return ImportResult(plan, len(rows), len(set(fids)) - len(rows))
