"""The inference benchmark's parts on a small in-process model; nothing here is timed."""

from __future__ import annotations

from benchmarks import common
from benchmarks import inference_bench as bench

from sentiment_pipeline.inference.predictor import Predictor


def test_batches_wrap_around_the_pool():
    texts = [str(i) for i in range(10)]
    assert bench.batches(texts, 1) == [[t] for t in texts]
    assert bench.batches(texts, 4) == [["0", "1", "2", "3"], ["4", "5", "6", "7"]]
    assert bench.batches(texts, 64) == [[texts[i % 10] for i in range(64)]]


def test_the_benchmark_checks_compares_and_tabulates(small_predictor, airline_sample):
    texts = list(airline_sample["text"][:30])
    reference = Predictor(small_predictor.model, small_predictor.normalizer, small_predictor.classes,
                          small_predictor.metadata, compiled=False)
    assert bench.identical(small_predictor, reference, texts, 8)
    variants = {"scikit-learn": reference.predict, "compiled": small_predictor.predict,
                "cleaning alone": small_predictor.clean}
    timings = bench.measure(variants, texts, sizes=(1, 8), runs=2, seconds=0.002, slice_seconds=0.001)
    assert set(timings) == {1, 8}
    assert all(len(values) == 2 and min(values) > 0 for by_name in timings.values() for values in by_name.values())
    [table] = bench.report_tables(timings, 2, "a note.")
    assert table["columns"] == ["texts per call", "scikit-learn ms", "compiled ms", "cleaning alone ms",
                                "compiled vs scikit-learn", "compiled texts/s"]
    assert [row[0] for row in table["rows"]] == [1, 8]
    assert all(len(row) == len(table["columns"]) and all(common._is_cell(cell) for cell in row)
               for row in table["rows"])
    assert table["note"].startswith("Median of 2 interleaved runs; a note.")
