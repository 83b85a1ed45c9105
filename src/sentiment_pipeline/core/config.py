"""Typed view of ``params.yaml``.

Every stage reads its section through these models, so a typo in a key or a value of the
wrong type fails before any work starts, with the offending key named in the message.
"""

from __future__ import annotations

import functools
import re
from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from sentiment_pipeline.core.errors import ConfigError

# PyYAML implements YAML 1.1, whose float pattern needs a dot and a signed exponent, so
# ``1e-06`` or ``1e3`` (as written by ``dvc exp run -S``) would load as strings.  We add the
# YAML 1.2 core-schema float pattern to a private SafeLoader subclass.
_YAML12_FLOAT = re.compile(
    r"""^(?:[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?
        |[-+]?\.(?:inf|Inf|INF)
        |\.(?:nan|NaN|NAN))$""",
    re.X,
)


class _ParamsLoader(yaml.SafeLoader):
    """SafeLoader that also reads YAML 1.2 floats such as ``1e-06``."""


_ParamsLoader.yaml_implicit_resolvers = {
    key: list(resolvers) for key, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_ParamsLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float", _YAML12_FLOAT, list("-+0123456789.")
)


def load_yaml(path: Path) -> object:
    """Read a YAML file with YAML 1.2 number rules."""
    with open(path, encoding="utf-8") as handle:
        return yaml.load(handle, Loader=_ParamsLoader)  # noqa: S506 - SafeLoader subclass


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# ---------------------------------------------------------------- download
# Streaming: a stage given chunk_rows reads its input in chunks of that many rows and writes
# the same files as the in-memory path (null), with memory bounded by the chunk size.
ChunkRows = Annotated[int, Field(ge=1)] | None


def _not_zero(value: int) -> int:
    if value == 0:
        raise ValueError("must be a positive count or negative (-1: all cores), not 0")
    return value


NJobs = Annotated[int, AfterValidator(_not_zero)]

AMAZON_3_CLASS = {1: "negative", 2: "negative", 3: "neutral", 4: "positive", 5: "positive"}


# download.sources: what only the whole stage sets, and what an entry setting `source` states itself
_STAGE_WIDE = {"min_rows", "chunk_rows", "sources", "precedence"}
_LOCATION = {"path", "url", "sha256", "format"}
_PER_SOURCE = {"source", "path", "url", "sha256", "format", "schema", "text_column", "label_column",
               "rating_column", "rating_labels", "labels", "encoding", "timeout_seconds", "retries",
               "backoff_seconds"}


