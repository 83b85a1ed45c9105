"""User-facing errors: the CLI prints their message and exits non-zero, without a traceback."""


class PipelineError(Exception):
    """An error the user can fix (bad params, bad data, missing resource)."""


class ConfigError(PipelineError):
    """``params.yaml`` is missing, malformed or holds an invalid value."""


class DataError(PipelineError):
    """Input data is missing, unreadable or does not have the expected shape."""


class ResourceError(PipelineError):
    """An external resource the pipeline needs (e.g. the NLTK stopword corpus) is missing."""
