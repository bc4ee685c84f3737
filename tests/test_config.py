"""The run configuration: schema validation, built-in configs, hashing, quick mode."""
from __future__ import annotations

import pytest
from hypothesis import given, settings, strategies as st

from steertax import ConfigError
from steertax.config import BUILTIN_CONFIGS, builtin_config, default_config, from_dict, load_config


def test_builtins_validate_and_hash_stably():
    for name in BUILTIN_CONFIGS:
        c = builtin_config(name)
        assert c.content_hash() == builtin_config(name).content_hash()
        assert from_dict(c.to_dict()).content_hash() == c.content_hash()
        q = c.quick_version()
        assert q.quick and q.content_hash() != c.content_hash()
        assert all(t.limit <= 8 for t in q.tasks)
    assert default_config().model == "smollm2"
    assert builtin_config("paper-qwen").strengths.both_signs


@pytest.mark.parametrize("patch,needle", [
    ({"modle": "x"}, "unknown key modle"),
    ({"vector": {"method": "svd"}}, "vector.method"),
    ({"vector": {"layers": "a-b"}}, "vector.layers"),
    ({"vector": {"bogus": 1}}, "unknown key vector.bogus"),
    ({"seed": "zero"}, "seed: expected an integer"),
    ({"batch_size": 3.5}, "batch_size: expected an integer"),
    ({"strengths": {"values": [0, ".nan"]}}, "strengths.values[1]"),
    ({"strengths": {"values": [0, float("nan")]}}, "not a finite number"),
    ({"tasks": [{"name": "nope"}]}, "tasks[0].name: unknown task"),
    ({"tasks": [{"name": "arc_easy", "limit": "ten"}]}, "tasks[0].limit: expected an integer"),
    ({"tasks": [{"name": "arc_easy", "options": {"bogus": 1}}]}, "tasks[0].options"),
    ({"tasks": [{"name": "arc_easy"}, {"name": "arc_easy"}]}, "appears twice"),
    ({"tasks": []}, "at least one task"),
    ({"study": {"helpfulness_weight": 2}}, "study.helpfulness_weight"),
    ({"study": {"alpha": 0.7}}, "write study.helpfulness_weight: 0.3"),
    ({"quick": "yes"}, "quick: expected true/false"),
])
def test_bad_configs_name_the_key(patch, needle):
    d = default_config().to_dict()
    for k, v in patch.items():
        if isinstance(v, dict) and isinstance(d.get(k), dict):
            d[k] = {**d[k], **v}
        else:
            d[k] = v
    with pytest.raises(ConfigError) as e:
        from_dict(d)
    assert needle in str(e.value)


def test_load_config_files(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text(default_config().to_yaml())
    assert load_config(p).content_hash() == default_config().content_hash()
    (tmp_path / "e.yaml").write_text("")
    with pytest.raises(ConfigError, match="empty"):
        load_config(tmp_path / "e.yaml")
    (tmp_path / "b.yaml").write_text("model: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(tmp_path / "b.yaml")
    (tmp_path / "n.yaml").write_bytes(b"model: \xff\xfe\n")
    with pytest.raises(ConfigError, match="UTF-8"):
        load_config(tmp_path / "n.yaml")
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "missing.yaml")


@settings(max_examples=60, deadline=None)
@given(st.dictionaries(st.text(min_size=1, max_size=8), st.one_of(st.integers(), st.text(max_size=5), st.none()), max_size=3))
def test_random_top_level_keys_never_crash(extra):
    d = default_config().to_dict()
    d.update(extra)
    try:
        from_dict(d)
    except ConfigError:
        pass


def test_default_grid_can_tell_first_from_second_order():
    """The default study's grid spans both signs with >= 9 strengths, >= 5 of them (>= 3 required)
    inside the small-|r| window where the paper's local laws are tested; quick keeps that window."""
    import torch

    from steertax.config import default_config
    from steertax.interventions.steering.vectors import SteeringVector
    from steertax.runners.study import strength_grid

    vec = SteeringVector({i: torch.ones(8) / 8**0.5 for i in range(8, 13)}, "m", 8, 30, "pca",
                         layer_norms={i: 136.8 for i in range(8, 13)})
    for cfg, n_min in ((default_config(), 9), (default_config().quick_version(), 7)):
        grid, info = strength_grid(cfg, vec)
        top = max(abs(g) for g in grid)
        assert min(grid) == -top and 0.0 in grid and len(grid) >= n_min
        assert sum(abs(g) <= cfg.strengths.local_fraction * top + 1e-9 for g in grid) >= 5
        assert len(info["relative"]) == len(grid)


def test_run_folders_from_before_helpfulness_weight_are_read_exactly():
    from steertax.config import upgrade_resolved

    d = default_config().to_dict()
    d["study"] = {k: v for k, v in d["study"].items() if k != "helpfulness_weight"} | {"alpha": 0.8}
    with pytest.raises(ConfigError, match="helpfulness_weight: 0.2"):
        from_dict(d)
    cfg = from_dict(upgrade_resolved(d))
    assert cfg.study.helpfulness_weight == pytest.approx(0.2)
