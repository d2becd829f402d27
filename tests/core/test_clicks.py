"""Click encoding: exact Euclidean distance maps clipped at 255, and click validation."""
from __future__ import annotations

import numpy as np
import pytest
from scipy.ndimage import distance_transform_edt

from fcanet_core.clicks import Click, distance_map, encode_clicks, validate_clicks


def test_distance_map_equals_scipys_exact_euclidean_distance_clipped_at_255() -> None:
    height, width = 300, 700
    points = [(5, 7), (650, 290), (300, 150)]
    seeds = np.zeros((height, width), dtype=bool)
    for x, y in points:
        seeds[y, x] = True
    expected = np.minimum(distance_transform_edt(~seeds), 255)
    got = distance_map(points, height, width)
    assert got.dtype == np.float32 and got.shape == (height, width)
    np.testing.assert_array_equal(got, expected.astype(np.float32))
    assert got.max() == 255.0  # far corners are clipped
    assert got[7, 5] == 0.0 and got[7, 8] == 3.0


def test_no_click_of_a_kind_gives_a_constant_255_map() -> None:
    assert (distance_map([], 4, 5) == 255).all()


def test_encode_clicks_separates_positive_negative_and_first() -> None:
    clicks = [Click(1, 1, True), Click(8, 1, False), Click(1, 8, True)]
    pos, neg, first = encode_clicks(clicks, 10, 10)
    assert pos[1, 1] == pos[8, 1] == 0 and pos[1, 8] > 0
    assert neg[1, 8] == 0 and neg[1, 1] == 7
    assert first[1, 1] == 0 and first[8, 1] == 7


@pytest.mark.parametrize("clicks, message", [
    ([], "no clicks given"),
    ([Click(10, 2, True)], r"click 0 at \(x=10, y=2\) lies outside the image of width 10 and height 5"),
    ([Click(1, 1, True), Click(-1, 2, False)], "click 1"),
])
def test_validate_clicks_explains_what_is_wrong(clicks: list[Click], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        validate_clicks(clicks, height=5, width=10)
