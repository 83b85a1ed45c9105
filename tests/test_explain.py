"""Per-prediction explanations (inference/explain.py): found on the raw text, faithful to the
served model (each contribution recomputed through scikit-learn), and the API's ``explain``
contract in-process on the small model (fast tier). The pipeline's ensemble and the dashboard's
highlighting in a browser: test_explain_e2e.py."""

from __future__ import annotations

import threading

import numpy as np
import pytest
from fastapi.testclient import TestClient

from sentiment_pipeline.core.config import ServeConfig
from sentiment_pipeline.inference.explain import distinct_words, explain, without
from sentiment_pipeline.serving.app import create_app

LIMITS = ServeConfig(max_texts_per_request=4, max_chars_per_text=200, explain_max_texts=2, explain_max_words=64)
PLAIN_KEYS = {"prediction_id", "label", "confidence", "probabilities", "model_version"}


def sklearn_probability(predictor, text: str, label_index: int) -> float:
    """p(label | text) through the fitted scikit-learn pipeline itself, not the compiled path."""
    model = predictor.model
    column = list(model.classes_).index(label_index)
    return float(model.predict_proba([predictor.normalizer(text)])[0, column])


def removed(text: str, spans) -> str:
    """``text`` with the given spans blanked, written independently of ``without``."""
    chars = list(text)
    for start, end in spans:
        chars[start:end] = [""] * (end - start)
        chars[start] = " "
    return "".join(chars)


def assert_contributions_recompute(predictor, texts: list[str], k: int = 20) -> int:
    """Every reported contribution equals p(label | text) - p(label | text without the word),
    both from ``model.predict_proba`` on the normalized texts; returns how many were checked."""
    result, explanations = explain(predictor, texts, k, max_words=64)
    checked = 0
    for i, text in enumerate(texts):
        label = int(result.label_index[i])
        full = sklearn_probability(predictor, text, label)
        assert full == pytest.approx(result.probabilities[i, label], abs=1e-12)
        for item in explanations[i]:
            for start, end in item.spans:
                assert text[start:end].casefold() == item.word.casefold() or item.word[0] in "!?"
            expected = full - sklearn_probability(predictor, removed(text, item.spans), label)
            assert item.contribution == pytest.approx(expected, abs=1e-12), (text, item)
            checked += 1
    return checked


def test_words_are_found_on_the_raw_text_and_grouped_case_insensitively():
    text = "@United GREAT crew, great food!!! :) http://t.co/x #fail don't 😍😍 3.5 hours!"
    found = dict(distinct_words(text, 64))
    assert list(found) == ["@United", "GREAT", "crew", "food", "!!!", ":)", "http://t.co/x", "#fail", "don't",
                           "😍😍", "3.5", "hours"]
    assert found["GREAT"] == ((8, 13), (20, 25))
    assert found["!!!"] == ((30, 33), (len(text) - 1, len(text)))  # "!!!" and "!" clean to the same token
    for word, spans in found.items():
        for start, end in spans:
            assert text[start:end].casefold() == word.casefold() or word == "!!!"
    assert without("great crew, great", [(0, 5), (12, 17)]) == "  crew,  "
    assert [w for w, _ in distinct_words(text, 3)] == ["@United", "GREAT", "crew"]  # the first ones only
    assert distinct_words("", 5) == [] and distinct_words("... -- ", 5) == []


def test_each_contribution_equals_a_recomputation_through_scikit_learn(small_predictor, airline_sample):
    texts = airline_sample["text"].iloc[::15].tolist() + ["😀 great flight 😡 awful", "not bad", ""]
    assert assert_contributions_recompute(small_predictor, texts) > 100


def test_the_explained_prediction_is_the_plain_one_and_the_top_k_are_the_largest(small_predictor, airline_sample):
    texts = airline_sample["text"].iloc[:12].tolist()
    result, explanations = explain(small_predictor, texts, 4, max_words=64)
    plain = small_predictor.predict(texts)
    assert result.labels == plain.labels
    assert np.array_equal(result.probabilities, plain.probabilities)  # same bits: the model is row-wise
    assert np.array_equal(result.cleaned_length, plain.cleaned_length)
    _, every = explain(small_predictor, texts, 20, max_words=64)
    for text, top, full in zip(texts, explanations, every, strict=True):
        assert len(top) == min(4, len(distinct_words(text, 64)))
        assert top == full[:4]  # the k largest |contribution|, largest first
        sizes = [abs(c.contribution) for c in full]
        assert sizes == sorted(sizes, reverse=True)
    with pytest.raises(ValueError, match="at least 1"):
        explain(small_predictor, texts, 0, max_words=64)


