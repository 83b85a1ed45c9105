"""The log benchmark's parts on tiny logs; nothing here is timed."""

from __future__ import annotations

import argparse
import sqlite3

import pytest
from benchmarks import common
from benchmarks import log_bench as bench


def test_fill_writes_the_rows_with_ids_of_its_kind(tmp_path):
    path = bench.fill(tmp_path / "log.db", 120, bench.ID_KINDS["time-ordered (UUIDv7)"], chunk=50)
    with sqlite3.connect(path) as connection:
        ids = [row[0] for row in connection.execute("select prediction_id from predictions order by id")]
    assert len(ids) == len(set(ids)) == 120
    assert all(value[12] == "7" for value in ids)


def test_the_benchmark_measures_every_variant_and_tabulates(tmp_path):
    results = bench.measure([0, 100], rows=60, batch=20, runs=2, workdir=tmp_path)
    assert set(results) == {(size, kind) for size in (0, 100) for kind in bench.ID_KINDS}
    assert all(len(runs) == 2 and all(run["wall"] > 0 for run in runs) for runs in results.values())
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # logs and templates removed
    table = bench.report_table(results, 60, 20, 2)
    assert table["columns"] == ["rows in the log", "ids", "user CPU", "kernel CPU", "CPU", "wall"]
    assert [row[:2] for row in table["rows"]] == [[size, kind] for size in (0, 100) for kind in bench.ID_KINDS]
    assert all(common._is_cell(cell) for row in table["rows"] for cell in row)
    assert not common.validate_result({"benchmark": "log", "command": common.benchmark_command("log"),
                                       "measured_at": common.utc_now(), "machine": "m", "commit": None,
                                       "params_md5": None, "tables": [table]})


def test_sizes_are_row_counts_and_anything_else_is_named():
    assert bench.sizes_option("0,800000") == [0, 800_000]
    for bad in ("0,x", "", "-5"):
        with pytest.raises(argparse.ArgumentTypeError, match="expected row counts"):
            bench.sizes_option(bad)
