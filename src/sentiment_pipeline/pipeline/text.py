"""Tweet/review normalisation and stopword handling."""

from __future__ import annotations

import functools
import html
import os
import re
from pathlib import Path

from sentiment_pipeline.core.config import CleaningConfig, StopwordsConfig
from sentiment_pipeline.core.errors import ResourceError

URL_TOKEN, USER_TOKEN, NUMBER_TOKEN, EMOJI_TOKEN = "_url_", "_user_", "_num_", "_emoji_"
SMILE_TOKEN, FROWN_TOKEN, EXCLAIM_TOKEN, QUESTION_TOKEN = "_smile_", "_frown_", "_exclaim_", "_question_"

# Byte runs the CrowdFlower corpus holds where its export mis-decoded UTF-8 punctuation.
_MOJIBAKE_PUNCTUATION = {"\x8a\x97\xc8": "\u2019", "\x8a\x97\x93": "\u201c", "\x8a\x97\x9d": "\u201d"}
# Any other run holding a C1 control character (never in real text) is a mangled emoji.
_MOJIBAKE_RUN = re.compile(r"_?[\x80-\xff]*[\x80-\x9f][\x80-\xff]*")
_EMOJI_STAND_IN = "\u2b1c"  # a symbol the emoji rule below recognises

_URL = re.compile(r"(?:https?://|www\.)\S+", re.IGNORECASE)
_MENTION = re.compile(r"(?<![\w@])@\w+")
_HASHTAG = re.compile(r"(?<![\w#])#(\w)")
_NUMBER = re.compile(r"\d+(?:[.,:]\d+)*")
_EMOJI = re.compile(
    "["
    "\U0001f1e6-\U0001f1ff"  # regional indicators (flags)
    "\U0001f300-\U0001faff"  # pictographs, emoticons, transport, supplemental symbols
    "\u2600-\u27bf"  # miscellaneous symbols and dingbats
    "\u2b00-\u2bff"  # arrows and stars
    "\ufe0f\u200d"  # variation selector and zero-width joiner inside emoji sequences
    "]+"
)
# Matched after lowercasing, so ":D" arrives as ":d".
_SMILE = re.compile(r"(?<![\w:])(?:[:;=]'?-?[)\]dp*]|<3)(?!\w)")
_FROWN = re.compile(r"(?<![\w:])[:;=]'?-?[(\[/|](?![\w/])")
_EXCLAIM = re.compile(r"!+")
_QUESTION = re.compile(r"\?+")
_APOSTROPHES = re.compile(r"[\u2018\u2019\u02bc`´]")
_NOT_WORD = re.compile(r"[^\w\s']+")
_REPEATS = re.compile(r"(\w)\1{2,}")
_EDGE_APOSTROPHES = re.compile(r"(?<!\w)'+|'+(?!\w)")
_SPACES = re.compile(r"\s+")

# Words that flip sentiment. NLTK's English list holds them, and the n't contractions both
# in full ("didn't") and as the stem its tokenizer leaves ("didn"); all are kept by default.
_NEGATION_WORDS = frozenset({"no", "nor", "not", "never", "cannot", "ain"})
_NEGATION_STEMS = frozenset({
    "aren", "couldn", "didn", "doesn", "don", "hadn", "hasn", "haven", "isn", "mightn",
    "mustn", "needn", "shan", "shouldn", "wasn", "weren", "won", "wouldn",
})


def is_negation(word: str) -> bool:
    return word in _NEGATION_WORDS or word in _NEGATION_STEMS or word.endswith("n't")


