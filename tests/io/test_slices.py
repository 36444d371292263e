"""Slice selections: inclusive ranges, lists, "all", and every malformed spec."""

from __future__ import annotations

import pytest

from unet.io.slices import parse_slices, slice_range


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("0-2", [0, 1, 2]),
        ("4", [4]),
        ("9", [9]),  # the last slice
        ("0-2,5", [0, 1, 2, 5]),
        ("0-1, 7-9", [0, 1, 7, 8, 9]),  # spaces around parts are allowed
        ("5,0-1", [5, 0, 1]),  # the order of the spec is kept
        ("3-3", [3]),
        ("0-9", list(range(10))),
        ("all", list(range(10))),
    ],
)
def test_parse_slices(spec, expected):
    assert parse_slices(spec, 10) == expected


def test_parse_slices_none_selects_nothing():
    assert parse_slices(None, 10) == []


def test_parse_slices_all_of_an_empty_volume():
    assert parse_slices("all", 0) == []


@pytest.mark.parametrize("spec", ["", "abc", "0-", "-3", "1-2-3", "1:3", "0-2;5", "0-2,", "ALL"])
def test_parse_slices_unparseable(spec):
    with pytest.raises(
        ValueError, match=r"^train_slices: cannot parse .* \(use e\.g\. '0-24,30'\)"
    ):
        parse_slices(spec, 10, name="train_slices")


def test_parse_slices_unparseable_names_the_part():
    with pytest.raises(ValueError, match=r"slices: cannot parse 'x' in '0-2,x'"):
        parse_slices("0-2,x", 10)


def test_parse_slices_backwards_range():
    with pytest.raises(ValueError, match=r"^eval: range '5-3' runs backwards$"):
        parse_slices("0,5-3", 10, name="eval")


@pytest.mark.parametrize(("spec", "slice_"), [("10", 10), ("8-10", 10), ("0-2,12", 12)])
def test_parse_slices_outside_the_volume(spec, slice_):
    with pytest.raises(
        ValueError, match=rf"^slices: slice {slice_} in '{spec}' is outside the volume of 10 slices"
    ):
        parse_slices(spec, 10)


@pytest.mark.parametrize("spec", ["1,1", "0-3,2", "0-4,3-6"])
def test_parse_slices_duplicates(spec):
    with pytest.raises(ValueError, match=rf"^slices: '{spec}' selects some slices twice$"):
        parse_slices(spec, 10)


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("2-4", (2, 5)),
        ("3", (3, 4)),
        ("0-1,2-3", (0, 4)),  # a list is fine when it is contiguous and increasing
        ("all", (0, 10)),
        (None, (0, 10)),
        ("0-9", (0, 10)),
    ],
)
def test_slice_range(spec, expected):
    assert slice_range(spec, 10) == expected


@pytest.mark.parametrize("spec", ["0-1,3", "0,2", "3,2", "5-6,0-4"])
def test_slice_range_not_contiguous(spec):
    with pytest.raises(ValueError, match=rf"^train: '{spec}' must be one contiguous range$"):
        slice_range(spec, 10, name="train")


def test_slice_range_of_an_empty_volume():
    with pytest.raises(ValueError, match=r"^slices: None must be one contiguous range$"):
        slice_range(None, 0)


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("x", r"cannot parse 'x'"),
        ("4-2", r"range '4-2' runs backwards"),
        ("0-10", r"slice 10 in '0-10' is outside the volume of 10 slices"),
        ("0-2,2", r"'0-2,2' selects some slices twice"),
    ],
)
def test_slice_range_passes_on_parse_errors(spec, message):
    with pytest.raises(ValueError, match=rf"^train: {message}"):
        slice_range(spec, 10, name="train")