def test_removing_the_top_supporting_words_lowers_the_label_probability(small_predictor, airline_sample):
    texts = airline_sample["text"].iloc[::10].tolist()
    result, explanations = explain(small_predictor, texts, 5, max_words=64)
    checked = 0
    for i, text in enumerate(texts):
        supporting = [c for c in explanations[i] if c.contribution > 0][:3]
        if not supporting:
            continue
        label = int(result.label_index[i])
        spans = sorted(span for c in supporting for span in c.spans)
        after = small_predictor.predict([without(text, spans)]).probabilities[0, label]
        assert after < result.probabilities[i, label], (text, supporting)
        checked += 1
    assert checked >= 20


# ------------------------------------------------------------------ the API
@pytest.fixture(scope="module")
def client(small_predictor, tmp_path_factory):
    root = tmp_path_factory.mktemp("explained")
    settings = LIMITS.model_copy(update={"database_url": f"sqlite:///{root / 'predictions.db'}"})
    with TestClient(create_app(settings, lambda: small_predictor, root)) as test_client:
        yield test_client


def test_an_explained_prediction_carries_its_top_words(client, small_predictor, monkeypatch):
    from sentiment_pipeline.serving.routes import predict as route

    threads = []

    def recording(*args):
        threads.append(threading.current_thread().name)
        return explain(*args)

    monkeypatch.setattr(route, "explain", recording)
    text = "@united lost my bag AGAIN, worst service, worst crew"
    response = client.post("/v1/predict", json={"text": text, "explain": 3})
    assert response.status_code == 200, response.text
    assert threads and threads[0].startswith("predict-large")  # off the event loop
    [prediction] = response.json()["predictions"]
    plain = client.post("/v1/predict", json={"text": text}).json()["predictions"][0]
    assert set(plain) == PLAIN_KEYS  # no explanation key at all without explain
    assert set(prediction) == PLAIN_KEYS | {"explanation"}
    assert (prediction["label"], prediction["probabilities"]) == (plain["label"], plain["probabilities"])
    _, [expected] = explain(small_predictor, [text], 3, LIMITS.explain_max_words)
    assert prediction["explanation"] == [c.as_dict() for c in expected]
    assert len(expected) == 3
    assert {item["word"]: item["spans"] for item in prediction["explanation"]}.get("worst", [[27, 32], [42, 47]]) \
        == [[27, 32], [42, 47]]
    for item in prediction["explanation"]:
        assert all(text[start:end].casefold() == item["word"].casefold() for start, end in item["spans"])
    feedback = client.post("/v1/feedback", json={"prediction_id": prediction["prediction_id"], "label": "negative"})
    assert feedback.status_code == 201  # the explained prediction was logged like any other

    many = client.post("/v1/predict", json={"texts": ["great crew", "late again"], "explain": 20}).json()
    assert [len(p["explanation"]) for p in many["predictions"]] == [2, 2]


@pytest.mark.parametrize("explain_value", [0, 21, -1, "5", True, 2.5, [3], None, 1e300])
def test_k_out_of_bounds_is_a_422_naming_explain(client, explain_value):
    response = client.post("/v1/predict", json={"text": "great", "explain": explain_value})
    assert response.status_code == 422, response.text
    assert [d["field"] for d in response.json()["details"]] == ["explain"]


def test_too_many_texts_to_explain_is_a_422_naming_explain(client):
    response = client.post("/v1/predict", json={"texts": ["a", "b", "c"], "explain": 1})
    assert response.status_code == 422, response.text
    [detail] = response.json()["details"]
    assert detail["field"] == "explain" and "serve.explain_max_texts=2" in detail["message"]
    assert client.post("/v1/predict", json={"texts": ["a", "b", "c"]}).status_code == 200  # plain: fine
    whole = client.post("/v1/predict", json={"text": "great crew", "explain": 2.0})  # an integer to JSON Schema
    assert whole.status_code == 200 and len(whole.json()["predictions"][0]["explanation"]) == 2


