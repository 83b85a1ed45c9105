"""Per-prediction explanations by occlusion, computed by the served model itself.

A text's words are found in the RAW text (below: ``WORD``), occurrences of the same word
grouped case-insensitively, and one variant of the text is made per distinct word with every
occurrence of it replaced by a space. The text and all its variants go through ONE
``Predictor.predict`` call: the run's cleaning (negation marks, the VADER lexicon token), the
TF-IDF word and character n-grams and the calibrated model or ensemble, on the compiled path
that gives scikit-learn's bits. The contribution of a word to the predicted label ``c`` is

    p(c | text) - p(c | text without the word)

> 0: the word supports the label (without it the model is less sure of ``c``); < 0: it argues
against it. Nothing is approximated: the numbers are the served model's own probabilities, and
the text's own prediction comes from the same call (row-wise, so the bits of a plain request).
Contributions do not add up to the probability: words interact (``not good``).

Cost: one model call on ``1 + distinct words`` texts (at most ``max_words + 1``).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from sentiment_pipeline.inference.predictor import Predictions, Predictor
from sentiment_pipeline.pipeline.text import _EMOJI  # the emoji runs the cleaning tokenizes

# What counts as a word of the raw text: the units the cleaning turns into tokens, each whole
# (a URL, an @mention, a #hashtag, an emoticon, a run of emoji or of ! or ?, a number), else a
# run of word characters with inner apostrophes ("don't" is one word: its cleaning, "don't" or a
# negation mark, depends on both halves). Tried in this order at each position.
WORD = re.compile(
    r"(?:https?://|www\.)\S+"
    r"|(?<![\w@])@\w+"
    r"|(?<![\w#])#\w+"
    r"|(?<![\w:])(?:[:;=]'?-?[)\]dp*(\[/|]|<3)(?![\w/])"
    rf"|{_EMOJI.pattern}"
    r"|\d+(?:[.,:]\d+)*"
    r"|\w+(?:['\u2019]\w+)*"
    r"|!+|\?+",
    re.IGNORECASE,
)


# The most words one explanation lists (the API's and predict --explain's k): a reader takes in a
# handful, and a larger k costs nothing more (every examined word is predicted anyway).
MAX_K = 20


@dataclass(frozen=True)
class Contribution:
    """One distinct word of a text and what removing it does to the predicted label's probability."""

    word: str  # its first occurrence, as written
    contribution: float  # p(label | text) - p(label | text without every occurrence of the word)
    spans: tuple[tuple[int, int], ...]  # [start, end) of each occurrence, in code points (str indices)

    def as_dict(self) -> dict:
        return {"word": self.word, "contribution": self.contribution, "spans": [list(s) for s in self.spans]}


def _key(word: str) -> str:
    """Occurrences with the same key are one word: case-insensitive; "!!!" is "!" (both clean to
    the same token)."""
    if word[0] in "!?":
        return word[0]
    return word.casefold()


def distinct_words(text: str, max_words: int) -> list[tuple[str, tuple[tuple[int, int], ...]]]:
    """The first ``max_words`` distinct words of ``text`` (in order of first occurrence), each
    with the spans of all its occurrences."""
    found: dict[str, tuple[str, list[tuple[int, int]]]] = {}
    for match in WORD.finditer(text):
        key = _key(match.group())
        if key in found:
            found[key][1].append(match.span())
        elif len(found) < max_words:
            found[key] = (match.group(), [match.span()])
    return [(word, tuple(spans)) for word, spans in found.values()]


def without(text: str, spans: Sequence[tuple[int, int]]) -> str:
    """``text`` with each span (sorted, disjoint) replaced by one space, so that its neighbours
    do not join into a new word."""
    pieces, last = [], 0
    for start, end in spans:
        pieces += [text[last:start], " "]
        last = end
    pieces.append(text[last:])
    return "".join(pieces)


def explain(predictor: Predictor, texts: Sequence[str], k: int,
            max_words: int) -> tuple[Predictions, list[list[Contribution]]]:
    """The predictions of ``texts`` and, per text, its ``k`` words of largest |contribution|
    (ties: first in the text first), among its first ``max_words`` distinct words; all in one
    model call."""
    if k < 1 or max_words < 1:
        raise ValueError(f"k and max_words must be at least 1, got {k} and {max_words}")
    words = [distinct_words(text, max_words) for text in texts]
    batch: list[str] = []
    first_rows = np.zeros(len(texts), dtype=np.int64)  # text i's row; its variants follow it
    for i, (text, found) in enumerate(zip(texts, words, strict=True)):
        first_rows[i] = len(batch)
        batch.append(text)
        batch += [without(text, spans) for _, spans in found]
    result = predictor.predict(batch)
    originals = Predictions(classes=result.classes, label_index=result.label_index[first_rows],
                            confidence=result.confidence[first_rows],
                            probabilities=result.probabilities[first_rows],
                            cleaned_length=result.cleaned_length[first_rows])
    explanations = []
    for i, found in enumerate(words):
        row, label = int(first_rows[i]), int(originals.label_index[i])
        variants = result.probabilities[row + 1:row + 1 + len(found), label]
        contributions = (result.probabilities[row, label] - variants).tolist()
        order = sorted(range(len(found)), key=lambda j: -abs(contributions[j]))[:k]  # stable: ties by position
        explanations.append([Contribution(found[j][0], contributions[j], found[j][1]) for j in order])
    return originals, explanations