class DownloadConfig(_Section):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    source: Literal["embedded_airline", "embedded_all", "file", "url"] = "embedded_airline"
    path: Path | None = None
    url: str | None = None
    sha256: Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")] | None = None
    format: Literal["csv", "tsv", "jsonl", "parquet"] | None = None
    # generic: text and label columns; amazon_reviews_2023: title + text, label from the rating
    schema_: Literal["generic", "amazon_reviews_2023"] = Field("generic", alias="schema")
    text_column: str | Annotated[list[str], Field(min_length=1)] = "text"
    label_column: str = "label"
    rating_column: str = "rating"
    rating_labels: dict[int, str] = Field(default_factory=lambda: dict(AMAZON_3_CLASS))
    labels: list[str] | None = None
    min_rows: Annotated[int, Field(ge=1)] = 10
    encoding: str = "utf-8"
    timeout_seconds: Annotated[float, Field(gt=0)] = 30.0
    retries: Annotated[int, Field(ge=0)] = 3
    backoff_seconds: Annotated[float, Field(ge=0)] = 1.0
    # Read the source in chunks of this many rows (data larger than memory); null reads it
    # whole. Same output file either way.
    chunk_rows: ChunkRows = None
    # Several sources merged into one data/raw with a `source` column (null: the one source above).
    # Each entry is {name: ..., <any field above but min_rows/chunk_rows>}; what it leaves out it
    # takes from this section, except that an entry setting `source` states its own location
    # (path, url, sha256, format). See docs/data.md#several-sources.
    sources: Annotated[list[dict[str, object]], Field(min_length=2)] | None = None
    # Source names, first wins where sources label the same text differently (null: the order of
    # `sources`).
    precedence: list[str] | None = None

    @model_validator(mode="after")
    def _source_needs_location(self) -> DownloadConfig:
        if self.source == "file" and self.path is None:
            raise ValueError("download.path is required when download.source is 'file'")
        if self.source == "url" and (self.url is None or self.sha256 is None):
            raise ValueError("download.url and download.sha256 are required when download.source is 'url'")
        if self.precedence is not None and self.sources is None:
            raise ValueError("download.precedence orders download.sources, which is not set")
        if self.sources is not None:
            self.source_configs()  # every entry valid, names unique, precedence complete
        return self

    def source_configs(self) -> list[tuple[str, DownloadConfig]]:
        """(name, config) of each of ``download.sources`` in precedence order (first wins); a
        ConfigError-ready ValueError names the entry's key (``download.sources[1].path``)."""
        if self.sources is None:
            raise ValueError("download.sources is not set")
        section = self.model_dump(by_alias=True, exclude_unset=True, exclude=_STAGE_WIDE)
        configs: dict[str, DownloadConfig] = {}
        locations: dict[tuple, str] = {}
        for i, entry in enumerate(self.sources):
            key = f"download.sources[{i}]"
            name, fields = entry.get("name"), {k: v for k, v in entry.items() if k != "name"}
            if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9_.-]+", name):
                raise ValueError(f"{key}.name: expected a name of letters, digits, '_', '.' or '-' (got {name!r})")
            if name in configs:
                raise ValueError(f"{key}.name: {name!r} names an earlier entry too; names must be unique")
            unknown = sorted(set(fields) - _PER_SOURCE)
            if unknown:
                raise ValueError(f"{key}.{unknown[0]}: not a per-source field; an entry may set "
                                 f"name and {', '.join(sorted(_PER_SOURCE))}")
            merged = {k: v for k, v in section.items() if "source" not in fields or k not in _LOCATION}
            merged.update(fields)
            source, location = merged.get("source", "embedded_airline"), merged.get("path") or merged.get("url")
            if source == "file" and merged.get("path") is None:
                raise ValueError(f"{key}.path is required when its source is 'file'")
            if source == "url" and (merged.get("url") is None or merged.get("sha256") is None):
                raise ValueError(f"{key}.url and {key}.sha256 are required when its source is 'url'")
            try:
                configs[name] = DownloadConfig.model_validate(merged)
            except ValidationError as exc:
                item = exc.errors()[0]
                field = str(item["loc"][0]) if item["loc"] else ""
                where = f"{key}.{field}" if field in fields else f"download.{field} (inherited by {key})"
                raise ValueError(f"{where}: {item['msg']} (got {item.get('input')!r})") from None
            place = (source, str(location))
            if place in locations:
                raise ValueError(f"{key}: reads the same {source} source as entry {locations[place]!r}")
            locations[place] = name
        order = self.precedence if self.precedence is not None else list(configs)
        if sorted(order) != sorted(configs) or len(set(order)) != len(order):
            raise ValueError(f"download.precedence: expected each name of download.sources once, "
                             f"{sorted(configs)}, got {order}")
        return [(name, configs[name]) for name in order]

    @property
    def text_columns(self) -> list[str]:
        """Columns joined (with a space) into the text; Amazon reviews default to title + text."""
        if self.schema_ == "amazon_reviews_2023" and "text_column" not in self.model_fields_set:
            return ["title", "text"]
        return [self.text_column] if isinstance(self.text_column, str) else list(self.text_column)


# ---------------------------------------------------------------- preprocess
class StopwordsConfig(_Section):
    # Defaults match params.yaml: a params file that leaves a section out gets what the
    # committed one says, not a different pipeline (and no need for NLTK's corpus).
    enabled: bool = False
    # ``nltk`` reads NLTK's English stopword corpus and fails if it is missing; ``list``
    # uses ``words`` below. There is no silent switch from one to the other.
    source: Literal["nltk", "list"] = "nltk"
    keep_negations: bool = True
    words: list[str] = Field(default_factory=list)

    @model_validator(mode="after")
    def _list_needs_words(self) -> StopwordsConfig:
        if self.enabled and self.source == "list" and not self.words:
            raise ValueError("preprocess.stopwords.words must list words when source is 'list'")
        return self


class CleaningConfig(_Section):
    lowercase: bool = True
    html_entities: bool = True
    # The CrowdFlower corpus stores curly quotes and emoji as mis-decoded byte runs
    # ("can\x8a\x97\xc8t" for "can't"); repairing them keeps negations and emoji visible.
    repair_mojibake: bool = True
    urls: Literal["keep", "remove", "token"] = "token"
    mentions: Literal["keep", "remove", "token"] = "remove"
    hashtags: Literal["keep", "strip_hash"] = "strip_hash"
    numbers: Literal["keep", "remove", "token"] = "remove"
    emoji: Literal["keep", "remove", "token"] = "token"
    emoticons: Literal["remove", "token"] = "token"     # :) -> _smile_, :( -> _frown_
    punctuation: Literal["remove", "token"] = "token"   # ! -> _exclaim_, ? -> _question_
    squeeze_repeats: bool = True
    # mark: the words after a negation, to the end of its clause (. , ; : ! ? or the text's
    # end), get a neg_ prefix: "not good" -> "not neg_good", a feature of its own
    negation: Literal["keep", "mark"] = "keep"
    # vader: one token more, _vader<k>_, the bin of VADER's compound score of the text with its
    # capitals, punctuation and emoticons (decoded and repaired as above, without the mentions
    # and URLs cleaning hides, its first 1,000 characters); none: no token
    lexicon: Literal["none", "vader"] = "none"
    lexicon_bins: Annotated[int, Field(ge=2, le=100)] = 8


