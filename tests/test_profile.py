import json
import os
import subprocess
import sys

from sentiment_pipeline.core import profiling


def test_a_stage_run_appends_one_line_naming_the_stage_and_family(tmp_path):
    (tmp_path / "params.yaml").write_text("{}\n")
    target = tmp_path / "out" / "profile.jsonl"
    env = {**os.environ, profiling.ENV_VAR: str(target)}
    target.parent.mkdir()
    target.write_text('{"stage": "earlier"}\n')
    # a failing stage is cheap, and still profiled
    result = subprocess.run([sys.executable, "-m", "sentiment_pipeline", "train", "--family", "svm"],
                            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 1
    records = [json.loads(line) for line in target.read_text().splitlines()]
    assert len(records) == 2  # appended
    record = records[1]
    assert record["stage"] == "train@svm" and record["ok"] is False
    # the whole process, imports included, takes longer than the failed stage call
    assert record["seconds"] >= record["stage_seconds"] >= 0
    assert record["max_rss_mb"] > 10 and record["children_max_rss_mb"] >= 0


def test_nothing_is_written_when_the_variable_is_unset(tmp_path, monkeypatch):
    monkeypatch.delenv(profiling.ENV_VAR, raising=False)
    assert profiling.profile_target() is None
    with profiling.profiled("select"):
        pass
    assert list(tmp_path.iterdir()) == []


def test_record_fields(tmp_path):
    record = profiling.profile_record("evaluate", ok=True, stage_seconds=0.5)
    assert record["stage"] == "evaluate" and record["ok"] is True
    assert 0 < record["seconds"] < 24 * 3600  # since this (pytest) process started
    profiling.append_record(tmp_path / "p.jsonl", record)
    profiling.append_record(tmp_path / "p.jsonl", record)
    lines = (tmp_path / "p.jsonl").read_text().splitlines()
    assert [json.loads(line) for line in lines] == [record, record]
