"""Request and response bodies of the API, and what the OpenAPI schema says beyond them."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic.json_schema import SkipJsonSchema

from sentiment_pipeline.core.config import ServeConfig
from sentiment_pipeline.inference.explain import MAX_K

EXPLAIN_MAX_K = MAX_K  # words per explained prediction (inference/explain.py)


class PredictRequest(BaseModel):
    """One text (``text``) or several (``texts``), not both."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"text": "@united thanks, the crew was great!"},
        {"texts": ["lost my bag again", "what time does boarding start?"]},
        {"text": "@united lost my bag again, worst service", "explain": 5},
    ]})

    text: str | None = Field(None, description="A single raw text, as users wrote it.")
    texts: list[str] | None = Field(None, description="Several raw texts, predicted together.")
    # absent: no explanation (and the response as without this field); strict: 5 (or 5.0, an integer to
    # JSON Schema), not "5", true or null
    explain: Annotated[int | None, Field(strict=True, ge=1, le=EXPLAIN_MAX_K)] = Field(
        None, description=(
            f"k in 1..{EXPLAIN_MAX_K}: each prediction also carries `explanation`, the k words of the text "
            "whose removal changes the predicted label's probability most (docs/serving.md#explanations). "
            "Allowed for up to serve.explain_max_texts texts per request."))

    @field_validator("explain", mode="before")
    @classmethod
    def _explain_is_a_whole_number(cls, value: object) -> object:
        if value is None:  # given as null (a default is not validated)
            raise ValueError(f"expected an integer from 1 to {EXPLAIN_MAX_K}, or no explain field, not null")
        if isinstance(value, float) and value.is_integer():
            return int(value)
        return value

    @model_validator(mode="after")
    def _one_of_text_or_texts(self) -> PredictRequest:
        given = {"text", "texts"} & self.model_fields_set
        if len(given) != 1:
            raise ValueError("give exactly one of 'text' or 'texts'")
        if getattr(self, given.pop()) is None:
            raise ValueError("'text' must be a string and 'texts' a list of strings, not null")
        if self.texts is not None and not self.texts:
            raise ValueError("'texts' must hold at least one text")
        for i, text in enumerate(self.all_texts):
            where = "text" if self.text is not None else f"texts[{i}]"
            if "\x00" in text:  # PostgreSQL's text type cannot hold it, nor can a tweet
                raise ValueError(f"{where} contains a NUL character (\\u0000)")
            try:
                text.encode("utf-8")
            except UnicodeEncodeError:  # a lone surrogate such as "\ud800" in the JSON
                raise ValueError(f"{where} is not valid Unicode (a lone surrogate escape)") from None
        return self

    @property
    def all_texts(self) -> list[str]:
        return [self.text] if self.text is not None else list(self.texts or [])


def _no_default(schema: dict) -> None:
    schema.pop("default", None)  # absent, not null: no null in the documented schema


class WordContribution(BaseModel):
    word: str = Field(description="The word as it first occurs in the text; occurrences are grouped "
                                  "case-insensitively and removed together.")
    contribution: float = Field(description=(
        "p(label | text) - p(label | text without every occurrence of the word), both from the served "
        "model: > 0 the word supports the predicted label, < 0 it argues against it."))
    spans: list[tuple[int, int]] = Field(description=(
        "[start, end) of each occurrence in the text, in Unicode code points (not UTF-16 units or bytes)."))


class PredictionOut(BaseModel):
    prediction_id: str = Field(description="Unique id of this prediction (for feedback).")
    label: str
    confidence: float = Field(description="The probability the model gave its label.")
    probabilities: dict[str, float] = Field(description="Probability per class.")
    model_version: str
    # only in answers to requests with "explain" (a plain answer is as it was: no null field)
    explanation: list[WordContribution] | SkipJsonSchema[None] = Field(None, json_schema_extra=_no_default, description=(
        "Only when the request asked for it (`explain`): the top-k words by |contribution|, largest first."))


class PredictResponse(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{
        "request_id": "019afa0c1a3c7c1e8d5f0a2b6c9e1d4f", "model_version": "f7c82c3f755d",
        "predictions": [{"prediction_id": "019afa0c1a3d7e5f8a7b6c5d4e3f2a1b", "label": "positive",
                         "confidence": 0.93, "probabilities": {"negative": 0.03, "neutral": 0.04,
                                                               "positive": 0.93},
                         "model_version": "f7c82c3f755d"}]}]})

    request_id: str
    model_version: str
    predictions: list[PredictionOut]


PREDICTION_ID_PATTERN = "^[0-9a-f]{32}$"


class FeedbackRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"prediction_id": "019afa0c1a3d7e5f8a7b6c5d4e3f2a1b", "label": "neutral"}]})

    # what /v1/predict hands out (predlog/prediction_log.py new_ids): anything else is a 422 on
    # every backend, before the database sees it (PostgreSQL refuses a NUL in text: a 500 otherwise)
    prediction_id: str = Field(pattern=PREDICTION_ID_PATTERN,
                               description="From a /v1/predict answer: 32 lowercase hex digits.")
    label: str = Field(description="The correct label, one of the model's classes.")


class FeedbackResponse(BaseModel):
    prediction_id: str
    label: str
    status: str


class ErrorDetail(BaseModel):
    field: str
    message: str


class ErrorResponse(BaseModel):
    error: str
    details: list[ErrorDetail] = []


class Health(BaseModel):
    status: str


ERRORS: dict[int | str, dict] = {
    413: {"model": ErrorResponse, "description": "Body or text count over the limits"},
    422: {"model": ErrorResponse, "description": "Malformed request (the field is named)"},
}


def tighten_schema(schema: dict, settings: ServeConfig, classes: list[str]) -> None:
    """Say in the OpenAPI schema what the server enforces, so that a client (or schemathesis)
    generating schema-valid requests gets 2xx: exactly one of text/texts, the size limits, the
    model's classes as feedback labels. Known only once the settings and the model are."""
    schemas = schema["components"]["schemas"]
    # no NUL: the prediction log (PostgreSQL's text type) cannot store it, so it is a 422
    text = {"type": "string", "maxLength": settings.max_chars_per_text, "pattern": "^[^\\u0000]*$"}
    predict = schemas["PredictRequest"]
    predict["properties"]["text"] = {**text, "description": predict["properties"]["text"].get("description", "")}
    predict["properties"]["texts"] = {"type": "array", "items": text, "minItems": 1,
                                      "maxItems": settings.max_texts_per_request,
                                      "description": predict["properties"]["texts"].get("description", "")}
    explain = predict["properties"]["explain"]
    predict["properties"]["explain"] = {"type": "integer", "minimum": 1, "maximum": EXPLAIN_MAX_K,
                                        "description": explain.get("description", "")}
    predict["oneOf"] = [{"required": ["text"]}, {"required": ["texts"]}]
    # with explain, at most explain_max_texts texts (more: a 422 naming explain)
    predict["anyOf"] = [{"not": {"required": ["explain"]}},
                        {"properties": {"texts": {"maxItems": settings.explain_max_texts}}}]
    predict["additionalProperties"] = False
    schemas["FeedbackRequest"]["properties"]["label"]["enum"] = list(classes)