DataBackend = Literal["local", "dask"]


def _dask_streams(section: str, config: PreprocessConfig | FeaturizeConfig) -> None:
    # backend: dask spreads the streamed path's chunks; it does not imply streaming: with chunk_rows
    # null the stage runs in memory, and featurize's in-memory TF-IDF training matrix differs from
    # the streamed one in the last bits, so streaming by default would let the backend change the
    # outputs (which must not: the backend keys are not stage params)
    if config.backend == "dask" and config.chunk_rows is None:
        raise ValueError(f"{section}.backend: dask processes chunks on the cluster: set {section}.chunk_rows "
                         "(e.g. 100000; null reads the data whole in this process)")


class PreprocessConfig(_Section):
    cleaning: CleaningConfig = CleaningConfig()
    stopwords: StopwordsConfig = StopwordsConfig()
    test_size: Annotated[float, Field(gt=0.0, lt=1.0)] = 0.2
    seed: int = 42
    chunk_rows: ChunkRows = None
    # Processes cleaning chunks in parallel when streaming (-1: one per core).
    n_jobs: NJobs = -1
    # Where the streamed chunks are cleaned: local (n_jobs processes) or dask (a Dask cluster at
    # scheduler_address or $SENTIMENT_DASK_SCHEDULER, else a LocalCluster of dask_workers
    # processes); the same files either way, so not stage params (dvc.yaml lists the others).
    backend: DataBackend = "local"
    scheduler_address: str | None = None
    dask_workers: Annotated[int, Field(ge=1)] = 2

    @model_validator(mode="after")
    def _backend_streams(self) -> PreprocessConfig:
        _dask_streams("preprocess", self)
        return self


# ---------------------------------------------------------------- featurize
NgramRange = tuple[Annotated[int, Field(ge=1)], Annotated[int, Field(ge=1)]]


ResamplingStrategy = Literal["smote", "none", "class_weight"]


class ResamplingConfig(_Section):
    strategy: ResamplingStrategy = "class_weight"  # as in params.yaml
    k_neighbors: Annotated[int, Field(ge=1)] = 5


class FeaturizeConfig(_Section):
    word_ngram_range: NgramRange = (1, 2)
    char_ngrams: bool = False
    char_ngram_range: NgramRange = (2, 5)
    min_df: Annotated[int, Field(ge=1)] = 2
    max_df: Annotated[float, Field(gt=0.0, le=1.0)] = 1.0
    max_features: Annotated[int, Field(ge=1)] | None = 20000
    sublinear_tf: bool = True
    # tfidf: a vocabulary of the training split's n-grams (min_df, max_df, max_features apply);
    # hashing: n-grams hashed into hashing_features columns, no vocabulary held in memory
    # (min_df, max_df and max_features do not apply), IDF from the training split all the same.
    vectorizer: Literal["tfidf", "hashing"] = "tfidf"
    hashing_features: Annotated[int, Field(ge=16, le=2**31 - 2)] = 1 << 20  # scikit-learn's limit
    chunk_rows: ChunkRows = None
    n_jobs: NJobs = -1  # processes vectorizing chunks in parallel when streaming
    resampling: ResamplingConfig = ResamplingConfig()
    # Where the streamed chunks are vectorised: as preprocess.backend (not stage params either)
    backend: DataBackend = "local"
    scheduler_address: str | None = None
    dask_workers: Annotated[int, Field(ge=1)] = 2

    @model_validator(mode="after")
    def _backend_streams(self) -> FeaturizeConfig:
        _dask_streams("featurize", self)
        return self

    @field_validator("word_ngram_range", "char_ngram_range")
    @classmethod
    def _ordered(cls, value: tuple[int, int]) -> tuple[int, int]:
        if value[0] > value[1]:
            raise ValueError(f"n-gram range must be [low, high] with low <= high, got {list(value)}")
        return value


# ---------------------------------------------------------------- train
class _Grid(_Section):
    """A family's search space: every field is a non-empty list of values to try.

    ``select_k`` is the number of TF-IDF columns kept by a chi-squared filter fitted inside each
    training fold (null keeps all); every other field is a parameter of the classifier.
    """

    select_k: list[Annotated[int, Field(ge=1)] | None] = Field([None], min_length=1)
    # Resampling strategies to compare by CV (each with every other combination); null uses
    # the one of featurize.resampling.strategy. SMOTE runs inside the training folds only.
    resampling: list[Literal["class_weight", "smote", "none"]] | None = Field(None, min_length=1)

    @field_validator("resampling")
    @classmethod
    def _distinct(cls, value: list[str] | None) -> list[str] | None:
        if value is not None and len(set(value)) != len(value):
            raise ValueError(f"resampling strategies must be distinct, got {value}")
        return value

    def as_param_grid(self) -> dict[str, list]:
        """The grid in the step__param form of the family's imbalanced-learn Pipeline (the
        resampling strategies are searched apart: see ``train.grid_search``)."""
        grid: dict[str, list] = {}
        for name, values in self:
            if name == "resampling":
                continue
            if name == "select_k":
                grid["select__k"] = ["all" if k is None else k for k in values]
            else:
                grid[f"clf__{name}"] = list(values)
        return grid


