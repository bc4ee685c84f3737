"""The aligning-prompt intervention: where its text goes in a chat template (system role, a template's own default
system prompt kept, the first user turn where there is no system role), the first rung equal to the base bit for
bit on every scorer, drift against the unprompted base, its key, the ladder's checks, and a study that runs it."""

from __future__ import annotations

import json
import sqlite3

import pytest

from conftest import make_tokenizer, tiny_model
from steertax import tasks as T
from steertax.errors import ConfigError, DataError
from steertax.interventions import BaseIntervention
from steertax.interventions.prompting import (
    DEFAULT_LADDER,
    DEFAULT_SYSTEM_PROMPT,
    PromptFrame,
    PromptingIntervention,
    Rung,
    check_ladder,
    frame_messages,
    ladder_interventions,
    load_demonstrations,
    load_system_prompt,
)
from steertax.models import TemplateRoles, format_chat, template_roles, unprompted, with_frame

# SmolLM2's and Qwen's way: a default system turn when the conversation has none
DEFAULT_SYS_TEMPLATE = (
    "{{ bos_token }}{% if messages[0]['role'] != 'system' %}<|system|>I am a default.</s>{% endif %}"
    "{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}</s>{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)
# Gemma's way: no system role (the template raises)
NO_SYS_TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}{% if m['role'] == 'system' %}{{ raise_exception('no system role') }}{% endif %}"
    "<|{{ m['role'] }}|>{{ m['content'] }}</s>{% endfor %}{% if add_generation_prompt %}<|assistant|>{% endif %}"
)


def _tok(template):
    t = make_tokenizer(chat_template=template is not None)
    if template is not None:
        t.chat_template = template
    return t


def test_template_roles_are_read_off_the_template(tok):
    assert template_roles(tok) == TemplateRoles(True, None)
    assert template_roles(_tok(DEFAULT_SYS_TEMPLATE)) == TemplateRoles(True, "I am a default.")
    assert template_roles(_tok(NO_SYS_TEMPLATE)) == TemplateRoles(False)
    assert template_roles(make_tokenizer(chat_template=False)) == TemplateRoles(False)


def test_the_safety_text_goes_where_the_template_puts_a_system_turn():
    frame = PromptFrame("BE SAFE", (("bad q", "no."),))
    # a default system prompt is kept, the safety text added after it
    t = with_frame(_tok(DEFAULT_SYS_TEMPLATE), frame)
    text = format_chat(t, "hello")
    assert text == "<s><|system|>I am a default.\n\nBE SAFE</s><|user|>bad q</s><|assistant|>no.</s><|user|>hello</s><|assistant|>"
    # a task's own system turn: the safety text is added to it
    assert format_chat(t, "hello", system="TASK").startswith("<s><|system|>TASK\n\nBE SAFE</s><|user|>bad q")
    # no system role: at the start of the first user turn
    t = with_frame(_tok(NO_SYS_TEMPLATE), frame)
    assert format_chat(t, "hello") == "<s><|user|>BE SAFE\n\nbad q</s><|assistant|>no.</s><|user|>hello</s><|assistant|>"
    # no template: the plain fallback, the same placement
    with pytest.warns(UserWarning):
        plain = format_chat(with_frame(make_tokenizer(chat_template=False), frame), "hello")
    assert plain == "User: BE SAFE\n\nbad q\nAssistant: no.\nUser: hello\nAssistant:"
    # unprompted() gives the original tokenizer back
    base = _tok(NO_SYS_TEMPLATE)
    assert unprompted(with_frame(base, frame)) is base and unprompted(base) is base
    # the plain fallback of an unframed prompt is what it always was
    with pytest.warns(UserWarning):
        assert format_chat(make_tokenizer(chat_template=False), "hi", system="S") == "S\n\nUser: hi\nAssistant:"


def test_frame_messages_without_demonstrations_or_system():
    msgs = [{"role": "user", "content": "q"}]
    assert frame_messages(msgs, TemplateRoles(True), None, ()) == msgs
    assert frame_messages(msgs, TemplateRoles(True), "S", ()) == [{"role": "system", "content": "S"}, *msgs]
    assert msgs == [{"role": "user", "content": "q"}]  # not modified in place


