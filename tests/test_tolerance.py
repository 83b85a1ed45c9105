import json

from sentiment_pipeline.review.tolerance import ABS_TOLERANCE, compare_csv, compare_files, compare_json


def test_json_numbers_within_the_tolerance_match_and_others_are_located():
    old = {"cv": {"mean": 0.74297, "folds": [0.73, 0.75]}, "family": "logreg", "n": 3}
    assert compare_json(old, json.loads(json.dumps(old))) == []
    near = {"cv": {"mean": 0.74297 + ABS_TOLERANCE / 2, "folds": [0.73, 0.75]}, "family": "logreg", "n": 3}
    assert compare_json(old, near) == []
    far = {"cv": {"mean": 0.74255, "folds": [0.73, 0.76]}, "family": "svm", "n": 4}
    found = {d.where: (d.committed, d.produced) for d in compare_json(old, far, "f.json")}
    assert found == {"cv.mean": (0.74297, 0.74255), "cv.folds[1]": (0.75, 0.76),
                     "family": ("logreg", "svm"), "n": (3, 4)}


def test_json_structure_must_match():
    assert [d.where for d in compare_json([1, 2], [1, 2, 3])] == ["length"]
    assert [d.where for d in compare_json({"a": 1}, {"b": 1})] == ["keys"]
    assert compare_json(True, 1) != []


def test_csv_rows_ranked_by_close_probabilities_may_swap():
    old = 'kind,row,p\n"top",1,0.9576\n"top",2,0.9575\n'
    swapped = 'kind,row,p\n"top",2,0.95752\n"top",1,0.95759\n'
    assert compare_csv(old, swapped) == []
    other = 'kind,row,p\n"top",3,0.9576\n"top",2,0.9575\n'
    assert compare_csv(old, other) != []


def test_prose_numbers_allow_their_printed_rounding():
    assert compare_files("card.md", "CV 0.7430 ± 0.0082\n", "CV 0.7431 ± 0.0082\n") == []
    assert compare_files("card.md", "CV 0.7430\n", "CV 0.7440\n")[0].committed == "0.7430"
    assert compare_files("card.md", "family logreg\n", "family svm\n")[0].where == "line 1"
