"""The ids the service mints for predictions, requests and feedback: UUIDv7, time-ordered."""

from __future__ import annotations

import re
import time
import uuid

from sentiment_pipeline.predlog.prediction_log import new_id, new_ids
from sentiment_pipeline.serving.schemas import PREDICTION_ID_PATTERN


def test_ids_are_uuid7_in_the_form_feedback_accepts():
    ids = new_ids(1000)
    assert len(set(ids)) == 1000
    for value in ids:
        assert re.fullmatch(PREDICTION_ID_PATTERN, value)
        parsed = uuid.UUID(value)
        assert parsed.version == 7 and parsed.variant == uuid.RFC_4122
        assert parsed.hex == value
    assert re.fullmatch(PREDICTION_ID_PATTERN, new_id())


def test_ids_carry_their_creation_time_and_sort_by_it():
    before = time.time_ns() // 1_000_000
    first = new_ids(3)
    after = time.time_ns() // 1_000_000
    assert all(before <= int(value[:12], 16) <= after for value in first)
    time.sleep(0.002)
    later = new_id()
    assert later > max(first)  # a later millisecond sorts after: appended at the end of the index


def test_the_random_part_is_random():
    # 74 random bits per id: within one call (one millisecond, mostly) they differ in every place
    ids = new_ids(200)
    tails = {value[13:16] + value[17:] for value in ids}  # rand_a and rand_b, version and variant left out
    assert len(tails) == 200
    assert len({value[-1] for value in ids}) > 10