TASKS = [
    ("refusal", {"scorers": ["logprob", "generate"], "max_new_tokens": 4}),
    ("over_refusal", {"scorers": ["logprob"], "pool": "shared"}),
    ("arc_easy", {}),
    ("drift", {"max_answer_tokens": 8}),
]


def _rows(model, tok, iv, name, opts, n=4):
    task = T.get(name, **opts)
    items = task.items(n, 0)
    with iv.apply(model) as a:
        return T.evaluate(a.model, a.prompt_tokenizer(tok), task, items=items, batch_size=4, progress=False, reference=a.reference).records


@pytest.mark.parametrize("name,opts", TASKS, ids=[t[0] for t in TASKS])
def test_the_first_rung_is_the_base_bit_for_bit(llama, name, opts):
    tok = _tok(DEFAULT_SYS_TEMPLATE)
    first = ladder_interventions(DEFAULT_LADDER)[0]
    assert first.name() == "no prompt" and first.frame.empty
    assert _rows(llama, tok, first, name, opts) == _rows(llama, tok, BaseIntervention(), name, opts)


def test_a_prompted_rung_changes_every_scorer_and_drift_reads_the_unprompted_base(llama):
    tok = _tok(DEFAULT_SYS_TEMPLATE)
    rung = ladder_interventions(DEFAULT_LADDER)[3]  # system prompt + 2 demonstrations
    assert rung.name() == "system prompt + 2 demos"
    for name, opts in TASKS[:3]:
        assert _rows(llama, tok, rung, name, opts) != _rows(llama, tok, BaseIntervention(), name, opts), name
    d_base = _rows(llama, tok, BaseIntervention(), *TASKS[3])
    d_rung = _rows(llama, tok, rung, *TASKS[3])
    for b, r in zip(d_base, d_rung, strict=True):
        assert b["kl"] == 0.0 and r["kl"] > 0
        # the reference cross-entropy under the rung is the unprompted base's own
        assert r["ce"] - r["ce_delta"] == pytest.approx(b["ce"], abs=1e-5)


def test_the_key_covers_the_texts_and_the_rungs():
    ivs = ladder_interventions(DEFAULT_LADDER)
    assert len({iv.key for iv in ivs}) == len(ivs)
    d = ivs[2].describe()
    assert d["system"] == DEFAULT_SYSTEM_PROMPT and len(d["demonstrations"]) == 1
    other = PromptingIntervention(ivs[2].rung, 2, PromptFrame("another text", ivs[2].frame.demonstrations))
    assert other.key != ivs[2].key
    # the bundled demonstrations: AdvBench requests, none from the refusal task's held-out test split
    test = {it.data["prompt"].strip().lower() for it in T.get("refusal").items()}
    assert not {u.strip().lower() for u, _ in load_demonstrations("bundled", 8)} & test


def test_the_ladder_and_its_files_are_checked(tmp_path):
    check_ladder(DEFAULT_LADDER)
    with pytest.raises(ConfigError, match="first rung must add no text"):
        check_ladder([Rung(True), Rung(True, 1)])
    with pytest.raises(ConfigError, match="not ordered"):
        check_ladder([Rung(), Rung(True, 2), Rung(True, 1)])
    with pytest.raises(ConfigError, match="not ordered"):
        check_ladder([Rung(), Rung(True), Rung(False, 1)])
    with pytest.raises(ConfigError, match="at least two rungs"):
        check_ladder([Rung()])
    with pytest.raises(DataError, match="neither 'default' nor an existing text file"):
        load_system_prompt(str(tmp_path / "missing.txt"))
    (tmp_path / "empty.txt").write_text("  \n")
    with pytest.raises(DataError, match="is empty"):
        load_system_prompt(str(tmp_path / "empty.txt"))
    (tmp_path / "mine.txt").write_text("Refuse harm.\n")
    assert load_system_prompt(str(tmp_path / "mine.txt")) == "Refuse harm."
    (tmp_path / "demos.csv").write_text("question,answer\nq,a\n")
    with pytest.raises(DataError, match="lacks column"):
        load_demonstrations(str(tmp_path / "demos.csv"), 1)
    (tmp_path / "demos2.csv").write_text("prompt,response\nq,a\n")
    assert load_demonstrations(str(tmp_path / "demos2.csv"), 1) == [("q", "a")]
    with pytest.raises(DataError, match="needs 2"):
        load_demonstrations(str(tmp_path / "demos2.csv"), 2)