class TextNormalizer:
    """Regex normalisation of short informal texts, configured by ``preprocess.cleaning``."""

    def __init__(self, config: CleaningConfig, stopwords: frozenset[str] = frozenset()) -> None:
        self.config = config
        self.stopwords = stopwords

    def __call__(self, text: str) -> str:
        cleaned = self.clean_words(text)
        if cleaned and self.config.lexicon == "vader":
            cleaned += " " + lexicon_token(vader_compound(self.lexicon_text(text)), self.config.lexicon_bins)
        return cleaned

    def clean_words(self, text: str) -> str:
        """The cleaned words, without the lexicon token."""
        cfg = self.config
        text = self._repaired(text)
        if cfg.lowercase:
            text = text.lower()
        text = _APOSTROPHES.sub("'", text)
        text = _replace(_URL, text, cfg.urls, URL_TOKEN)
        text = _replace(_MENTION, text, cfg.mentions, USER_TOKEN)
        if cfg.hashtags == "strip_hash":
            text = _HASHTAG.sub(r"\1", text)
        text = _replace(_EMOJI, text, cfg.emoji, EMOJI_TOKEN)
        # Emoticons before numbers, which would take the 3 of <3.
        text = _replace(_SMILE, text, cfg.emoticons, SMILE_TOKEN)
        text = _replace(_FROWN, text, cfg.emoticons, FROWN_TOKEN)
        text = _replace(_NUMBER, text, cfg.numbers, NUMBER_TOKEN)
        text = _replace(_EXCLAIM, text, cfg.punctuation, EXCLAIM_TOKEN)
        text = _replace(_QUESTION, text, cfg.punctuation, QUESTION_TOKEN)
        if cfg.squeeze_repeats:
            text = _REPEATS.sub(r"\1\1", text)
        if cfg.negation == "mark":
            text = mark_negation(text)
        text = _NOT_WORD.sub(" ", text)
        text = _EDGE_APOSTROPHES.sub(" ", text)
        words = text.split()
        if self.stopwords:
            # a stopword inside a negation's scope goes too ("not the best" -> "not neg_best"),
            # and so would a word typed as neg_<stopword>
            marked = cfg.negation == "mark"
            words = [w for w in words
                     if (w.removeprefix(NEGATED_PREFIX) if marked else w) not in self.stopwords]
        return " ".join(words)

    def lexicon_text(self, text: str) -> str:
        """The text VADER scores: decoded and repaired like the words, its capitals, punctuation
        and emoticons kept, without the @mentions and URLs cleaning removes or tokenizes (a
        handle such as @united is a word in VADER's lexicon), cut to ``LEXICON_MAX_CHARS``.
        (The corpus's mangled emoji become a neutral stand-in here, as they do for the words.)"""
        cfg = self.config
        # VADER knows negations by their straight apostrophe ("isn't"), not the repaired curly one
        text = _APOSTROPHES.sub("'", self._repaired(text))
        if cfg.urls != "keep":
            text = _URL.sub(" ", text)
        if cfg.mentions != "keep":
            text = _MENTION.sub(" ", text)
        return text[:LEXICON_MAX_CHARS]

    def words_of(self, cleaned: str) -> str:
        """A cleaned text without its lexicon token: texts equal but for their lexicon bin
        (``GREAT!!!`` and ``great``) are duplicates to the deduplication."""
        return without_lexicon_token(cleaned) if self.config.lexicon != "none" else cleaned

    def _repaired(self, text: str) -> str:
        if self.config.html_entities:
            text = html.unescape(text)
        if self.config.repair_mojibake:
            text = repair_mojibake(text)
        return text


LEXICON_TOKEN_PREFIX = "_vader"
# VADER's cost grows faster than the text's length (tens of ms at the API's 5,000 characters,
# seconds at 50,000), so it scores a text's first 1,000 characters, in training and serving
# alike. No airline tweet is that long; the token of a longer review reflects its opening.
LEXICON_MAX_CHARS = 1_000
_LEXICON_TOKEN_SUFFIX = re.compile(rf" {LEXICON_TOKEN_PREFIX}\d+_$")


@functools.lru_cache(maxsize=1)
def _vader():
    # Imported and built on first use: reading VADER's lexicon files takes ~0.1 s.
    from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

    return SentimentIntensityAnalyzer()


def vader_compound(text: str) -> float:
    """VADER's compound score in [-1, 1]."""
    return _vader().polarity_scores(text)["compound"]


def lexicon_token(compound: float, bins: int) -> str:
    """The token of the equal-width bin of [-1, 1] that holds ``compound``: a feature the
    TF-IDF vectorizer and every model see like a word (so serving needs nothing more)."""
    return f"{LEXICON_TOKEN_PREFIX}{min(int((compound + 1.0) * bins / 2), bins - 1)}_"