PositiveFloat = Annotated[float, Field(gt=0.0)]
PositiveInt = Annotated[int, Field(ge=1)]


class LogRegGrid(_Grid):
    C: list[PositiveFloat] = Field([1.0], min_length=1)
    solver: list[Literal["lbfgs", "newton-cg", "saga"]] = Field(["lbfgs"], min_length=1)
    max_iter: list[PositiveInt] = Field([1000], min_length=1)


class NaiveBayesGrid(_Grid):
    alpha: list[PositiveFloat] = Field([1.0], min_length=1)
    fit_prior: list[bool] = Field([True], min_length=1)
    # Complement NB estimates each class from the other classes' counts, which suits
    # imbalanced text; false is the classic multinomial NB.
    complement: list[bool] = Field([False], min_length=1)


class RandomForestGrid(_Grid):
    n_estimators: list[PositiveInt] = Field([200], min_length=1)
    max_depth: list[PositiveInt | None] = Field([None], min_length=1)
    min_samples_leaf: list[PositiveInt] = Field([1], min_length=1)
    # Fraction of rows each tree bootstraps from (null: as many as the training fold has).
    max_samples: list[Annotated[float, Field(gt=0.0, le=1.0)] | None] = Field([None], min_length=1)
    max_features: list[Literal["sqrt", "log2"] | Annotated[float, Field(gt=0.0, le=1.0)]] = Field(["sqrt"], min_length=1)


class XGBoostGrid(_Grid):
    n_estimators: list[PositiveInt] = Field([200], min_length=1)
    max_depth: list[PositiveInt] = Field([6], min_length=1)
    learning_rate: list[PositiveFloat] = Field([0.1], min_length=1)
    subsample: list[Annotated[float, Field(gt=0.0, le=1.0)]] = Field([1.0], min_length=1)
    colsample_bytree: list[Annotated[float, Field(gt=0.0, le=1.0)]] = Field([1.0], min_length=1)
    # Histogram bins per feature; TF-IDF columns lose little with few bins, and fitting speeds up.
    max_bin: list[Annotated[int, Field(ge=2)]] = Field([256], min_length=1)


class LinearSvmGrid(_Grid):
    """A linear SVM whose scores are turned into probabilities by cross-validated calibration."""

    C: list[PositiveFloat] = Field([1.0], min_length=1)
    calibration: list[Literal["sigmoid", "isotonic"]] = Field(["sigmoid"], min_length=1)
    # Folds of CalibratedClassifierCV inside each training fold: one SVM is fitted per fold
    # and the calibrated models are averaged.
    calibration_folds: list[Annotated[int, Field(ge=2)]] = Field([3], min_length=1)


class SgdGrid(_Grid):
    """A linear model learnt by SGDClassifier.partial_fit over row blocks (pipeline/incremental.py),
    with probabilities calibrated on a held-out share of the rows: the family that can learn with
    train.chunk_rows set, from a training matrix that is never whole in memory."""

    loss: list[Literal["hinge", "log_loss", "modified_huber"]] = Field(["log_loss"], min_length=1)
    alpha: list[PositiveFloat] = Field([1e-4], min_length=1)
    epochs: list[PositiveInt] = Field([20], min_length=1)  # passes over the rows
    average: list[bool] = Field([False], min_length=1)     # averaged SGD: the mean of the iterates
    # Rows per partial_fit, in a seeded order per epoch: a learning setting (the same model in
    # memory and streamed), and the rows a training pass holds at once
    block_rows: list[PositiveInt] = Field([10_000], min_length=1)
    calibration: list[Literal["sigmoid", "isotonic"]] = Field(["sigmoid"], min_length=1)
    # Rows held out from the SGD to fit the calibrators: this share, at most ~calibration_rows
    calibration_share: list[Annotated[float, Field(gt=0.0, le=0.5)]] = Field([0.05], min_length=1)
    calibration_rows: list[PositiveInt] = Field([100_000], min_length=1)

    @field_validator("select_k")
    @classmethod
    def _every_column(cls, value: list) -> list:
        if value != [None]:
            raise ValueError("the sgd family learns from every column (a chi-squared filter needs the whole "
                             "matrix in memory); leave select_k out or set it to [null]")
        return value

    @field_validator("resampling")
    @classmethod
    def _no_smote(cls, value: list[str] | None) -> list[str] | None:
        if value is not None and "smote" in value:
            raise ValueError("SMOTE needs every row of a fold in memory, which the sgd family never holds; "
                             "use [class_weight]")
        return value

    def as_param_grid(self) -> dict[str, list]:
        """No ``select__k``: the family's pipeline passes every column through (see models.py)."""
        grid = super().as_param_grid()
        grid.pop("select__k", None)
        return grid


