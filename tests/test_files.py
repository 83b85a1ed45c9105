import pytest

from sentiment_pipeline.core.files import atomic_path, read_json, write_json


def test_failed_write_leaves_neither_partial_file_nor_temporary(tmp_path):
    target = tmp_path / "out" / "result.json"
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("interrupted")
    assert not target.exists()
    assert list((tmp_path / "out").iterdir()) == []


def test_failed_write_keeps_the_previous_version(tmp_path):
    target = tmp_path / "result.json"
    write_json({"v": 1}, target)
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("{broken")
            raise RuntimeError
    assert read_json(target) == {"v": 1}


def test_directory_output_is_replaced_whole(tmp_path):
    target = tmp_path / "model"
    target.mkdir()
    (target / "stale.bin").write_text("old")
    with atomic_path(target) as tmp:
        tmp.mkdir()
        (tmp / "model.joblib").write_text("new")
    assert sorted(p.name for p in target.iterdir()) == ["model.joblib"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]
