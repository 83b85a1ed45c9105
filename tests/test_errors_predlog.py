"""The prediction log when it cannot be used: ``serve`` checks it before it starts, and
``monitor`` and ``export-feedback`` read it read-only. Each failure is one line naming the URL
(password hidden) and what to do; readers never create or change a file; a feedback id that is
not one /v1/predict hands out is the same 422 on SQLite and PostgreSQL."""

from __future__ import annotations

import hashlib
import os
import sqlite3
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select, text
from sqlalchemy.exc import OperationalError

from sentiment_pipeline.core.config import ServeConfig
from sentiment_pipeline.core.errors import ConfigError, DataError, ResourceError
from sentiment_pipeline.predlog.access import check_database, open_reader, redacted
from sentiment_pipeline.predlog.prediction_log import connect, predictions
from sentiment_pipeline.serving.app import create_app

from .postgres import postgres_server
from .small_project import write_project, write_splits

UNREACHABLE = "postgresql://u:secret@127.0.0.1:1/db"  # nothing listens on port 1


def as_root() -> bool:
    return hasattr(os, "geteuid") and os.geteuid() == 0


def run_cli(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "sentiment_pipeline", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=120)


def error_line(result: subprocess.CompletedProcess) -> str:
    """The one line a failed command printed: the last, after any log lines of what ran before."""
    lines = result.stderr.splitlines()
    assert [line for line in lines if line.startswith("error: ")] == lines[-1:], result.stderr
    assert "Traceback" not in result.stderr
    return lines[-1]


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture()
def log_file(tmp_path) -> Path:
    """A real prediction log, as serve writes it (WAL mode), with one prediction."""
    file = tmp_path / "log.db"
    engine = connect(f"sqlite:///{file}")
    with engine.begin() as connection:
        connection.execute(predictions.insert().values(
            created_at=datetime.now(UTC), prediction_id="0" * 32, request_id="r", text="hi", text_sha256="0" * 64,
            cleaned_length=2, label="neutral", confidence=0.9, probabilities={"neutral": 0.9}, model_version="v",
            latency_ms=1.0))
    engine.dispose()
    return file


# ------------------------------------------------------------------ URLs
def test_a_password_is_hidden_even_in_a_url_sqlalchemy_cannot_parse():
    assert redacted(UNREACHABLE) == "postgresql://u:***@127.0.0.1:1/db"
    assert "secret" not in redacted("postgresql://u:secret@host:notaport/db")
    with pytest.raises(ConfigError, match=r"postgresql://u:\*\*\*@host:notaport/db: not a database URL") as raised:
        open_reader("postgresql://u:secret@host:notaport/db")
    assert "secret" not in str(raised.value)


@pytest.mark.parametrize("url, expected", [
    ("postgres://u:secret@db/log", r"postgres://u:\*\*\*@db/log: unknown scheme 'postgres'; SQLAlchemy spells "
                                   r"it postgresql://"),
    ("mysql://u:secret@db/log", r"mysql://u:\*\*\*@db/log: the prediction log is SQLite or PostgreSQL, not 'mysql'"),
    ("nonsense", r"nonsense: not a database URL; expected sqlite:///"),
])
def test_unknown_schemes_are_named_before_any_connection(tmp_path, url, expected):
    for opening in (open_reader, check_database):
        with pytest.raises(ConfigError, match=expected):
            opening(url, tmp_path)
    assert not list(tmp_path.iterdir())


