import pytest

from sentiment_pipeline.core.config import CleaningConfig, StopwordsConfig
from sentiment_pipeline.core.errors import ResourceError
from sentiment_pipeline.pipeline.text import (
    LEXICON_MAX_CHARS,
    TextNormalizer,
    build_stopwords,
    is_negation,
    lexicon_token,
    vader_compound,
    without_lexicon_token,
)


@pytest.mark.parametrize(
    "raw, expected",
    [
        ("@united I LOVE it", "i love it"),
        ("delayed &amp; rude", "delayed rude"),
        ("see http://t.co/abc and www.x.com", "see _url_ and _url_"),
        ("#fail again", "fail again"),
        ("sooooo gooood!!!", "soo good _exclaim_"),
        ("why?! :( but :-) <3", "why _question_ _exclaim_ _frown_ but _smile_ _smile_"),
        ("can\x8a\x97\xc8t fly \x8a\x97\x93ok\x8a\x97\x9d _\x99\xc8\x8f", "can't fly ok _emoji_"),
        ("waited 2 hours, 10:30 flight", "waited hours flight"),
        ("great flight 😍😍", "great flight _emoji_"),
        ("I didn’t like it", "i didn't like it"),
        ("'quoted' words", "quoted words"),
        ("   ", ""),
    ],
)
def test_default_cleaning(cleaning, raw, expected):
    assert TextNormalizer(cleaning)(raw) == expected


def test_cleaning_switches():
    config = CleaningConfig(mentions="token", urls="remove", numbers="token", emoji="remove",
                            lowercase=False, squeeze_repeats=False, hashtags="keep",
                            emoticons="remove", punctuation="remove", repair_mojibake=False)
    assert TextNormalizer(config)("@AA Sooo 2 late 😡 :( ! http://x.co #Fail") == "_user_ Sooo _num_ late Fail"
    assert TextNormalizer(config)("can\x8a\x97\xc8t") == "can \xc8t"  # the damage repair undoes


def test_negations_are_recognised():
    for word in ["not", "no", "nor", "never", "didn't", "don't", "didn", "wouldn", "won", "isn't"]:
        assert is_negation(word), word
    for word in ["the", "on", "again", "own", "down"]:
        assert not is_negation(word), word


def test_nltk_stopwords_keep_negations_by_default(nltk_stopwords):
    words = build_stopwords(StopwordsConfig(enabled=True))
    assert {"the", "a", "is", "and"} <= words
    assert not {"not", "no", "nor", "didn't", "didn", "don't"} & words
    with_negations = build_stopwords(StopwordsConfig(enabled=True, keep_negations=False))
    assert {"not", "no", "nor", "didn't"} <= with_negations


def test_stopwords_are_removed_after_cleaning(cleaning, nltk_stopwords):
    normalizer = TextNormalizer(cleaning, build_stopwords(StopwordsConfig(enabled=True)))
    assert normalizer("The flight was NOT on time and I didn't enjoy it") == "flight not time didn't enjoy"


def test_negation_is_marked_before_stopwords_go(cleaning):
    # the scope is read on the full text, so a negation opens it even when it is a stopword
    # itself, and the stopwords inside it go like the others
    stopwords = StopwordsConfig(enabled=True, source="list", words=["the", "was", "not"])
    normalizer = TextNormalizer(cleaning.model_copy(update={"negation": "mark"}), build_stopwords(stopwords))
    assert normalizer("The food was not good, the crew was kind") == "food not neg_good crew kind"
    assert normalizer("it was never the best") == "it never neg_best"
    without_negations = build_stopwords(stopwords.model_copy(update={"keep_negations": False}))
    marked = TextNormalizer(cleaning.model_copy(update={"negation": "mark"}), without_negations)
    assert marked("The food was not good, the crew was kind") == "food neg_good crew kind"


def test_explicit_stopword_list_and_disabled():
    words = build_stopwords(StopwordsConfig(enabled=True, source="list", words=["The", " of ", "not"]))
    assert words == {"the", "of"}
    assert build_stopwords(StopwordsConfig(enabled=False)) == frozenset()


def test_missing_nltk_corpus_says_how_to_get_it(monkeypatch, tmp_path):
    import nltk

    monkeypatch.setattr(nltk.data, "path", [str(tmp_path)])
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ResourceError) as info:
        build_stopwords(StopwordsConfig(enabled=True))
    message = str(info.value)
    assert "make stopwords" in message and "nltk.downloader" in message and "NLTK_DATA" in message and "source: list" in message


@pytest.mark.parametrize("raw, expected", [
    ("Not good at all. But the crew was great!", "not neg_good neg_at neg_all but the crew was great _exclaim_"),
    ("I don't like this flight, thanks though", "i don't neg_like neg_this neg_flight thanks though"),
    ("didnt get my bag; ugh", "didnt neg_get neg_my neg_bag ugh"),
    ("wasn't it fun? yes", "wasn't neg_it neg_fun _question_ yes"),
    ("no http://t.co/x refund", "no _url_ neg_refund"),      # placeholder tokens are not marked
    ("we won the game", "we won the game"),                  # a stem alone opens no scope
    ("never", "never"),
])
def test_negation_marking_runs_to_the_clause_end(raw, expected):
    assert TextNormalizer(CleaningConfig(negation="mark"))(raw) == expected


