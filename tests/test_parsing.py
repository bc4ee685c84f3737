"""Layer-range parsing (property tests)."""
from __future__ import annotations

import pytest
from hypothesis import given, strategies as st

from steertax import LayerError
from steertax._util import format_layers, parse_layers


def test_examples():
    assert parse_layers("8-12,14") == [8, 9, 10, 11, 12, 14]
    assert parse_layers(" 3 ") == [3]
    assert parse_layers([2, 1, 2]) == [1, 2]
    assert parse_layers(-1, 30) == [29]
    assert parse_layers("-2", 30) == [28]
    for bad in ("", "a", "3-", "5-3", "1,,2", [1.5], True):
        with pytest.raises(LayerError):
            parse_layers(bad)
    with pytest.raises(LayerError, match="out of range"):
        parse_layers("8-40", 30)


@given(st.sets(st.integers(0, 200), min_size=1))
def test_format_parse_round_trip(layers):
    assert parse_layers(format_layers(sorted(layers))) == sorted(layers)


@given(st.text(max_size=20))
def test_garbage_raises_layer_error_only(s):
    try:
        out = parse_layers(s, 50)
    except LayerError:
        return
    assert all(0 <= i < 50 for i in out)
