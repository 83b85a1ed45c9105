"""Opening the prediction log from the command line: ``serve`` checks it before it starts,
``monitor`` and ``export-feedback`` read it. A log that cannot be opened is one line naming the
URL (its password hidden) and what to do, never a driver's traceback. Readers open SQLite
read-only, so that they never create, convert or write a file.
"""

from __future__ import annotations

import re
from pathlib import Path

from sqlalchemy import Engine, select
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import DBAPIError, NoSuchModuleError, SQLAlchemyError

from sentiment_pipeline.core.errors import ConfigError, PipelineError, ResourceError

BACKENDS = ("sqlite", "postgresql")
EXAMPLES = "sqlite:///logs/predictions.db or postgresql://user:password@host:5432/database"
# How long a PostgreSQL connection attempt may take (libpq's connect_timeout) unless the URL
# says: an unreachable host fails in seconds, not after the driver's two minutes.
CONNECT_TIMEOUT_SECONDS = 5


def redacted(url: str) -> str:
    """``url`` with its password replaced by ``***``, even when SQLAlchemy cannot parse it."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # a malformed URL: hide whatever stands between "user:" and "@"
        return re.sub(r"(://[^:/@]*):[^@]*@", r"\1:***@", url)


def checked_url(url: str) -> URL:
    """The parsed URL of a backend the log supports, or a :class:`ConfigError` naming it."""
    try:
        parsed = make_url(url)
    except Exception:  # ArgumentError, or ValueError for a port that is not a number
        raise ConfigError(f"{redacted(url)}: not a database URL; expected {EXAMPLES}") from None
    backend = parsed.get_backend_name()
    if backend == "postgres":
        raise ConfigError(f"{redacted(url)}: unknown scheme 'postgres'; SQLAlchemy spells it "
                          "postgresql:// (postgresql://user:password@host:5432/database)")
    if backend not in BACKENDS:
        raise ConfigError(f"{redacted(url)}: the prediction log is SQLite or PostgreSQL, not "
                          f"'{parsed.drivername}'; expected {EXAMPLES}")
    return parsed


def _with_timeout(parsed: URL) -> str:
    if parsed.get_backend_name() == "postgresql" and "connect_timeout" not in parsed.query:
        parsed = parsed.update_query_dict({"connect_timeout": str(CONNECT_TIMEOUT_SECONDS)})
    return parsed.render_as_string(hide_password=False)


def _reason(exc: BaseException) -> str:
    """What went wrong, in the driver's words, on one line (without SQLAlchemy's wrapping)."""
    if isinstance(exc, NoSuchModuleError | ImportError):
        return f"its database driver is not installed ({str(exc).splitlines()[0]})"
    if isinstance(exc, OSError):
        return f"{exc.strerror or exc}{f': {exc.filename}' if exc.filename else ''}"
    cause = exc.orig if isinstance(exc, DBAPIError) and exc.orig is not None else exc
    lines = [line.strip() for line in str(cause).splitlines() if line.strip()]
    return lines[0] if lines else type(cause).__name__


def _hint(parsed: URL, reason: str, writing: bool) -> str:
    if parsed.get_backend_name() == "postgresql":
        return "is the server running and reachable, and are the user, password and database right?"
    if "file is not a database" in reason:
        return "the file is not a SQLite database: point the URL at the prediction log"
    if writing:
        return "the file and its directory must be writable"
    return "the file must be readable"


def _failure(url: str, parsed: URL, exc: BaseException, writing: bool) -> PipelineError:
    reason = _reason(exc)
    return ResourceError(f"{redacted(url)}: the prediction log could not be {'opened or created' if writing else 'read'}"
                         f": {reason}; {_hint(parsed, reason, writing)}")


def check_database(url: str, root: Path = Path(".")) -> None:
    """What ``serve`` runs before it starts: connect (a short connect timeout), create or upgrade
    the schema, read one row. Any failure is one line (a :class:`PipelineError`)."""
    from sentiment_pipeline.predlog.prediction_log import connect, predictions

    parsed = checked_url(url)
    engine: Engine | None = None
    try:
        engine = connect(_with_timeout(parsed), root)
        with engine.connect() as connection:
            connection.execute(select(predictions.c.id).limit(1)).all()
    except PipelineError:
        raise
    except (SQLAlchemyError, ImportError, OSError) as exc:
        raise _failure(url, parsed, exc, writing=True) from None
    finally:
        if engine is not None:
            engine.dispose()


def open_reader(url: str, root: Path = Path(".")) -> Engine:
    """An engine that reads the existing log at ``url`` (SQLite: read-only); a missing log, a
    file that is not one, or an unreachable server is one line (a :class:`PipelineError`)."""
    from sentiment_pipeline.predlog.prediction_log import connect

    parsed = checked_url(url)
    try:
        return connect(_with_timeout(parsed), root, create=False, read_only=True)
    except PipelineError:
        raise
    except (SQLAlchemyError, ImportError, OSError) as exc:
        raise _failure(url, parsed, exc, writing=False) from None


def read_failure(url: str, exc: BaseException) -> PipelineError:
    """A read that failed after the log was opened (the server went away, say), as one line."""
    return ResourceError(f"{redacted(url)}: the prediction log could not be read: {_reason(exc)}")
