from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from sentiment_pipeline.config import CleaningConfig, StopwordsConfig

FIXTURES = Path(__file__).parent / "fixtures"
PROJECT_ROOT = Path(__file__).parent.parent


@pytest.fixture(scope="session")
def airline_sample() -> pd.DataFrame:
    """300 real airline tweets (150 negative, 80 neutral, 70 positive) from the embedded corpus."""
    return pd.read_csv(FIXTURES / "airline_sample.csv", dtype=str, keep_default_na=False)


@pytest.fixture()
def no_stopwords() -> StopwordsConfig:
    return StopwordsConfig(enabled=False)


@pytest.fixture()
def cleaning() -> CleaningConfig:
    return CleaningConfig()


@pytest.fixture(scope="session")
def separable_texts() -> pd.DataFrame:
    """A small three-class corpus where each class has its own vocabulary plus shared noise."""
    rng = np.random.default_rng(0)
    vocab = {
        "negative": ["awful", "delayed", "lost", "rude", "worst", "cancelled"],
        "neutral": ["flight", "gate", "schedule", "question", "ticket", "route"],
        "positive": ["great", "thanks", "love", "amazing", "friendly", "best"],
    }
    shared = ["the", "plane", "today", "crew", "seat", "bag"]
    rows = []
    for label, n in (("negative", 60), ("neutral", 30), ("positive", 24)):
        for i in range(n):
            words = list(rng.choice(vocab[label], 3)) + list(rng.choice(shared, 3)) + [f"w{i}"]
            rows.append({"text": " ".join(words), "label": label})
    return pd.DataFrame(rows).sample(frac=1, random_state=0).reset_index(drop=True)