FAMILY_GRIDS: dict[str, type[_Grid]] = {
    "logreg": LogRegGrid,
    "naive_bayes": NaiveBayesGrid,
    "random_forest": RandomForestGrid,
    "xgboost": XGBoostGrid,
    "linear_svm": LinearSvmGrid,
    "sgd": SgdGrid,
}
Family = Literal["logreg", "naive_bayes", "random_forest", "xgboost", "linear_svm", "sgd"]
# What the select stage chooses from: every grid-searched family, and the ensemble over them.
CANDIDATE_FAMILIES: tuple[str, ...] = (*FAMILY_GRIDS, "ensemble")


class FamiliesConfig(_Section):
    """The grids of the families that are trained: those ``train.families`` lists in the
    params file, as DVC's ``foreach`` over that section makes one stage per listed family. A
    family left out is not trained (its grid below is only the default for when it is added)."""

    logreg: LogRegGrid = LogRegGrid()
    naive_bayes: NaiveBayesGrid = NaiveBayesGrid()
    random_forest: RandomForestGrid = RandomForestGrid()
    xgboost: XGBoostGrid = XGBoostGrid()
    linear_svm: LinearSvmGrid = LinearSvmGrid()
    sgd: SgdGrid = SgdGrid()

    def grid(self, family: str) -> _Grid:
        if family not in FAMILY_GRIDS:
            raise ConfigError(
                f"unknown model family {family!r}; expected one of {sorted(FAMILY_GRIDS)}"
            )
        return getattr(self, family)

    def enabled(self) -> tuple[str, ...]:
        """The listed families, in FAMILY_GRIDS order; every family when none is listed (no
        ``train.families`` section: the defaults, as for ``Params()``)."""
        listed = self.model_fields_set
        return tuple(family for family in FAMILY_GRIDS if not listed or family in listed)

    def enabled_grid(self, family: str) -> _Grid:
        """The grid of a family to train; a family the params file leaves out is an error."""
        grid = self.grid(family)
        if family not in self.enabled():
            raise ConfigError(f"train.families has no {family!r} section, so it is not trained; add "
                              f"one (e.g. '{family}: {{}}' for the default grid) to train it")
        return grid


def _distinct(name: str):
    def check(values: list) -> list:
        if len(set(values)) != len(values):
            raise ValueError(f"{name} must be distinct, got {values}")
        return values
    return AfterValidator(check)


def _some_positive(values: list[float]) -> list[float]:
    if max(values) <= 0:
        raise ValueError(f"train.ensemble.member_weights needs a positive weight, got {values}")
    return values


def _none_or_two(members: list[str]) -> list[str]:
    if len(members) == 1:
        raise ValueError(f"train.ensemble.members lists one family ({members[0]}): an ensemble needs at least two, "
                         "or [] for none")
    return members


def _default_members() -> list[Family]:
    return ["linear_svm", "logreg", "naive_bayes"]


def _default_methods() -> list[Literal["soft_vote", "stacking"]]:
    return ["soft_vote"]


class EnsembleConfig(_Section):
    """The ensemble family: the best candidates of ``members`` (each with the hyperparameters
    its own search chose) combined by soft voting or stacking. Every combination of the lists
    below is a candidate, scored on the members' out-of-fold probabilities of the same folds."""

    # at least two families, or none ([]): no ensemble is built and select compares the trained
    # families alone (a streamed run, train.chunk_rows, trains only sgd)
    members: Annotated[list[Family], AfterValidator(_none_or_two), _distinct("train.ensemble.members")] = \
        Field(default_factory=_default_members)
    # soft_vote: the mean of the members' probabilities; stacking: a multinomial logistic
    # regression (balanced class weights) on the members' out-of-fold log-probabilities
    method: Annotated[list[Literal["soft_vote", "stacking"]], Field(min_length=1),
                      _distinct("train.ensemble.method")] = Field(default_factory=_default_methods)
    # soft_vote's prior adjustment: each class's mean probability divided by its training share
    # to this power (0: none; 1: as if the classes were balanced), a lever for the smallest class
    prior_power: Annotated[list[Annotated[float, Field(ge=0.0, le=1.0)]], Field(min_length=1),
                           _distinct("train.ensemble.prior_power")] = Field(default_factory=lambda: [0.0])
    meta_C: Annotated[list[PositiveFloat], Field(min_length=1),
                      _distinct("train.ensemble.meta_C")] = Field(default_factory=lambda: [1.0])  # stacking
    # soft_vote's member weights: each member's weight is one of these values and every
    # assignment is a candidate (assignments proportional to one another are the same vote and
    # scored once; 0 leaves the member out of the vote); [1.0] alone: the plain mean
    member_weights: Annotated[list[Annotated[float, Field(ge=0.0)]], Field(min_length=1),
                              _distinct("train.ensemble.member_weights"),
                              AfterValidator(_some_positive)] = Field(default_factory=lambda: [1.0])
    # soft_vote's per-class thresholds for macro-F1: each class's combined probability is
    # multiplied by one of these before the argmax (then renormalised), every assignment over
    # the classes a candidate (proportional ones scored once); [1.0] alone: none
    class_scale: Annotated[list[PositiveFloat], Field(min_length=1),
                           _distinct("train.ensemble.class_scale")] = Field(default_factory=lambda: [1.0])


