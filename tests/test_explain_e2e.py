"""Explanations on the pipeline's own model (the ensemble, XGBoost among its members) behind a
real socket: contributions recomputed through scikit-learn, ``predict --explain``, and the
dashboard's highlighting in headless Chromium, emoji included (code points vs UTF-16 units)."""

from __future__ import annotations

import json
import subprocess
import sys

import httpx
import pandas as pd
import pytest

from sentiment_pipeline.inference.predictor import Predictor

from .conftest import FIXTURES
from .test_explain import assert_contributions_recompute
from .test_monitoring_e2e import ARTIFACTS, bearer, browser, operator_key, service  # noqa: F401 - fixtures

pytestmark = pytest.mark.e2e

EMOJI_TEXT = "😍😍 @united the crew was GREAT, the food 😡 awful… but great flight!"


def test_contributions_on_the_ensemble_equal_a_recomputation_through_scikit_learn(served_project):
    predictor = Predictor.load(served_project)
    texts = pd.read_csv(FIXTURES / "airline_sample.csv")["text"].iloc[::40].tolist() + [EMOJI_TEXT]
    assert assert_contributions_recompute(predictor, texts) > 50


def test_an_explained_request_over_the_socket_and_predict_explain_agree(service, operator_key, tmp_path):  # noqa: F811
    root, url = service
    key = operator_key[1]
    texts = [EMOJI_TEXT, "lost my bag again, worst airline"]
    answer = httpx.post(f"{url}/v1/predict", json={"texts": texts, "explain": 4}, headers=bearer(key), timeout=30)
    assert answer.status_code == 200, answer.text
    explained = answer.json()["predictions"]
    plain = httpx.post(f"{url}/v1/predict", json={"texts": texts}, headers=bearer(key), timeout=30).json()
    assert [p["probabilities"] for p in explained] == [p["probabilities"] for p in plain["predictions"]]
    assert all("explanation" not in p for p in plain["predictions"])
    source = tmp_path / "in.csv"
    pd.DataFrame({"text": texts}).to_csv(source, index=False)
    done = subprocess.run([sys.executable, "-m", "sentiment_pipeline", "predict", str(source),
                           str(tmp_path / "out.csv"), "--explain", "4", "--project", str(root)],
                          capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr
    out = pd.read_csv(tmp_path / "out.csv")
    assert [json.loads(e) for e in out["explanation"]] == [p["explanation"] for p in explained]


def test_the_dashboard_highlights_the_words_by_sign_and_strength(service, operator_key, browser):  # noqa: F811
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ready
    from selenium.webdriver.support.ui import WebDriverWait

    from sentiment_pipeline.dashboard.highlight import EXPLAIN_WORDS

    _, url = service
    key = operator_key[1]
    browser.get(f"{url}/dashboard")
    if browser.find_elements(By.ID, "login-key"):  # a browser shared with another module may be logged in
        browser.find_element(By.ID, "login-key").send_keys(key)
        browser.find_element(By.ID, "login-button").click()
    WebDriverWait(browser, 20).until(ready.title_is("Sentiment model dashboard"))
    box = browser.find_element(By.ID, "predict-text")
    box.clear()
    # send_keys cannot type characters beyond the BMP in chromedriver: set the value directly
    browser.execute_script("arguments[0].value = arguments[1];", box, EMOJI_TEXT)
    browser.find_element(By.ID, "predict-button").click()
    shown = WebDriverWait(browser, 20).until(ready.visibility_of_element_located((By.ID, "explained-text")))
    expected = httpx.post(f"{url}/v1/predict", json={"text": EMOJI_TEXT, "explain": EXPLAIN_WORDS},
                          headers=bearer(key)).json()["predictions"][0]
    assert shown.text == EMOJI_TEXT  # the whole text, nothing lost or doubled around the marks
    marks = shown.find_elements(By.TAG_NAME, "mark")
    spans = sorted((start, end, item) for item in expected["explanation"] for start, end in item["spans"])
    assert len(marks) == len(spans) > 0
    largest = max(abs(item["contribution"]) for item in expected["explanation"])
    for mark, (start, end, item) in zip(marks, spans, strict=True):
        assert mark.text == EMOJI_TEXT[start:end]  # code-point offsets mapped right past the emoji
        sign = "supports" if item["contribution"] > 0 else "against" if item["contribution"] < 0 else "none"
        assert mark.get_attribute("class") == sign
        assert mark.get_attribute("title").startswith(f"{item['word']}: ")
        if sign != "none":
            color = mark.value_of_css_property("background-color")  # rgba(r, g, b, a)
            red, green, _, alpha = (float(v) for v in color[color.index("(") + 1:-1].split(","))
            assert (green > red) == (sign == "supports")
            assert alpha == pytest.approx(0.15 + 0.65 * abs(item["contribution"]) / largest, abs=0.01)
    legend = browser.find_element(By.CSS_SELECTOR, "#explanation .explain-legend").text
    assert "supports the label" in legend and "argues against it" in legend
    assert len(browser.find_elements(By.CSS_SELECTOR, "#explanation-list li")) == len(expected["explanation"])
    ARTIFACTS.mkdir(exist_ok=True)
    assert browser.find_element(By.ID, "try-it").screenshot(str(ARTIFACTS / "explanation.png"))