def test_negation_is_not_marked_by_default(cleaning):
    assert TextNormalizer(cleaning)("not good") == "not good"


@pytest.mark.parametrize(("compound", "bins", "token"), [
    (-1.0, 8, "_vader0_"), (-0.76, 8, "_vader0_"), (-0.75, 8, "_vader1_"), (-0.01, 8, "_vader3_"),
    (0.0, 8, "_vader4_"), (0.74, 8, "_vader6_"), (1.0, 8, "_vader7_"), (1.0, 2, "_vader1_"), (-0.2, 5, "_vader2_"),
])
def test_lexicon_token_is_the_compound_scores_equal_width_bin(compound, bins, token):
    assert lexicon_token(compound, bins) == token


def test_vader_token_reads_capitals_punctuation_and_emoticons(cleaning):
    lexicon = TextNormalizer(cleaning.model_copy(update={"lexicon": "vader"}))
    plain = TextNormalizer(cleaning.model_copy(update={"lexicon": "none"}))
    shouted, quiet = "GREAT flight!!! :)", "great flight"
    # VADER reads the capitals, the !!! and the emoticon that cleaning turns into tokens
    assert vader_compound(shouted) > vader_compound(quiet) > 0
    assert lexicon(shouted) == plain(shouted) + " " + lexicon_token(vader_compound(shouted), 8)
    assert lexicon(shouted).endswith(" _vader7_") and lexicon(quiet).endswith(" _vader6_")
    assert lexicon("the worst delay ever").endswith(" _vader0_")
    assert without_lexicon_token(lexicon(shouted)) == plain(shouted) == lexicon.clean_words(shouted)
    assert lexicon.words_of(lexicon(shouted)) == plain(shouted)
    # a text that cleans to nothing stays empty (and is dropped or flagged as such)
    assert lexicon("@united @delta") == "" and lexicon("   ") == ""


def test_vader_does_not_read_what_cleaning_hides(cleaning):
    lexicon = TextNormalizer(cleaning.model_copy(update={"lexicon": "vader"}))
    # "united" is a positive word to VADER: the handle must not move the airline's tweets up
    assert vader_compound("@united my bag is lost") > vader_compound("my bag is lost")
    assert lexicon.lexicon_text("@united my bag is lost https://t.co/x") == "  my bag is lost  "
    assert lexicon("@united my bag is lost") == lexicon("my bag is lost")
    kept = TextNormalizer(cleaning.model_copy(update={"lexicon": "vader", "mentions": "keep"}))
    assert kept.lexicon_text("@united hi") == "@united hi"


def test_vader_reads_the_decoded_text_a_client_would_send(cleaning):
    lexicon = TextNormalizer(cleaning.model_copy(update={"lexicon": "vader"}))
    # the corpus has "&lt;3" and mis-decoded quotes where an API client sends "<3" and "can't"
    assert lexicon.lexicon_text("love it &lt;3") == "love it <3"
    assert lexicon.lexicon_text("I can\x8a\x97\xc8t fly") == "I can't fly"
    assert lexicon("love it &lt;3") == lexicon("love it <3")
    # VADER sees the negation only with a straight apostrophe
    assert lexicon("it isn\x8a\x97\xc8t good") == lexicon("it isn't good") != lexicon("it is good")
    assert lexicon("it isn\u2019t good") == lexicon("it isn't good")


def test_vader_reads_a_bounded_prefix(cleaning):
    lexicon = TextNormalizer(cleaning.model_copy(update={"lexicon": "vader"}))
    long = "the crew was wonderful. " * 40 + "awful awful awful " * 2000
    assert len(lexicon.lexicon_text(long)) == LEXICON_MAX_CHARS
    assert lexicon(long).endswith(lexicon_token(vader_compound(long[:LEXICON_MAX_CHARS]), 8))


def test_dedup_words_keep_a_typed_token_when_the_lexicon_is_off(cleaning):
    plain = TextNormalizer(cleaning.model_copy(update={"lexicon": "none", "numbers": "keep"}))
    typed = plain("i typed _vader7_")
    assert typed == "i typed _vader7_" and plain.words_of(typed) == typed


def test_lexicon_bins_are_a_parameter(cleaning):
    config = cleaning.model_copy(update={"lexicon": "vader", "lexicon_bins": 2})
    assert TextNormalizer(config)("great flight").endswith(" _vader1_")
    with pytest.raises(ValueError, match="lexicon_bins"):
        CleaningConfig(lexicon_bins=1)
    with pytest.raises(ValueError, match="lexicon"):
        CleaningConfig(lexicon="afinn")