# ------------------------------------------------------------------ readers
def test_a_reader_creates_nothing_where_there_is_no_log(tmp_path):
    with pytest.raises(DataError, match="missing.db: no prediction log there"):
        open_reader(f"sqlite:///{tmp_path / 'missing.db'}")
    (tmp_path / "a-directory").mkdir()
    with pytest.raises(DataError, match="a-directory: no prediction log there"):
        open_reader(f"sqlite:///{tmp_path / 'a-directory'}")
    with pytest.raises(DataError, match="no prediction log there"):
        open_reader("sqlite:///logs/predictions.db", tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a-directory"]


def test_a_zero_byte_file_stays_zero_bytes(tmp_path):
    empty = tmp_path / "empty.db"
    empty.touch()
    with pytest.raises(DataError, match=r"empty\.db: holds no prediction log"):
        open_reader(f"sqlite:///{empty}")
    assert empty.stat().st_size == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty.db"]


def test_a_file_that_is_not_a_database_is_named(tmp_path):
    notes = tmp_path / "notes.db"
    notes.write_text("my shopping list\n" * 100)
    with pytest.raises(ResourceError, match=r"notes\.db: the prediction log could not be read: file is not a database; "
                                            "the file is not a SQLite database"):
        open_reader(f"sqlite:///{notes}")
    assert notes.read_text() == "my shopping list\n" * 100


def test_an_unreachable_server_is_named_without_its_password():
    with pytest.raises(ResourceError, match=r"postgresql://u:\*\*\*@127\.0\.0\.1:1/db: the prediction log could "
                                            r"not be read: .*; is the server running and reachable") as raised:
        open_reader(UNREACHABLE)
    assert "secret" not in str(raised.value) and "\n" not in str(raised.value)


def test_a_reader_opens_the_log_read_only(log_file):
    before = digest(log_file)
    engine = open_reader(f"sqlite:///{log_file}")
    try:
        with engine.connect() as connection:
            assert connection.execute(select(func.count()).select_from(predictions)).scalar_one() == 1
        with pytest.raises(OperationalError, match="readonly database"), engine.begin() as connection:
            connection.execute(text("DELETE FROM predictions"))
    finally:
        engine.dispose()
    assert digest(log_file) == before


def test_a_log_in_rollback_journal_mode_is_not_converted_to_wal(tmp_path, log_file):
    plain = tmp_path / "plain.db"
    with sqlite3.connect(log_file) as source, sqlite3.connect(plain) as copy:
        source.backup(copy)
        copy.execute("PRAGMA journal_mode=DELETE")
    before = digest(plain)
    engine = open_reader(f"sqlite:///{plain}")
    with engine.connect() as connection:
        assert connection.execute(text("PRAGMA journal_mode")).scalar_one() == "delete"
    engine.dispose()
    assert digest(plain) == before


def test_monitor_outputs_in_a_file_or_an_unwritable_directory_are_named(tmp_path):
    from sentiment_pipeline.monitoring.monitor import write_outputs

    (tmp_path / "a-file").write_text("")
    with pytest.raises(DataError, match=r"a-file: is a file; expected a directory for monitor\.json"):
        write_outputs({"status": "ok", "checks": []}, tmp_path / "a-file")
    unwritable = Path("/sys/sentiment-test") if as_root() else tmp_path / "read-only" / "out"
    if not as_root():
        unwritable.parent.mkdir()
        unwritable.parent.chmod(0o555)
    with pytest.raises(DataError, match=f"{unwritable}: cannot write monitor.json and report.html there: "):
        write_outputs({"status": "ok", "checks": []}, unwritable)


# ------------------------------------------------------------------ serve's check
def test_the_start_up_check_creates_the_log(tmp_path):
    check_database("sqlite:///logs/predictions.db", tmp_path)
    engine = open_reader("sqlite:///logs/predictions.db", tmp_path)
    engine.dispose()


def test_the_start_up_check_names_an_unusable_log(tmp_path):
    notes = tmp_path / "notes.db"
    notes.write_text("my shopping list\n")
    with pytest.raises(ResourceError, match=r"notes\.db: the prediction log could not be opened or created: file is not a "
                                            "database"):
        check_database(f"sqlite:///{notes}")
    with pytest.raises(ResourceError, match=r"the prediction log could not be opened or created: .*is the server running"):
        check_database(UNREACHABLE)
    parent = tmp_path / "a-file"
    parent.write_text("")
    with pytest.raises(ResourceError, match=r"a-file/log\.db: the prediction log could not be opened or created: "
                                            r"File exists: .*a-file; the file and its directory must be writable"):
        check_database(f"sqlite:///{parent / 'log.db'}")


# ------------------------------------------------------------------ the command line
@pytest.fixture(scope="module")
def project(small_predictor, airline_sample, tmp_path_factory) -> Path:
    root = write_project(tmp_path_factory.mktemp("project"), small_predictor)
    return write_splits(root, small_predictor, airline_sample)


def unwritable_log_url(tmp_path: Path) -> str:
    if as_root():  # permissions do not stop root; sysfs stops everyone
        return "sqlite:////sys/sentiment-test/predictions.db"
    directory = tmp_path / "read-only"
    directory.mkdir()
    directory.chmod(0o555)
    return f"sqlite:///{directory / 'logs' / 'predictions.db'}"


@pytest.mark.parametrize("case", ["unreachable", "unwritable directory"])
def test_serve_checks_the_log_before_starting(project, tmp_path, case):
    """The other failures (a scheme, a file that is not a database) take the same path: the
    check_database tests above name them."""
    url = UNREACHABLE if case == "unreachable" else unwritable_log_url(tmp_path)
    result = subprocess.run([sys.executable, "-m", "sentiment_pipeline", "serve", "--project", str(project),
                             "--port", "1"], cwd=tmp_path, capture_output=True, text=True, timeout=120,
                            env={**os.environ, "SENTIMENT_SERVE_DATABASE_URL": url})
    assert result.returncode == 1
    line = error_line(result)
    assert line.startswith(f"error: {redacted(url)}: ")
    assert "secret" not in result.stderr


def test_monitor_leaves_a_zero_byte_file_alone(project, tmp_path):
    empty = tmp_path / "empty.db"
    empty.touch()
    result = run_cli(tmp_path, "monitor", "--project", str(project), "--database-url", f"sqlite:///{empty}")
    assert result.returncode == 2
    assert error_line(result) == f"error: sqlite:///{empty}: holds no prediction log (no 'predictions' table)"
    assert empty.stat().st_size == 0 and sorted(p.name for p in tmp_path.iterdir()) == ["empty.db"]


def test_monitor_on_an_unreachable_server_hides_the_password(project, tmp_path):
    result = run_cli(tmp_path, "monitor", "--project", str(project), "--database-url", UNREACHABLE)
    assert result.returncode == 2
    assert error_line(result).startswith("error: postgresql://u:***@127.0.0.1:1/db: the prediction log could not be read")
    assert "secret" not in result.stderr


def test_export_feedback_creates_no_log_and_no_csv(tmp_path):
    result = run_cli(tmp_path, "export-feedback", "out.csv", "--database-url", "sqlite:///typo.db")
    assert result.returncode == 1
    assert error_line(result) == "error: typo.db: no prediction log there (serve.database_url / --database-url)"
    assert not list(tmp_path.iterdir())


def test_export_feedback_into_a_directory_is_refused_and_the_directory_kept(tmp_path, log_file):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "keep.csv").write_text("mine")
    result = run_cli(tmp_path, "export-feedback", "data", "--database-url", f"sqlite:///{log_file}")
    assert result.returncode == 1
    assert error_line(result) == "error: data: is a directory; expected a file name for the feedback CSV"
    assert (tmp_path / "data" / "keep.csv").read_text() == "mine"


