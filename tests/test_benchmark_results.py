"""The benchmark result files (benchmarks/results/<name>.json): their schema, the one writer, and
the committed files. Nothing here runs a benchmark."""

from __future__ import annotations

import copy
import json

import pytest
from benchmarks import common, datasets, monitor_sim, serve_bench, stream_bench

RESULT = {
    "benchmark": "serve", "command": "make bench-serve", "measured_at": "2026-12-07T04:00:00Z",
    "machine": "2-core Intel(R) Xeon(R) Processor, 23.5 GiB RAM, Linux x86_64", "commit": "a6e2914",
    "params_md5": "0123456789abcdef0123456789abcdef",
    "tables": [{"title": "Single-text POSTs", "columns": ["server", "requests/s", "errors"],
                "rows": [["ours", "1,734", 0], ["Flask", 32.5, 1]], "note": None}],
}


def test_a_well_formed_result_is_valid():
    assert common.validate_result(RESULT) == []
    assert common.validate_result(RESULT, "serve") == []
    unknown = {**RESULT, "measured_at": None, "machine": None, "commit": None, "params_md5": None}
    assert common.validate_result(unknown) == []  # transcribed figures: nothing recorded
    assert common.validate_result({**RESULT, "measured_at": "2026-12-07"}) == []  # a date alone


def _broken(path: tuple, value) -> dict:
    result = copy.deepcopy(RESULT)
    *parents, last = path
    target = result
    for key in parents:
        target = target[key]
    if value is KeyError:
        del target[last]
    else:
        target[last] = value
    return result


@pytest.mark.parametrize("path, value, expected", [
    (("params_md5",), KeyError, "keys must be"),
    (("extra",), 1, "keys must be"),
    (("benchmark",), "serving", "none of"),
    (("command",), "", "command"),
    (("measured_at",), "07/12/2026", "measured_at"),
    (("measured_at",), "2026-12-07T04:00:00+01:00", "measured_at"),
    (("commit",), "HEAD", "commit"),
    (("params_md5",), "d41d8cd9", "params_md5"),
    (("tables",), [], "tables"),
    (("tables", 0, "note"), KeyError, "keys must be"),
    (("tables", 0, "title"), "", "title"),
    (("tables", 0, "note"), "two\n\nparagraphs", "note"),
    (("tables", 0, "columns"), [], "columns"),
    (("tables", 0, "rows"), [], "rows"),
    (("tables", 0, "rows", 0), ["ours", "1,734"], "one per column"),
    (("tables", 0, "rows", 0, 2), None, "cell None"),
    (("tables", 0, "rows", 0, 2), True, "cell True"),
    (("tables", 0, "rows", 0, 2), float("nan"), "cell nan"),
    (("tables", 0, "rows", 0, 2), {"value": 1}, "cell {'value': 1}"),
])
def test_a_broken_result_is_named(path, value, expected):
    problems = common.validate_result(_broken(path, value))
    assert problems and any(expected in problem for problem in problems), problems


def test_a_result_in_a_file_of_another_name_is_refused():
    assert "in the file named 'dask'" in common.validate_result(RESULT, "dask")[0]


def test_the_writer_fills_in_the_run_and_refuses_what_breaks_the_schema(tmp_path):
    params = tmp_path / "params.yaml"
    params.write_text("train: {cv_folds: 5}\n")
    tables = [common.table("Growth", ["rows", "seconds"], [["1,000", "0.79"], ["10,000", 7.9]], note="One run.")]
    path = common.write_result("stream", tables, tmp_path / "results", params_md5=common.params_md5(params),
                               args=["--sizes", "1000,10000", "--results-dir", "elsewhere"])
    assert path == tmp_path / "results" / "stream.json"
    result = common.read_result(path)
    assert result["command"] == 'make bench-stream STREAM_BENCH_ARGS="--sizes 1000,10000"'
    assert result["params_md5"] == common.params_md5(params) != common.params_md5(common.ROOT / "params.yaml")
    assert result["machine"] == common.machine_description() and result["tables"] == tables
    assert common.validate_result(result, "stream") == []
    # one row a line, so a re-run's diff reads row by row; the same bytes the checked files have
    assert '        ["10,000", 7.9]\n' in path.read_text()
    assert path.read_text() == common.format_result(result)

    with pytest.raises(ValueError, match="cell None"):
        common.write_result("stream", [common.table("t", ["a"], [[None]])], tmp_path, params_md5=None)
    assert not (tmp_path / "stream.json").exists()


