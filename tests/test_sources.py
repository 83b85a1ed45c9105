"""Download sources: compressed files, joined text columns, the Amazon Reviews 2023 schema,
and http(s) URLs served by a loopback server the test starts."""

import gzip
import hashlib
import http.server
import json
import threading
from pathlib import Path

import pytest

from sentiment_pipeline.core.config import DownloadConfig
from sentiment_pipeline.core.errors import DataError
from sentiment_pipeline.pipeline.data import load_source

CSV = b"title,body,label\nGreat,loved it,pos\nBad,\"broke, sadly\",neg\nOk,fine I guess,neu\n"


def test_gzip_csv_with_joined_text_columns(tmp_path):
    path = tmp_path / "reviews.csv.gz"
    path.write_bytes(gzip.compress(CSV))
    frame = load_source(DownloadConfig(source="file", path=path, text_column=["title", "body"]))
    assert frame["text"].tolist() == ["Great loved it", "Bad broke, sadly", "Ok fine I guess"]
    assert frame["label"].tolist() == ["pos", "neg", "neu"]


def amazon_file(tmp_path: Path, gz: bool = False) -> Path:
    rows = [
        {"rating": 5.0, "title": "Love it", "text": "Works great", "asin": "B1", "helpful_vote": 0},
        {"rating": 1.0, "title": "Awful", "text": "Broke in a day", "asin": "B2", "helpful_vote": 3},
        {"rating": 3.0, "title": "Meh", "text": "It is fine", "asin": "B3", "helpful_vote": 0},
        {"rating": 4.0, "title": "", "text": "Good value", "asin": "B4", "helpful_vote": 1},
        {"rating": 2.0, "title": "Poor", "text": "Not as described", "asin": "B5", "helpful_vote": 0},
    ]
    body = "".join(json.dumps(r) + "\n" for r in rows).encode()
    path = tmp_path / ("reviews.jsonl.gz" if gz else "reviews.jsonl")
    path.write_bytes(gzip.compress(body) if gz else body)
    return path


def test_amazon_reviews_2023_three_classes(tmp_path):
    config = DownloadConfig(source="file", path=amazon_file(tmp_path, gz=True), schema="amazon_reviews_2023")
    frame = load_source(config)
    assert frame["label"].tolist() == ["positive", "negative", "neutral", "positive", "negative"]
    assert frame["text"].tolist()[:2] == ["Love it Works great", "Awful Broke in a day"]
    assert frame["text"][3] == "Good value"


def test_amazon_reviews_2023_binary_mapping(tmp_path):
    mapping = {1: "negative", 2: "negative", 3: "negative", 4: "positive", 5: "positive"}
    config = DownloadConfig(source="file", path=amazon_file(tmp_path), schema="amazon_reviews_2023",
                            rating_labels=mapping)
    assert load_source(config)["label"].tolist() == ["positive", "negative", "negative", "positive", "negative"]


def test_amazon_rating_without_a_label_is_named(tmp_path):
    config = DownloadConfig(source="file", path=amazon_file(tmp_path), schema="amazon_reviews_2023",
                            rating_labels={1: "negative", 5: "positive"})
    with pytest.raises(DataError) as info:
        load_source(config)
    assert "rating" in str(info.value) and "2, 3, 4" in str(info.value) and "download.rating_labels" in str(info.value)


# ------------------------------------------------------------------ http(s)
class Server:
    """A loopback HTTP server; ``drop_first`` requests get half the body, then a closed socket."""

    def __init__(self, payload: bytes, drop_first: int = 0) -> None:
        self.payload, self.drop_first, self.requests = payload, drop_first, 0
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802
                server.requests += 1
                self.send_response(200)
                self.send_header("Content-Length", str(len(server.payload)))
                self.end_headers()
                if server.requests <= server.drop_first:
                    self.wfile.write(server.payload[: len(server.payload) // 2])
                    self.wfile.flush()
                    self.close_connection = True
                    return
                self.wfile.write(server.payload)

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/reviews.csv"

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()


def url_config(server: Server, sha256: str, **extra) -> DownloadConfig:
    return DownloadConfig(source="url", url=server.url, sha256=sha256, text_column=["title", "body"],
                          retries=2, backoff_seconds=0.01, timeout_seconds=5, **extra)


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_url_download_with_checksum():
    with Server(CSV) as server:
        frame = load_source(url_config(server, sha(CSV)))
    assert frame["label"].tolist() == ["pos", "neg", "neu"]


def test_url_retries_after_a_dropped_connection():
    with Server(CSV, drop_first=2) as server:
        frame = load_source(url_config(server, sha(CSV)))
        assert server.requests == 3
    assert len(frame) == 3


def test_url_gives_up_after_the_configured_retries(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with Server(CSV, drop_first=99) as server:
        with pytest.raises(DataError, match="after 3 attempts"):
            load_source(url_config(server, sha(CSV)))
        assert server.requests == 3
    assert list(tmp_path.iterdir()) == []


def test_url_checksum_mismatch_is_an_error_and_leaves_nothing(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with Server(CSV) as server:
        with pytest.raises(DataError) as info:
            load_source(url_config(server, "0" * 64))
    assert "sha256" in str(info.value) and sha(CSV) in str(info.value)
    assert list(tmp_path.iterdir()) == []


def test_url_needs_a_sha256():
    with pytest.raises(ValueError, match="download.sha256"):
        DownloadConfig(source="url", url="http://127.0.0.1:9/x.csv")


def test_unsupported_scheme_without_its_fsspec_extra_is_explained():
    config = DownloadConfig(source="url", url="gs://bucket/reviews.csv", sha256="0" * 64)  # gcsfs: not installed
    with pytest.raises(DataError, match="needs fsspec.s gs extra"):
        load_source(config)