def without_lexicon_token(cleaned: str) -> str:
    """A cleaned text that ends in a lexicon token as :meth:`TextNormalizer.clean_words` gave it."""
    return _LEXICON_TOKEN_SUFFIX.sub("", cleaned)


NEGATED_PREFIX = "neg_"
# Where a negation's scope ends: clause punctuation (not an apostrophe, not a decimal point,
# numbers are handled before) or the tokens ! and ? became.
_CLAUSE_END = re.compile(rf"[.,;:]+|\s(?:{EXCLAIM_TOKEN}|{QUESTION_TOKEN})\s")
_WORD = re.compile(r"[\w']+")


def _opens_negation(word: str) -> bool:
    """A negation as tweets spell it: not, never, ..., didn't and didnt (never the stem alone:
    "won" is more often a verb than the start of "won't")."""
    return (word in _NEGATION_WORDS or word.endswith("n't") or word == "cant"
            or (word.endswith("nt") and word[:-1] in _NEGATION_STEMS))


def mark_negation(text: str) -> str:
    """``neg_`` before every word that follows a negation in the same clause."""
    clauses = []
    position = 0
    for end in _CLAUSE_END.finditer(text):
        clauses.append(_mark_clause(text[position:end.start()]) + end.group())
        position = end.end()
    clauses.append(_mark_clause(text[position:]))
    return "".join(clauses)


def _mark_clause(clause: str) -> str:
    negated = False

    def mark(match: re.Match[str]) -> str:
        nonlocal negated
        word = match.group()
        if negated and not word.startswith("_"):  # placeholder tokens such as _url_ stay as they are
            return NEGATED_PREFIX + word
        negated = negated or _opens_negation(word)
        return word

    return _WORD.sub(mark, clause)


def repair_mojibake(text: str) -> str:
    for broken, fixed in _MOJIBAKE_PUNCTUATION.items():
        text = text.replace(broken, fixed)
    return _MOJIBAKE_RUN.sub(f" {_EMOJI_STAND_IN} ", text)


def _replace(pattern: re.Pattern[str], text: str, mode: str, token: str) -> str:
    if mode == "keep":
        return text
    return pattern.sub(f" {token} " if mode == "token" else " ", text)


def _project_nltk_dir() -> Path:
    return Path.cwd() / ".nltk_data"


def _find_first(find, *names: str):
    """NLTK finds an unpacked corpus by its directory, a zipped one by a path inside the zip."""
    for name in names[:-1]:
        try:
            return find(name)
        except LookupError:
            pass
    return find(names[-1])


def nltk_english_stopwords() -> list[str]:
    """Read NLTK's English stopword list; fail with set-up instructions when it is missing."""
    # Imported here: NLTK is slow to import and only this function needs it.
    import nltk
    from nltk.corpus.reader import WordListCorpusReader

    local = str(_project_nltk_dir())
    if local not in nltk.data.path:
        nltk.data.path.append(local)
    try:
        # A fresh reader each time, not nltk.corpus.stopwords, which caches its first lookup.
        root = _find_first(nltk.data.find, "corpora/stopwords", "corpora/stopwords.zip/stopwords/")
        return WordListCorpusReader(root, ["english"], encoding="utf8").words()
    except LookupError as exc:
        searched = os.environ.get("NLTK_DATA") or "NLTK's default locations and ./.nltk_data"
        raise ResourceError(
            "NLTK's English stopword corpus was not found (searched "
            f"{searched}). Run 'make stopwords' (it runs "
            "'python -m nltk.downloader -d .nltk_data stopwords'), or point NLTK_DATA at a "
            "directory holding corpora/stopwords.zip, or set preprocess.stopwords.source: list "
            "with your own preprocess.stopwords.words."
        ) from exc


def build_stopwords(config: StopwordsConfig) -> frozenset[str]:
    """The stopword set the cleaner removes, per ``preprocess.stopwords``."""
    if not config.enabled:
        return frozenset()
    raw_words = config.words if config.source == "list" else nltk_english_stopwords()
    words = {_APOSTROPHES.sub("'", w.strip().lower()) for w in raw_words if w.strip()}
    if config.keep_negations:
        words = {w for w in words if not is_negation(w)}
    return frozenset(words)