def test_the_openapi_schema_documents_explain(client):
    components = client.get("/openapi.json").json()["components"]["schemas"]
    request = components["PredictRequest"]
    explain_schema = request["properties"]["explain"]
    assert {k: explain_schema[k] for k in ("type", "minimum", "maximum")} == {"type": "integer", "minimum": 1,
                                                                               "maximum": 20}
    assert "docs/serving.md#explanations" in explain_schema["description"]
    assert request["anyOf"] == [{"not": {"required": ["explain"]}}, {"properties": {"texts": {"maxItems": 2}}}]
    out = components["PredictionOut"]
    assert "explanation" not in out["required"]
    assert out["properties"]["explanation"]["type"] == "array"
    assert out["properties"]["explanation"]["items"]["$ref"].endswith("/WordContribution")
    assert set(components["WordContribution"]["required"]) == {"word", "contribution", "spans"}
    assert "null" not in str(request) + str(out)  # neither a null type nor a null default
    assert "code points" in components["WordContribution"]["properties"]["spans"]["description"]


# ------------------------------------------------------------------ predict --explain
@pytest.mark.parametrize("suffix", ["csv", "jsonl", "parquet"])
def test_predict_file_adds_the_explanation_column(small_predictor, tmp_path, suffix):
    import json

    import pandas as pd

    from sentiment_pipeline.serving.batch import predict_file

    texts = ["@united lost my bag AGAIN", "great crew 😍, thanks!", "...", "what time is boarding?"]
    source = tmp_path / "in.jsonl"
    pd.DataFrame({"id": ["a", "b", "c", "d", "e"], "text": [*texts, None]}).to_json(source, orient="records",
                                                                                   lines=True)
    target = tmp_path / f"out.{suffix}"
    # chunks of 4 rows: the second one is all skipped (no text), an empty batch to explain
    predict_file(small_predictor, source, target, id_columns=["id"], chunk_rows=4, explain=2, on_bad_row="skip",
                 progress=False)
    out = {"csv": lambda p: pd.read_csv(p, dtype={"id": str}, keep_default_na=False),
           "jsonl": lambda p: pd.read_json(p, lines=True, dtype=False), "parquet": pd.read_parquet}[suffix](target)
    assert list(out.columns) == ["id", "label", "confidence", "p_negative", "p_neutral", "p_positive", "explanation"]
    result, explanations = explain(small_predictor, texts, 2, max_words=64)
    assert out["label"].tolist() == result.labels
    assert [json.loads(e) for e in out["explanation"]] == [[c.as_dict() for c in e] for e in explanations]
    assert json.loads(out["explanation"][2]) == []  # no words: an empty list, not a missing value
    assert "😍" in out["explanation"][1]  # JSON text as written, not \\u escapes


@pytest.mark.parametrize("suffix", ["csv", "parquet"])
def test_predict_file_with_explain_on_a_header_only_input_writes_a_valid_empty_output(small_predictor, tmp_path,
                                                                                     suffix):
    import pandas as pd

    from sentiment_pipeline.serving.batch import predict_file

    source = tmp_path / "in.csv"
    source.write_text("text\n")
    target = tmp_path / f"out.{suffix}"
    predict_file(small_predictor, source, target, explain=3, progress=False)
    out = pd.read_csv(target) if suffix == "csv" else pd.read_parquet(target)
    assert len(out) == 0 and out.columns[-1] == "explanation"


def test_explain_out_of_bounds_is_refused_before_anything_is_written(small_predictor, tmp_path):
    from typer.testing import CliRunner

    from sentiment_pipeline.cli import app
    from sentiment_pipeline.core.errors import DataError
    from sentiment_pipeline.serving.batch import predict_file

    source = tmp_path / "in.csv"
    source.write_text("text\ngreat\n")
    with pytest.raises(DataError, match="--explain must be from 1 to 20 words, got 21"):
        predict_file(small_predictor, source, tmp_path / "out.csv", explain=21)
    assert not (tmp_path / "out.csv").exists()
    refused = CliRunner().invoke(app, ["predict", str(source), str(tmp_path / "out.csv"), "--explain", "0"])
    assert refused.exit_code == 2 and "--explain" in refused.output