class TrainConfig(_Section):
    cv_folds: Annotated[int, Field(ge=2)] = 5
    scoring: Literal["f1_macro"] = "f1_macro"
    seed: int = 42
    # Workers for the grid search; each model runs single-threaded so the machine is
    # never oversubscribed.  -1 means one per core.
    n_jobs: int = -1
    # Where the fits run: threads of the stage process (local), or a Dask distributed cluster
    # through joblib's Dask backend, with identical results. The scheduler's address comes from
    # scheduler_address or the environment variable SENTIMENT_DASK_SCHEDULER; with neither, the
    # stage starts a LocalCluster of dask_workers processes for its own run.
    backend: Literal["local", "dask"] = "local"
    scheduler_address: str | None = None
    dask_workers: Annotated[int, Field(ge=1)] = 2
    # Streamed training: X_train.npz read in blocks, never whole (null: loaded whole, as before).
    # Only families that learn block by block (sgd) can train so; the rows a prediction pass
    # reads at once. Same CV results and model as null (tested), so not a stage param.
    chunk_rows: ChunkRows = None

    @field_validator("n_jobs")
    @classmethod
    def _n_jobs_not_zero(cls, value: int) -> int:
        if value == 0:
            raise ValueError("train.n_jobs must be a positive count or negative (-1: all cores), not 0")
        return value
    families: FamiliesConfig = FamiliesConfig()
    ensemble: EnsembleConfig = EnsembleConfig()

    def ensemble_members(self) -> list[str]:
        """``ensemble.members``, each of which must be a trained family. Checked by the ensemble
        stage, not on load: the stages before it run with any families listed."""
        missing = [m for m in self.ensemble.members if m not in self.families.enabled()]
        if missing:
            raise ConfigError(f"train.ensemble.members names {missing}, which train.families does not "
                              f"list (trained: {list(self.families.enabled())}); list at least two of those, "
                              "or [] to build no ensemble")
        return list(self.ensemble.members)


# ---------------------------------------------------------------- report
class ReportConfig(_Section):
    # Fail the pull-request check when test macro-F1 drops by more than this (null: never).
    max_f1_macro_drop: Annotated[float, Field(ge=0.0)] | None = None
    # Classes drawn as ROC and precision-recall charts in the report (more: those that moved most).
    curve_classes: Annotated[int, Field(ge=0, le=50)] = 6


# ---------------------------------------------------------------- evaluate
class ErrorAnalysisConfig(_Section):
    most_confident: Annotated[int, Field(ge=0)] = 20  # wrong predictions, most confident first
    per_cell: Annotated[int, Field(ge=0)] = 3         # sampled rows per (actual, predicted) cell
    seed: int = 42


class EvaluateConfig(_Section):
    # Equal-width confidence bins of the reliability curve and the expected calibration error.
    calibration_bins: Annotated[int, Field(ge=1, le=1000)] = 10
    errors: ErrorAnalysisConfig = ErrorAnalysisConfig()


# ---------------------------------------------------------------- baselines
class BaselinesConfig(_Section):
    # A lexicon score within +-threshold is neutral (three-class labels only; with two classes
    # the sign decides). 0.05 is the VADER authors' recommended cut-off for the compound score.
    vader_threshold: Annotated[float, Field(ge=0.0, lt=1.0)] = 0.05
    textblob_threshold: Annotated[float, Field(ge=0.0, lt=1.0)] = 0.0