# ------------------------------------------------------------------ /v1/feedback
BAD_IDS = ["0" * 31 + "\x00", "\x00", "A" * 32, "0" * 31, "0" * 33, "g" * 32, "0" * 32 + "\n", ""]


def assert_bad_ids_are_422(client: TestClient) -> None:
    for bad in BAD_IDS:
        response = client.post("/v1/feedback", json={"prediction_id": bad, "label": "neutral"})
        assert response.status_code == 422, (bad, response.text)
        assert [d["field"] for d in response.json()["details"]] == ["prediction_id"]


def test_feedback_ids_are_32_hex_digits_on_sqlite(small_predictor, tmp_path):
    settings = ServeConfig(database_url=f"sqlite:///{tmp_path / 'log.db'}")
    with TestClient(create_app(settings, lambda: small_predictor, tmp_path)) as client:
        assert_bad_ids_are_422(client)
        schema = client.get("/openapi.json").json()["components"]["schemas"]["FeedbackRequest"]
        assert schema["properties"]["prediction_id"]["pattern"] == "^[0-9a-f]{32}$"


@pytest.mark.e2e
def test_feedback_ids_are_32_hex_digits_on_postgresql(small_predictor, tmp_path):
    """PostgreSQL's text type refuses a NUL: before the pattern, such an id was a 500 there and
    a 404 on SQLite."""
    with postgres_server() as url, TestClient(create_app(ServeConfig(database_url=url),
                                                         lambda: small_predictor, tmp_path)) as client:
        assert_bad_ids_are_422(client)
        [prediction] = client.post("/v1/predict", json={"text": "lost my bag"}).json()["predictions"]
        ok = client.post("/v1/feedback", json={"prediction_id": prediction["prediction_id"], "label": "negative"})
        assert ok.status_code == 201, ok.text