@pytest.mark.parametrize("args, command", [
    ([], "make bench"),
    (["run", "--quick"], 'make bench BENCH_ARGS="--quick"'),
    (["--skip-naive", "--results-dir=/tmp/x", "--runs", "1"], 'make bench BENCH_ARGS="--skip-naive --runs 1"'),
])
def test_the_command_repeats_the_run(args, command):
    assert common.benchmark_command("pipeline", args) == command


def test_script_args_are_a_benchmark_scripts_own():
    script = str(common.ROOT / "benchmarks" / "serve_bench.py")
    assert common.script_args([script, "--seconds", "10"]) == ["--seconds", "10"]
    assert common.script_args(["/usr/bin/pytest", "-q"]) == []


def test_every_committed_result_is_valid_and_written_as_the_writer_writes():
    files = {path.stem: path for path in common.RESULTS_DIR.glob("*.json")}
    assert set(files) == set(common.MAKE_TARGETS), "one result file per benchmark"
    for name, path in files.items():
        result = common.read_result(path)  # ValueError naming the file and every problem
        assert result["command"].startswith(f"make {common.MAKE_TARGETS[name][0]}"), name
        assert path.read_text(encoding="utf-8") == common.format_result(result), f"{name}: not as write_result writes it"


# Each script's tables from a made-up run: what its result file would hold. (dask_bench is left
# out: importing it pins the process's kernels.)
def _serve() -> list[dict]:
    ours = {"requests_per_second": 1734.2, "p50_ms": 11.0, "p99_ms": 22.6, "errors": 0,
            "batch_texts_per_second": 13728.0, "logged_rows": 190453, "answered": 190433}
    flask = {"requests_per_second": 32.1, "p50_ms": 319.5, "p99_ms": 506.7, "errors": 0}
    return serve_bench.report_tables({"connections": 20, "seconds": 30, "workers": 2, "ours": ours, "flask": flask,
                                      "predict_command": [{"rows": 10000, "seconds": 3.8, "texts_per_second": 2598.0,
                                                           "max_rss_mb": 309.0}]})


def _monitor() -> list[dict]:
    perf = {"estimated": {"accuracy": 0.81, "unadapted": {"accuracy": 0.80}}, "reference_estimated_accuracy": 0.82,
            "reference_accuracy": 0.83}
    checks = [{"name": "text_length_ks", "threshold": 0.2, "value": 0.025, "drift": False},
              {"name": "live_accuracy_drop", "threshold": 0.05, "value": None, "drift": False}]
    windows = {"airline tweets (test split)": (0, {"checks": checks, "performance": perf}, 3.0),
               "synthetic product reviews": (1, {"checks": checks, "performance": perf}, 2.9)}
    return [monitor_sim.report_table(windows, 1000)]


def _stream() -> list[dict]:
    rows = [{"size": 1000, "step": step, "seconds": 1.0, "us_per_row": 1000.0, "vs_smallest": 1.0, "peak_rss_mb": 300.0}
            for step in stream_bench.STEPS]
    return [stream_bench.report_table({"chunk_rows": 500, "n_jobs": 1, "rows": rows, "fits": [],
                                       "totals": {1000: {"seconds": 3.0, "us_per_row": 3000.0, "vs_smallest": 1.0,
                                                         "peak_rss_mb": 300.0}}})]


def _datasets() -> list[dict]:
    return [datasets.report_table([{
        "dataset": "uci_sentences", "rows": 3000, "kept": 2978, "classes": {"negative": 1491, "positive": 1487},
        "family": "ensemble", "cv_f1_macro": 0.8777, "cv_f1_macro_std": 0.0083, "accuracy": 0.8674, "f1_macro": 0.8673,
        "seconds": 37.0, "baselines": {"vader": {"accuracy": 0.817, "f1_macro": 0.817},
                                       "textblob": {"accuracy": None, "f1_macro": None}}}])]


@pytest.mark.parametrize("name, tables", [("serve", _serve), ("monitor", _monitor), ("stream", _stream),
                                          ("datasets", _datasets)])
def test_every_scripts_tables_make_a_valid_result(name, tables, tmp_path):
    path = common.write_result(name, tables(), tmp_path, params_md5=None)
    assert common.validate_result(json.loads(path.read_text()), name) == []


def test_stream_bench_refuses_sizes_left_with_no_backend():
    from benchmarks import stream_bench
    from typer.testing import CliRunner

    result = CliRunner().invoke(stream_bench.app, ["run", "--sizes", "1000,2000", "--backends", "dask",
                                                   "--dask-max-rows", "1000"])
    assert result.exit_code == 2 and "add local to --backends" in result.output