# ---------------------------------------------------------------- serve (not a stage)
class ServeConfig(_Section):
    """``sentiment-pipeline serve``; every field can be overridden by an environment variable
    ``SENTIMENT_SERVE_<FIELD>`` (e.g. ``SENTIMENT_SERVE_PORT=9000``) for deployment."""

    host: str = "127.0.0.1"
    port: Annotated[int, Field(ge=0, le=65535)] = 8000
    workers: Annotated[int, Field(ge=1, le=64)] = 1
    max_texts_per_request: Annotated[int, Field(ge=1)] = 256
    max_chars_per_text: Annotated[int, Field(ge=1)] = 5000
    max_body_bytes: Annotated[int, Field(ge=1024)] = 1_048_576
    graceful_shutdown_seconds: Annotated[float, Field(ge=0)] = 10.0
    # On shutdown (SIGTERM, a rolling restart) an idle keep-alive connection stays open this long
    # (at most graceful_shutdown_seconds) for a request already on its way, answered with
    # Connection: close, instead of being closed under it (a connection error for that client).
    drain_idle_seconds: Annotated[float, Field(ge=0)] = 1.0
    # The prediction log (SQLAlchemy URL): SQLite under logs/ by default, e.g.
    # postgresql://user:password@host:5432/sentiment in production.
    database_url: str = "sqlite:///logs/predictions.db"
    log_text: bool = True  # false: only each text's SHA-256 is stored
    log_queue_size: Annotated[int, Field(ge=1)] = 10_000
    log_batch_size: Annotated[int, Field(ge=1)] = 500
    # The durable spool between the answer and the database (relative: under the project root).
    # log_flush_ms bounds what a killed process can lose: answered, not yet fsync'd.
    spool_dir: str = "logs/spool"
    spool_max_bytes: Annotated[int, Field(ge=1_048_576)] = 1 << 30
    log_flush_ms: Annotated[float, Field(gt=0, le=10_000)] = 50.0
    # spool full (the database away too long): refuse predictions with a 503, or answer them unlogged
    log_overflow: Literal["reject", "drop"] = "reject"
    # delete predictions and feedback older than this many days (hourly, while serving); null: keep all
    retention_days: Annotated[float, Field(gt=0)] | None = None
    # Micro-batching: texts of concurrent requests arriving within batch_wait_ms share one model
    # call of up to batch_max_texts texts (same numbers as one by one: every step is row-wise).
    batch_max_texts: Annotated[int, Field(ge=1)] = 64
    batch_wait_ms: Annotated[float, Field(ge=0)] = 1.0
    # Explanations ("explain": k, docs/serving.md#explanations): the model predicts a text once per
    # distinct word examined, so a request costs up to explain_max_texts * (explain_max_words + 1)
    # predictions (see docs/serving.md for the measured times); more texts with explain: 422.
    explain_max_texts: Annotated[int, Field(ge=1)] = 16
    explain_max_words: Annotated[int, Field(ge=1, le=1000)] = 64
    # Admission and timeouts. At most max_inflight prediction requests in flight per worker; one
    # more waits up to admission_wait_ms for a slot, then gets a fast 503 with Retry-After (health,
    # readiness and metrics are never counted or refused). A request line and headers over
    # max_header_bytes: 431. A head not complete within header_timeout_seconds of the connection
    # (or of its first byte): the connection is closed (a 408 if part of it came); a body that
    # stalls for body_timeout_seconds: 408.
    max_inflight: Annotated[int, Field(ge=1)] = 24
    admission_wait_ms: Annotated[float, Field(ge=0, le=10_000)] = 0.0
    # what a refused request's Retry-After says, and how long its connection is then not read
    retry_after_seconds: Annotated[int, Field(ge=1, le=300)] = 1
    max_header_bytes: Annotated[int, Field(ge=1024)] = 16_384
    header_timeout_seconds: Annotated[float, Field(gt=0)] = 10.0
    body_timeout_seconds: Annotated[float, Field(gt=0)] = 10.0
    # Access control (docs/serving.md#access-control). keys: every route but /healthz and /readyz
    # needs an API key from keys_file (relative: under the project root) holding the route's scope;
    # with no active key a loopback host serves openly (with a warning) and any other host refuses
    # to start. none: no authentication (a warning beyond loopback). Per key and per worker (N
    # workers: up to N times as much), a token bucket of rate_limit_per_second tokens a second and
    # at most rate_limit_burst at once; past it, 429 with Retry-After (null: no limit).
    auth: Literal["keys", "none"] = "keys"
    keys_file: str = "logs/keys/api_keys.json"
    rate_limit_per_second: Annotated[float, Field(gt=0)] | None = 100.0
    rate_limit_burst: Annotated[int, Field(ge=1)] = 200
    # The review queue (GET /v1/review, export-review, the dashboard) reads only the newest this
    # many predictions: bounded work on a big log (5,000: margin 0.17 s, disagreement 1.2 s re-scoring
    # them with the 4 members of models/final; measured in docs/serving.md#reviewing-predictions).
    review_window_rows: Annotated[int, Field(ge=1, le=1_000_000)] = 5000


