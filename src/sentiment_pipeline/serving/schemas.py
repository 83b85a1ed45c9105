"""Request and response bodies of the API, and what the OpenAPI schema says beyond them."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, model_validator

from sentiment_pipeline.core.config import ServeConfig


class PredictRequest(BaseModel):
    """One text (``text``) or several (``texts``), not both."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"text": "@united thanks, the crew was great!"},
        {"texts": ["lost my bag again", "what time does boarding start?"]},
    ]})

    text: str | None = Field(None, description="A single raw text, as users wrote it.")
    texts: list[str] | None = Field(None, description="Several raw texts, predicted together.")

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


class PredictionOut(BaseModel):
    prediction_id: str = Field(description="Unique id of this prediction (for feedback).")
    label: str
    confidence: float = Field(description="The probability the model gave its label.")
    probabilities: dict[str, float] = Field(description="Probability per class.")
    model_version: str


class PredictResponse(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{
        "request_id": "3f1c2d6e9a7b4c1e8d5f0a2b6c9e1d4f", "model_version": "f7c82c3f755d",
        "predictions": [{"prediction_id": "9b2e6f0c1a3d4e5f8a7b6c5d4e3f2a1b", "label": "positive",
                         "confidence": 0.93, "probabilities": {"negative": 0.03, "neutral": 0.04,
                                                               "positive": 0.93},
                         "model_version": "f7c82c3f755d"}]}]})

    request_id: str
    model_version: str
    predictions: list[PredictionOut]


PREDICTION_ID_PATTERN = "^[0-9a-f]{32}$"


class FeedbackRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"prediction_id": "9b2e6f0c1a3d4e5f8a7b6c5d4e3f2a1b", "label": "neutral"}]})

    # what /v1/predict hands out (routes/predict.py prediction_ids): anything else is a 422 on
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
    predict["oneOf"] = [{"required": ["text"]}, {"required": ["texts"]}]
    predict["additionalProperties"] = False
    schemas["FeedbackRequest"]["properties"]["label"]["enum"] = list(classes)