def _study_cfg(d, **prompting):
    return {
        "model": str(d),
        "chunk": 4,
        "batch_size": 8,
        "vector": {"pairs": "refusal", "n_pairs": 16, "layers": "2-3"},
        "strengths": {"values": [0.0, 1.0, 2.0]},
        "tasks": [{"name": "refusal", "limit": 8, "options": {"scorers": ["logprob"]}}, {"name": "arc_easy", "limit": 4}],
        "study": {"n_boot": 10},
        "theory": {"enabled": False},
        "prompting": {"ladder": [{}, {"system": True}, {"system": True, "demonstrations": 2}], **prompting},
    }


def test_a_study_runs_the_ladder_beside_the_sweep(tmp_path, capsys):
    from steertax.cli import main
    from steertax.config import from_dict
    from steertax.manifest import read_manifest
    from steertax.runners.study import run_study

    d = tmp_path / "tiny"
    tiny_model("llama", n_layers=4, seed=1).save_pretrained(d)
    _tok(DEFAULT_SYS_TEMPLATE).save_pretrained(d)
    out = tmp_path / "run"
    run_study(from_dict(_study_cfg(d)), out, progress=False)
    man = read_manifest(out)
    pts = man.points("prompting")
    assert [r.label for _, r, _ in pts] == ["system prompt", "system prompt + 2 demos"] and [v for *_, v in pts] == [1.0, 2.0]
    con = sqlite3.connect(out / "results.sqlite")
    n = dict(con.execute("SELECT method, COUNT(*) FROM results GROUP BY method").fetchall())
    con.close()
    assert n == {"steering": 3 * 12, "prompting": 2 * 12}
    import yaml

    res = yaml.safe_load((out / "config.resolved.yaml").read_text())["resolved"]["prompting"]
    assert res["roles"] == {"system": True, "default_system": "I am a default."}
    assert res["rungs"][1]["demonstrations"] and res["rungs"][0]["system"] == DEFAULT_SYSTEM_PROMPT
    # adding the ladder does not change the sweep's run id: its rows are reused
    cfg2 = _study_cfg(d)
    del cfg2["prompting"]
    assert from_dict(cfg2).content_hash() == from_dict(_study_cfg(d)).content_hash()
    # bad prompting input: one line, exit 2, nothing written
    import yaml as _y

    capsys.readouterr()
    for bad, msg in (
        ({"ladder": [{"system": True}, {"system": True, "demonstrations": 1}]}, "first rung must add no text"),
        ({"system": str(tmp_path / "nope.txt")}, "neither 'default' nor an existing text file"),
    ):
        p = tmp_path / "bad.yaml"
        p.write_text(_y.safe_dump(_study_cfg(d, **bad)))
        assert main(["--quiet", "run", str(p), "--out", str(tmp_path / "o")]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and msg in err[0], err
        assert not (tmp_path / "o").exists()
    assert json.loads((out / "summary.json").read_text())["run_id"]


def test_a_raw_prompt_gets_the_frame_as_plain_text_before_it(tok):
    t = with_frame(tok, PromptFrame("BE SAFE", (("bad q", "no."),)))
    assert format_chat(t, "Question: 1+1?\nAnswer:", chat=False) == "User: BE SAFE\n\nbad q\nAssistant: no.\nQuestion: 1+1?\nAnswer:"
    assert format_chat(with_frame(tok, PromptFrame("BE SAFE")), "Q", chat=False) == "BE SAFE\n\nQ"
