"""An app factory for tests that start a real multi-worker server (``python -m
tests.serving_worker_app``): each worker unpickles the small in-process model the test saved
(``SENTIMENT_TEST_PREDICTOR``) and reads its settings from ``SENTIMENT_TEST_SETTINGS`` (JSON), so
no ``dvc repro`` is needed."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

from fastapi import FastAPI

from sentiment_pipeline.core.config import ServeConfig
from sentiment_pipeline.serving.app import create_app

PREDICTOR_ENV, SETTINGS_ENV, ROOT_ENV = "SENTIMENT_TEST_PREDICTOR", "SENTIMENT_TEST_SETTINGS", "SENTIMENT_TEST_ROOT"


def settings() -> ServeConfig:
    return ServeConfig.model_validate_json(os.environ[SETTINGS_ENV])


def create() -> FastAPI:
    def load():
        with open(os.environ[PREDICTOR_ENV], "rb") as handle:
            return pickle.load(handle)

    return create_app(settings(), load, Path(os.environ[ROOT_ENV]))


if __name__ == "__main__":
    from sentiment_pipeline.serving import server

    server.run(settings(), app="tests.serving_worker_app:create", log_level="warning")
