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


# ----------------------------------------------------------------- more parsers, all by property
import json  # noqa: E402
import math  # noqa: E402
import tempfile  # noqa: E402
from pathlib import Path  # noqa: E402

from hypothesis import HealthCheck, settings  # noqa: E402

from steertax import ConfigError, DataError, StrengthError  # noqa: E402
from steertax.cli import _parse_strengths  # noqa: E402
from steertax.config import default_config, from_dict, load_config  # noqa: E402
from steertax.data.loaders import load_rows  # noqa: E402
from steertax.interventions.steering.pairs import pairs_from_file  # noqa: E402

SETTINGS = settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@SETTINGS
@given(st.lists(st.one_of(st.text(max_size=12), st.floats(allow_nan=True, allow_infinity=True).map(str)), max_size=4))
def test_strength_lists_parse_or_refuse(values):
    try:
        out = _parse_strengths(values)
    except StrengthError:
        return
    assert all(isinstance(x, float) and math.isfinite(x) for x in out)


@given(st.lists(st.floats(-1e6, 1e6), min_size=1, max_size=6))
def test_strength_round_trip(values):
    assert _parse_strengths([",".join(repr(v) for v in values)]) == [float(v) for v in values]


def _write(suffix: str, data: bytes) -> Path:
    d = Path(tempfile.mkdtemp(prefix="steertax-prop-"))
    p = d / f"f{suffix}"
    p.write_bytes(data)
    return p


@SETTINGS
@given(st.sampled_from([".csv", ".jsonl", ".json"]),
       st.one_of(st.binary(max_size=300), st.text(max_size=300).map(lambda t: t.encode("utf-8"))))
def test_data_files_load_or_refuse_with_data_error(suffix, data):
    p = _write(suffix, data)
    try:
        rows = load_rows(str(p), lambda: [], ("query", "choices", "gold"), task="prop")
    except DataError:
        return
    assert rows and all("query" in r for r in rows)


@SETTINGS
@given(st.sampled_from([".csv", ".jsonl"]),
       st.lists(st.fixed_dictionaries({}, optional={"aligned": st.one_of(st.text(max_size=10), st.integers(), st.none()),
                                                   "misaligned": st.one_of(st.text(max_size=10), st.none()),
                                                   "id": st.sampled_from(["1", "2", "3"])}), max_size=5))
def test_pairs_files_load_or_refuse_with_data_error(suffix, rows):
    if suffix == ".jsonl":
        data = "\n".join(json.dumps(r) for r in rows)
    else:
        import csv
        import io

        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=["aligned", "misaligned", "id"])
        w.writeheader()
        for r in rows:
            w.writerow({k: v for k, v in r.items() if v is not None})
        data = buf.getvalue()
    p = _write(suffix, data.encode())
    try:
        ps = pairs_from_file(p)
    except DataError:
        return
    assert len(ps) == len(rows) and all(x.aligned and x.misaligned for x in ps)


@SETTINGS
@given(st.text(max_size=200))
def test_config_text_loads_or_refuses_with_config_error(text):
    p = _write(".yaml", text.encode("utf-8"))
    try:
        cfg = load_config(p)
    except ConfigError:
        return
    assert cfg.tasks


LEAF = st.one_of(st.none(), st.booleans(), st.integers(-5, 100), st.floats(allow_nan=True), st.text(max_size=6))


@SETTINGS
@given(st.sampled_from(["vector", "strengths", "study", "theory"]),
       st.dictionaries(st.sampled_from(["layers", "values", "n", "helpfulness_weight", "alpha",
                                         "method", "pairs", "max_relative", "enabled",
                                         "n_boot", "both_signs", "top_k", "bogus"]),
                       st.one_of(LEAF, st.lists(LEAF, max_size=3)), max_size=3))
def test_nested_config_values_validate_or_refuse(section, patch):
    d = default_config().to_dict()
    d[section] = {**(d.get(section) or {}), **patch}
    try:
        cfg = from_dict(d)
    except ConfigError:
        return
    for s in cfg.strengths.values or []:
        assert math.isfinite(s)
