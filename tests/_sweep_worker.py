"""Subprocess target for the resume test: a deterministic sweep on a tiny model into a store."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

import steertax as st  # noqa: E402
from conftest import make_tokenizer, tiny_model  # noqa: E402
from steertax.runners.sweep import TaskSpec, run_sweep  # noqa: E402
from steertax.store import ResultStore  # noqa: E402
from test_steering import unit_vector  # noqa: E402

db = sys.argv[1]
tok = make_tokenizer()
model = tiny_model("llama", n_layers=4, seed=5)
vec = unit_vector(model, [1, 2])
specs = [TaskSpec(st.tasks.get("arc_easy"), limit=24), TaskSpec(st.tasks.get("refusal", scorers=["logprob"]), limit=24),
         TaskSpec(st.tasks.get("drift"), limit=8)]
with ResultStore(db) as store:
    store.begin_run("run1", {"test": True}, "now")
    run_sweep(model, tok, vec, specs, [0.0, 1.0, 2.0, 4.0], store, "run1", chunk=4, progress=False)
print("done")