# ---------------------------------------------------------------- monitor (not a stage)
class MonitorConfig(_Section):
    """``sentiment-pipeline monitor``: the window of the prediction log it reads and the
    thresholds beyond which it reports drift (exit code 1). Statistics that grow with the
    window (p-values) are reported, not thresholded; the thresholds are on effect sizes."""

    window_rows: Annotated[int, Field(ge=1)] = 1000  # the newest N predictions (--last overrides)
    min_rows: Annotated[int, Field(ge=1)] = 100       # fewer in the window: status insufficient_data
    output_dir: str = "logs/monitor"                  # monitor.json and report.html
    seed: int = 42                                    # samples of the domain classifier
    domain_classifier_rows: Annotated[int, Field(ge=10)] = 2000  # per side, at most
    max_text_length_ks: Annotated[float, Field(ge=0, le=1)] = 0.2
    max_oov_share_increase: Annotated[float, Field(ge=0, le=1)] = 0.1
    max_empty_share: Annotated[float, Field(ge=0, le=1)] = 0.05
    max_domain_auc: Annotated[float, Field(ge=0.5, le=1)] = 0.75
    max_class_psi: Annotated[float, Field(ge=0)] = 0.2
    max_confidence_ks: Annotated[float, Field(ge=0, le=1)] = 0.2
    max_estimated_accuracy_drop: Annotated[float, Field(ge=0, le=1)] = 0.05  # vs the estimate on the test split
    min_feedback_rows: Annotated[int, Field(ge=1)] = 30  # live scores need this many labels
    max_live_accuracy_drop: Annotated[float, Field(ge=0, le=1)] = 0.05
    top_ngrams: Annotated[int, Field(ge=0, le=100)] = 10    # separating n-grams shown per direction
    example_texts: Annotated[int, Field(ge=0, le=20)] = 3   # most confidently told-apart texts per side
    history: bool = True                                   # store each run in the log's monitor_runs table
    # POSTed a JSON summary on drift or error; prefer SENTIMENT_MONITOR_WEBHOOK_URL for a secret URL
    webhook_url: Annotated[str, Field(pattern=r"^https?://[^/?#\s]+")] | None = None
    webhook_timeout_seconds: Annotated[float, Field(gt=0, le=60)] = 10.0


# ---------------------------------------------------------------- params.yaml
class Params(_Section):
    download: DownloadConfig = DownloadConfig()
    preprocess: PreprocessConfig = PreprocessConfig()
    featurize: FeaturizeConfig = FeaturizeConfig()
    train: TrainConfig = TrainConfig()
    report: ReportConfig = ReportConfig()
    evaluate: EvaluateConfig = EvaluateConfig()
    baselines: BaselinesConfig = BaselinesConfig()
    serve: ServeConfig = ServeConfig()
    monitor: MonitorConfig = MonitorConfig()


SERVE_ENV_PREFIX = "SENTIMENT_SERVE_"


@functools.cache
def _serve_settings_class() -> type[ServeConfig]:
    """``ServeConfig`` as pydantic-settings' BaseSettings: ``SENTIMENT_SERVE_<FIELD>``
    environment variables over params.yaml's ``serve`` section over the defaults. Imported on
    first use: pydantic-settings costs 0.3 s of start-up, which no pipeline stage needs."""
    from pydantic_settings import BaseSettings, SettingsConfigDict

    class ServeSettings(ServeConfig, BaseSettings):
        # names as pydantic-settings matches them: case-insensitively (SENTIMENT_SERVE_PORT, or
        # sentiment_serve_port on systems that lower-case the environment)
        model_config = SettingsConfigDict(env_prefix=SERVE_ENV_PREFIX, extra="forbid", frozen=True)

        @classmethod
        def settings_customise_sources(cls, settings_cls, init_settings, env_settings, dotenv_settings,
                                       file_secret_settings):
            return env_settings, init_settings  # the environment wins over params.yaml

    return ServeSettings


def serve_config(params: Params) -> ServeConfig:
    """``params.serve`` with ``SENTIMENT_SERVE_<FIELD>`` environment variables applied; a bad
    value is named by its variable."""
    try:
        return _serve_settings_class()(**params.serve.model_dump())
    except ValidationError as error:
        item = error.errors()[0]
        name = SERVE_ENV_PREFIX + str(item["loc"][0]).upper()
        raise ConfigError(f"{name}={item.get('input')!r}: {item['msg']}") from None


def project_params(project: Path) -> Params:
    """The project's params.yaml, or the defaults where it has none (a served model directory)."""
    params_file = Path(project) / "params.yaml"
    return load_params(params_file) if params_file.is_file() else Params()


def serve_settings(project: Path) -> tuple[Params, ServeConfig]:
    """The project's params and its ``serve`` settings with the environment applied: what
    ``serve``, ``monitor``, ``export-feedback`` and each server worker start from."""
    params = project_params(project)
    return params, serve_config(params)


def _format_validation_error(path: Path, error: ValidationError) -> str:
    lines = [f"{path}: invalid parameters"]
    for item in error.errors():
        where = ".".join(str(part) for part in item["loc"])
        # a whole section's check (a model validator) would echo the section: the message names it
        got = "" if isinstance(item.get("input"), dict) else f" (got {item.get('input')!r})"
        lines.append(f"  {where}: {item['msg']}{got}")
    return "\n".join(lines)


def load_params(path: Path | str = "params.yaml") -> Params:
    """Read and validate ``params.yaml``; raise :class:`ConfigError` naming the bad key."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: parameters file not found")
    try:
        raw = load_yaml(path)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from exc
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping of sections at the top level")
    try:
        return Params.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(_format_validation_error(path, exc)) from exc
