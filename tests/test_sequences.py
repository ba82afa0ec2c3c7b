"""Sequence numbering as DeepFaune 1.4.1's FileManager.findSequences does it."""
from __future__ import annotations

from datetime import datetime, timedelta

import numpy as np
import pytest

from deepfaune_plugin.sequences import assign_sequences, file_order

T0 = datetime(2024, 3, 10, 22, 15, 0)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def test_three_images_8s_apart_chain_into_one_sequence():
    # gaps 8 s and 8 s, each <= 10 (the first-to-last span of 16 s does not matter)
    entries = [("cam1", at(0), "cam1/a.jpg"), ("cam1", at(8), "cam1/b.jpg"), ("cam1", at(16), "cam1/c.jpg")]
    assert assign_sequences(entries, maxlag=10) == [1, 1, 1]


def test_a_12s_gap_splits_and_the_gap_bound_is_inclusive():
    entries = [("cam1", at(0), "cam1/a.jpg"), ("cam1", at(12), "cam1/b.jpg")]
    assert assign_sequences(entries, maxlag=10) == [1, 2]
    # exactly maxlag: same sequence (lag <= timedelta(seconds=maxlag))
    assert assign_sequences([("d", at(0), "d/a"), ("d", at(10), "d/b")], maxlag=10) == [1, 1]
    assert assign_sequences([("d", at(0), "d/a"), ("d", at(10), "d/b")], maxlag=9) == [1, 2]
    # maxlag 0: only images of the same second share a sequence
    assert assign_sequences([("d", at(0), "d/a"), ("d", at(0), "d/b"), ("d", at(1), "d/c")], maxlag=0) == [1, 1, 2]


def test_order_is_by_date_inside_a_directory_not_by_name():
    # names a, b, c but dates 20 s, 0 s, 5 s: date order b(0) c(5) a(20); 5 s joins, 15 s splits
    entries = [("d", at(20), "d/a.jpg"), ("d", at(0), "d/b.jpg"), ("d", at(5), "d/c.jpg")]
    assert assign_sequences(entries, maxlag=10) == [2, 1, 1]


def test_undated_files_are_alone_and_numbered_after_the_dated_ones():
    entries = [("d", None, "d/a.jpg"), ("d", at(0), "d/b.jpg"), ("d", at(3), "d/c.jpg"), ("d", None, "d/d.jpg")]
    # dated b, c -> 1; then the undated, in name order: a -> 2, d -> 3 ("NA" sorts after any date)
    assert assign_sequences(entries, maxlag=10) == [2, 1, 1, 3]


def test_two_directories_with_overlapping_times_stay_separate():
    entries = [("east", at(0), "east/1.jpg"), ("west", at(1), "west/1.jpg"),
               ("east", at(2), "east/2.jpg"), ("west", at(3), "west/2.jpg")]
    assert assign_sequences(entries, maxlag=10) == [1, 2, 1, 2]


def test_numbering_follows_the_sorted_file_list_not_the_manifest():
    # manifest order z..., a...: DeepFaune lists files with sorted(), so directory "a" comes first.
    # A sub-directory sorts by its full path: "a/sub/x.jpg" < "a/y.jpg" ("s" < "y"), so it is
    # met before its parent's files here.
    entries = [("z", at(0), "z/1.jpg"), ("a", at(100), "a/yy.jpg"), ("a/sub", at(50), "a/sub/x.jpg"),
               ("a", at(0), "a/y.jpg")]
    # sorted: a/sub/x.jpg, a/y.jpg, a/yy.jpg, z/1.jpg -> a/sub -> 1; a: y (0 s) -> 2, yy (100 s) -> 3; z -> 4
    assert assign_sequences(entries, maxlag=10) == [4, 3, 1, 2]
    assert file_order(entries) == [2, 3, 1, 0]
    # with "a/b.jpg" instead, "a" is met first: a -> 1, 2; a/sub -> 3; z -> 4
    entries[3] = ("a", at(0), "a/b.jpg")
    assert assign_sequences(entries, maxlag=10) == [4, 2, 3, 1]


def test_without_names_the_manifest_order_stands_in():
    entries = [("z", at(0)), ("a", at(0)), ("z", at(30))]
    assert assign_sequences(entries, maxlag=10) == [1, 3, 2]


def test_many_undated_files_follow_numpys_argsort_like_deepfaune():
    # 40 undated files in one folder: DeepFaune numbers them in np.argsort(["NA"] * 40) order,
    # which for more than 16 equal keys is numpy's introsort order, not name order
    names = [f"d/{i:03d}.jpg" for i in range(40)]
    seq = assign_sequences([("d", None, n) for n in names], maxlag=10)
    expected = [0] * 40
    for rank, k in enumerate(np.argsort(np.array(["NA"] * 40))):
        expected[k] = rank + 1
    assert seq == expected
    assert sorted(seq) == list(range(1, 41))
    assert seq != list(range(1, 41))  # really not name order
    # up to 16 files the order is the plain name order
    assert assign_sequences([("d", None, n) for n in names[:16]], maxlag=10) == list(range(1, 17))


def test_sub_second_host_dates_and_mixed_timezones():
    # a host may give fractional seconds: 10.5 s > 10 s splits
    assert assign_sequences([("d", at(0), "d/a"), ("d", at(10.5), "d/b")], maxlag=10) == [1, 2]
    aware = datetime(2024, 3, 10, 22, 15, 5).astimezone()
    assert assign_sequences([("d", at(0), "d/a"), ("d", aware, "d/b")], maxlag=10) == [1, 2]


def test_empty_and_bad_maxlag():
    assert assign_sequences([], maxlag=10) == []
    with pytest.raises(ValueError):
        assign_sequences([("d", at(0), "d/a")], maxlag=-1)
