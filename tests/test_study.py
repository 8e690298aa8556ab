"""Studies: spec validation, the store, resume after SIGKILL, refusal of changed specs, the
lock, and the Ray backend giving the same store as the local one."""

from __future__ import annotations

import json
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import kill_mid_batch
from typer.testing import CliRunner

from regspeed.cli import app
from regspeed.errors import ConfigError
from regspeed.report import report
from regspeed.study import results, runner
from regspeed.study import spec as spec_module
from regspeed.study import store as store_module

# Two batches (baseline; l2 at two strengths) x 2 seeds; 120 short updates in chunks of 4,
# so that a study can be stopped in the middle of a batch.
TINY_SPEC = """
name = "tiny"
task = "snake-ppo"
seeds = 2
budget = 15_360
[config.env]
rows = 6
cols = 6
observation = "features"
[config.network]
hidden = [16]
[config.ppo]
num_envs = 8
rollout_steps = 16
epochs = 1
minibatches = 2
[[regularizers]]
kind = "l2"
strengths = [1e-3, 1e-2]
[evaluation]
every_updates = 8
episodes = 4
max_steps = 40
[thresholds]
score = [1, 2]
[execution]
chunk_updates = 4
"""


def tiny_spec() -> spec_module.Spec:
    return spec_module.parse(TINY_SPEC, "tiny.toml")


def store_contents(folder: Path) -> dict[str, list[tuple]]:
    """Everything a study computed, without timings: runs, batches, curves (``(run, metric,
    step, value)`` by run, metric and step, read through the store whatever its format)."""
    with sqlite3.connect(folder / store_module.DATABASE) as connection:
        contents = {
            "runs": connection.execute(
                "SELECT condition_id, seed, batch_id, position, status, updates_done, error FROM runs ORDER BY run_id"
            ).fetchall(),
            "batches": connection.execute(
                "SELECT batch_id, condition_ids, total_updates, updates_done, checkpoint FROM batches"
            ).fetchall(),
        }
    with store_module.Store.open(folder, check=False) as store:
        contents["curves"] = sorted(
            (run, name, step, value)
            for name in store.metric_names()
            for run, (steps, values) in store.curve(name).items()
            for step, value in zip(steps.tolist(), values.tolist(), strict=True)
        )
    return contents


def checkpoints(folder: Path) -> dict[str, dict[str, np.ndarray]]:
    found = {}
    for path in sorted((folder / store_module.CHECKPOINTS).glob("*.npz")):
        with np.load(path) as data:
            found[path.name] = dict(data)
    return found


@pytest.fixture
def reference(tiny_study: Path) -> Path:
    """The tiny study, run uninterrupted in this process (once per test session)."""
    return tiny_study


# --------------------------------------------------------------------------------- spec


def test_default_spec_is_what_spec_prints_and_is_valid() -> None:
    printed = CliRunner().invoke(app, ["spec"])
    assert printed.exit_code == 0
    parsed = spec_module.parse(printed.output)
    assert parsed == spec_module.load()
    names = [condition.name for condition in spec_module.conditions(parsed)]
    assert names[0] == "none" and len(names) == 7  # baseline + 3 kinds x 2 strengths
    cells = spec_module.cells(parsed)  # two board sizes, 6,000 env steps per board cell
    assert [(cell.label, cell.spec.budget) for cell in cells] == [("board=6", 216_000), ("board=10", 600_000)]
    assert [cell.spec.budget for cell in spec_module.cells(spec_module.quick(parsed))] == [18_000, 50_000]


EXAMPLES = sorted((Path(__file__).parents[1] / "examples").glob("*.toml"))


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda path: path.name)
def test_every_shipped_example_is_a_valid_spec(example: Path) -> None:
    parsed = spec_module.load(example)
    assert parsed.name and spec_module.conditions(parsed)[0].name == "none"


def test_every_problem_is_reported_with_its_toml_path(tmp_path: Path) -> None:
    bad = TINY_SPEC.replace("seeds = 2", "seeds = 2\ncolour = 1").replace("rows = 6", "rows = 3")
    bad = bad.replace("strengths = [1e-3, 1e-2]", "strengths = [1e-3, -1e-2]\n[[regularizers]]\nkind = 'l3'")
    bad += "[[regularizers]]\nkind = 'dropout'\nstrengths = [1.5]\n"
    with pytest.raises(spec_module.SpecError) as caught:
        spec_module.parse(bad)
    # the pydantic stage: shape and types
    assert caught.value.problems == [
        ("regularizers[0].strengths", "must be > 0 (got -0.01)"),
        ("regularizers[1].strengths", "required; add it"),
        ("colour", "unknown key; remove it or check its spelling"),
    ]
    bad = bad.replace("-1e-2", "1e-2").replace("kind = 'l3'", "kind = 'l3'\nstrengths = [1]").replace("colour = 1", "")
    with pytest.raises(spec_module.SpecError) as caught:
        spec_module.parse(bad)
    # the semantic stage: the task's configuration and the regularizers
    assert caught.value.problems == [
        ("config.env.rows", "must be an integer between 4 and 64 (got 3)"),
        ("regularizers[1].kind", "unknown regularizer 'l3'; choose one of " + ", ".join(spec_module.regs.KINDS)),
        ("regularizers[2].strengths", "a dropout rate must be in [0, 1) (got 1.5)"),
    ]


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        (('task = "snake-ppo"', 'task = "chess"'), ("task", "unknown task 'chess'; choose one of snake-ppo")),
        (("budget = 15_360", "budget = 100"), ("budget", "must be at least one update")),
        (("seeds = 2", "seeds = 0"), ("seeds", "must be >= 1 (got 0)")),
        (("minibatches = 2", "minibatches = 3"), ("config.ppo.minibatches", "must divide num_envs * rollout_steps")),
        (('observation = "features"', 'observation = "features"\nfood = 2'), ("config.env.food", "unknown key")),
        (("hidden = [16]", 'hidden = [16]\ntorso = "cnn"'), ("config.network.torso", "a cnn needs grid")),
        (("epochs = 1", "epochs = 1\ntotal_updates = 3"), ("config.ppo.total_updates", "set by the study")),
        (("score = [1, 2]", 'score = "soon"'), ("thresholds.score", 'must be "auto" or a list of finite numbers')),
        (("score = [1, 2]", "lenght = [1]"), ("thresholds.lenght", "unknown metric")),
        (("score = [1, 2]", "score = [1, nan]"), ("thresholds.score", 'must be "auto" or a list of finite numbers')),
        (("epochs = 1", "epochs = 1\nclip_eps = nan"), ("config.ppo.clip_eps", "must be a finite number (got nan)")),
        (("epochs = 1", "epochs = 1\nentropy_coef = inf"), ("config.ppo.entropy_coef", "must be a finite number")),
        (("rows = 6", "rows = 6\nreward_food = nan"), ("config.env.reward_food", "must be a finite number")),
        (("chunk_updates = 4", "chunk_updates = 4\nmemory_cap_gb = inf"), ("execution.memory_cap_gb", "must be a")),
        (("strengths = [1e-3, 1e-2]", "strengths = [1e-3, nan]"), ("regularizers[0].strengths[1]", "must be a finite")),
        (("strengths = [1e-3, 1e-2]", "strengths = [1e-3, 1e-3]"), ("regularizers[0].strengths", "lists 0.001 twice")),
        (("hidden = [16]", "hidden = [1000000, 1000000]"), ("execution.memory_cap_gb", "one run needs about 111,")),
        (("seeds = 2", "seeds = 1000000000"), ("seeds", "must be <= 10000")),
        (("seeds = 2", "seeds = 2\nfirst_seed = 9223372036854775807"), ("first_seed", "must be <= 2147473647")),
        (("budget = 15_360", "budget = 1000000000000000"), ("budget", "must be <= 1000000000000")),
        (("episodes = 4", "episodes = 1000000000"), ("evaluation.episodes", "must be <= 100000")),
        (("rows = 6", "rows = 6\nwindow_size = 100001"), ("config.env.window_size", "must be an odd integer from 3")),
        (("[1e-3, 1e-2]", "{low = 1e-4, high = 1e-2, num = 10000}"), ("regularizers[0].strengths.num", "must be <=")),
        (
            ("strengths = [1e-3, 1e-2]", "strengths = [1e-3, 1.0000001e-3]"),
            ("regularizers[0].strengths", "0.0010000001 and 0.001 are both named l2@0.001"),
        ),
        (('kind = "l2"', 'kind = "none"'), ("regularizers[0].kind", "the baseline (none) is always included")),
        # levels: no room for the snake, a negative count, a held-out set that overlaps the training set
        (("rows = 6", "rows = 6\nobstacle_density = 0.3"), ("config.env.obstacle_density", "must be in [0, 0.25]")),
        (("rows = 6", "rows = 6\nlevels = -1"), ("config.env.levels", "must be an integer from 0 to")),
        (
            ("rows = 6", "rows = 6\nlevels = 10\nheld_out_level_offset = 8"),
            ("config.env.held_out_level_offset", "8 is inside the training levels 0 .. 9; use a held-out offset of"),
        ),
        (
            ("rows = 6", "rows = 6\nlevels = 10\nlevel_seed_offset = 3\nheld_out_level_offset = 0"),
            ("config.env.held_out_level_offset", "the held-out levels 0 .. 3 overlap the training levels 3 .. 12"),
        ),
        (("score = [1, 2]", "test_levels_score = [1]"), ("thresholds.test_levels_score", "measured only in a world")),
        (
            ("strengths = [1e-3, 1e-2]", "strengths = {low = 1e-2, high = 1e-3, num = 2}"),
            ("regularizers[0].strengths", "low must be <= high"),
        ),
        # strict types: a bool is not an integer, a string is not a number, a float is not an integer
        (("seeds = 2", "seeds = true"), ("seeds", "must be an integer (got True)")),
        (("seeds = 2", 'seeds = "2"'), ("seeds", "must be an integer (got '2')")),
        (("seeds = 2", "seeds = 2.0"), ("seeds", "must be an integer (got 2.0)")),
        (("seeds = 2", "seeds = 2\nfirst_seed = false"), ("first_seed", "must be an integer (got False)")),
        (("budget = 15_360", 'budget = "15360"'), ("budget", "must be an integer (got '15360')")),
        (("rows = 6", 'rows = "6"'), ("config.env.rows", "must be an integer (got '6')")),
        (("rows = 6", "rows = true"), ("config.env.rows", "must be an integer (got True)")),
        (("rows = 6", 'rows = 6\nreward_food = "1"'), ("config.env.reward_food", "must be a number (got '1')")),
        (("rows = 6", "rows = 6\nstarvation_limit = true"), ("config.env.starvation_limit", "must be an integer (got")),
        (('observation = "features"', "observation = 1"), ("config.env.observation", "must be a string (got 1)")),
        (("hidden = [16]", 'hidden = ["16"]'), ("config.network.hidden[0]", "must be an integer (got '16')")),
        (("hidden = [16]", "hidden = [true]"), ("config.network.hidden[0]", "must be an integer (got True)")),
        (("hidden = [16]", 'hidden = "16"'), ("config.network.hidden", "must be a list (got '16')")),
        (("hidden = [16]", "hidden = [16]\nshared_torso = 1"), ("config.network.shared_torso", "must be true or")),
        (("epochs = 1", 'epochs = "1"'), ("config.ppo.epochs", "must be an integer (got '1')")),
        (("epochs = 1", "epochs = 1\nclip_eps = true"), ("config.ppo.clip_eps", "must be a number (got True)")),
        (("epochs = 1", "epochs = 1\nlearning_rate = true"), ("config.ppo.learning_rate", "must be a number > 0")),
        (("[1e-3, 1e-2]", "[1e-3, true]"), ("regularizers[0].strengths[1]", "must be a number (got True)")),
        (("[1e-3, 1e-2]", '[1e-3, "1e-2"]'), ("regularizers[0].strengths[1]", "must be a number (got '1e-2')")),
        (("[1e-3, 1e-2]", "{low = 1e-4, high = 1e-2, num = true}"), ("regularizers[0].strengths.num", "must be an")),
        (('kind = "l2"', 'kind = "l2"\ninclude_biases = 1'), ("regularizers[0].include_biases", "must be true or")),
        (("episodes = 4", 'episodes = "4"'), ("evaluation.episodes", "must be an integer (got '4')")),
        (("chunk_updates = 4", "chunk_updates = true"), ("execution.chunk_updates", "must be an integer (got True)")),
        (("score = [1, 2]", "score = [true, 2]"), ("thresholds.score", 'must be "auto" or a list of finite numbers')),
        (("chunk_updates = 4", "chunk_updates = 4\nmax_seeds = 8"), ("execution.max_seeds", "only a sequential study")),
        (
            ("chunk_updates = 4", "chunk_updates = 4\nsequential = true\nmax_seeds = 5"),
            ("execution.max_seeds", "a sequential study needs a multiple of seeds (2) larger than it"),
        ),
        (
            ("chunk_updates = 4", "chunk_updates = 4\nsequential = true"),
            ("execution.max_seeds", "a sequential study needs a multiple of seeds (2)"),
        ),
    ],
)
def test_one_clear_message_per_problem(change: tuple[str, str], problem: tuple[str, str]) -> None:
    assert change[0] in TINY_SPEC
    with pytest.raises(spec_module.SpecError) as caught:
        spec_module.parse(TINY_SPEC.replace(*change))
    assert len(caught.value.problems) == 1
    path, message = caught.value.problems[0]
    assert path == problem[0] and message.startswith(problem[1]), caught.value.problems


def test_a_sequential_study_needs_thresholds_fixed_in_advance() -> None:
    auto = TINY_SPEC.replace("score = [1, 2]", 'score = "auto"')
    auto = auto.replace("chunk_updates = 4", "chunk_updates = 4\nsequential = true\nmax_seeds = 4")
    with pytest.raises(ConfigError) as refused:
        spec_module.parse(auto)
    assert refused.value.problems == [
        ("thresholds.score", 'a sequential study decides against thresholds fixed in advance ("auto" moves as '
         "seeds arrive): give numbers, e.g. from a fixed study of the same task"),
    ]  # fmt: skip
    assert spec_module.parse(auto.replace('score = "auto"', "score = [1, 2]")).looks() == [2, 4]


@pytest.mark.parametrize(
    ("name", "content", "problem"),
    [
        ("utf16.toml", TINY_SPEC.encode("utf-16"), "is not UTF-8 text"),
        ("latin1.toml", ("# caf\xe9\n" + TINY_SPEC).encode("latin-1"), "is not UTF-8 text"),
        ("binary.toml", bytes(range(128, 256)) * 8, "is not UTF-8 text"),
        ("deep.toml", ("x = " + "[" * 5000 + "]" * 5000).encode(), "nested too deeply to be a spec"),
        ("huge.toml", b"# " + b"x" * 1_000_001, "is larger than 1,000,000 bytes"),
    ],
)
def test_spec_files_that_are_not_a_short_utf8_toml_file_are_one_clear_line(
    tmp_path: Path, name: str, content: bytes, problem: str
) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    result = CliRunner().invoke(app, ["study", str(path), "--out", str(tmp_path / "out")])
    assert result.exit_code == 2 and problem in result.output and "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) == 1 and not (tmp_path / "out").exists()


def test_log_grid_of_strengths() -> None:
    spec = spec_module.parse(TINY_SPEC.replace("[1e-3, 1e-2]", "{ low = 1e-4, high = 1e-2, num = 3 }"))
    assert [c.name for c in spec_module.conditions(spec)] == ["none", "l2@0.0001", "l2@0.001", "l2@0.01"]


def test_bad_spec_on_the_command_line_is_one_block_and_exit_2(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(TINY_SPEC.replace("strengths = [1e-3, 1e-2]", "strengths = [-1e-4]"))
    result = CliRunner().invoke(app, ["study", str(path), "--out", str(tmp_path / "out")])
    assert result.exit_code == 2
    assert "regularizers[0].strengths: must be > 0 (got -0.0001)" in result.output
    assert "Traceback" not in result.output and not (tmp_path / "out").exists()
    path.write_text(TINY_SPEC.replace("epochs = 1", "epochs = 1\nclip_eps = nan"))
    result = CliRunner().invoke(app, ["study", str(path), "--out", str(tmp_path / "out")])
    assert result.exit_code == 2 and "config.ppo.clip_eps: must be a finite number (got nan)" in result.output
    assert not (tmp_path / "out").exists()  # validated before anything is written: the folder never gets stuck
    missing = CliRunner().invoke(app, ["study", str(tmp_path / "nope.toml")])
    assert missing.exit_code == 2 and "is not a file" in missing.output


def test_plan_groups_by_compiled_code_and_splits_to_fit_the_memory_cap() -> None:
    spec = tiny_spec()
    batches = runner.plan(spec).batches
    assert [(batch.regularizer.kind, [(run.condition, run.seed) for run in batch.runs]) for batch in batches] == [
        ("none", [("none", 0), ("none", 1)]),
        ("l2", [("l2@0.001", 0), ("l2@0.001", 1), ("l2@0.01", 0), ("l2@0.01", 1)]),
    ]
    per_run = spec_module.learner_of(spec).bytes_per_run(spec_module.setup(spec, batches[1].regularizer).config)
    cap = spec.execution.model_copy(update={"memory_cap_gb": 3.5 * per_run / 2**30})
    capped = runner.plan(spec.model_copy(update={"execution": cap}))
    assert [len(batch.runs) for batch in capped.batches] == [2, 2, 2]  # 4 runs, at most 3 fit: two equal batches
    assert capped.largest_batch_estimate_gb <= cap.memory_cap_gb


# -------------------------------------------------------------------------------- store


@pytest.mark.slow  # the tiny study fixture: about 20 s
def test_store_holds_every_run_curve_and_the_plan(reference: Path) -> None:
    with store_module.Store.open(reference) as store:
        runs = store.runs()
        assert [(r.condition, r.seed, r.status) for r in runs] == [
            (c, s, "finished") for c in ("none", "l2@0.001", "l2@0.01") for s in (0, 1)
        ]
        assert [b.conditions for b in store.batches()] == [["none"], ["l2@0.001", "l2@0.01"]]
        assert all(b.updates_done == b.total_updates == 120 for b in store.batches())
        score = {curve.condition: curve for curve in results.curves(store, "score")}
        assert score["none"].values.shape[0] == 2 and score["none"].steps[-1] == 120 * 128
        evaluation = results.curves(store, "eval_score")[0]
        np.testing.assert_array_equal(evaluation.steps, np.arange(0, 121, 8) * 128)
        assert np.isfinite(evaluation.values).all()
        meta = store.meta()
        assert "jax" in meta["versions"] and meta["spec_toml"] == TINY_SPEC
    # one checkpoint per batch remains: the final one
    assert sorted(checkpoints(reference)) == ["batch-0000-update-0000120.npz", "batch-0001-update-0000120.npz"]


@pytest.mark.slow  # the tiny study fixture: about 20 s
def test_load_reads_the_study_once_as_plain_data(reference: Path) -> None:
    with store_module.Store.open(reference) as store:
        data = results.load(store)
        for metric, per_condition in data.curves.items():
            for loaded, direct in zip(per_condition, results.curves(store, metric), strict=True):
                assert (loaded.condition, loaded.seeds) == (direct.condition, direct.seeds)
                np.testing.assert_array_equal(loaded.steps, direct.steps)
                np.testing.assert_array_equal(loaded.values, direct.values)
        assert results.speed_metrics(store) == data.speed_metrics
        only_score = results.load(store, ("score", "not_recorded"))
    speed = ("score", "steps", "eval_score", "eval_steps")
    assert data.speed_metrics == speed
    mechanisms = {"dormant_fraction", "dormant_fraction_0025", "feature_srank", "effective_lr"}
    assert set(data.curves) == {*speed, "weight_l2", "near_zero_fraction", "grad_cosine", *mechanisms}  # diagnostics
    assert list(only_score.curves) == ["score"]
    assert (data.name, data.task, data.budget_steps, data.step_unit) == ("tiny", "snake-ppo", 120 * 128, "env steps")
    assert data.thresholds == {"score": [1.0, 2.0]}
    assert [(c.name, c.kind, c.strength) for c in data.conditions] == [
        ("none", "none", 0.0),
        ("l2@0.001", "l2", 1e-3),
        ("l2@0.01", "l2", 1e-2),
    ]
    assert data.conditions[1].regularizer["kind"] == "l2"
    assert [(r.condition, r.seed, r.status, r.progress, r.error) for r in data.runs] == [
        (c, s, "finished", 1.0, None) for c in ("none", "l2@0.001", "l2@0.01") for s in (0, 1)
    ]
    assert data.spec_toml == TINY_SPEC and data.wall_seconds > 0 and "jax" in data.versions
    assert data.watchable and data.label("score") == "training score (food per episode)"


def test_a_chunk_with_two_evaluations_stores_both() -> None:
    # the first chunk of a batch evaluates at update 0 and, when chunk == eval_every, at its end
    evaluations = [(0, {"eval_score": np.array([1.0, 2.0])}), (8, {"eval_score": np.array([3.0, np.nan])})]
    outcome = runner.ChunkOutcome(0, 8, 16, 100, {"score": np.ones((2, 8))}, evaluations, {}, {}, 1.0)
    positions, steps, values = runner._chunk_curves(outcome, np.array([True, True]))["eval_score"]
    np.testing.assert_array_equal(positions, [0, 1, 0])
    np.testing.assert_array_equal(steps, [0, 0, 800])
    np.testing.assert_array_equal(values, [1.0, 2.0, 3.0])


@pytest.mark.slow  # the tiny study fixture: about 20 s
def test_finished_study_is_not_recomputed(reference: Path) -> None:
    before = store_contents(reference)
    stamp = (reference / store_module.DATABASE).stat().st_mtime_ns
    outcome = runner.run(tiny_spec(), reference, TINY_SPEC)
    assert outcome.already_finished
    assert store_contents(reference) == before
    assert (reference / store_module.DATABASE).stat().st_mtime_ns == stamp


@pytest.mark.slow
def test_running_a_finished_study_from_the_command_line_says_so(reference: Path, tmp_path: Path) -> None:
    spec_path = tmp_path / "tiny.toml"
    spec_path.write_text(TINY_SPEC)
    result = CliRunner().invoke(app, ["study", str(spec_path), "--out", str(reference)])
    assert result.exit_code == 0, result.output
    assert "this study is already finished; nothing to do" in result.output
    changed = CliRunner().invoke(app, ["study", "--out", str(reference)])  # the default spec
    assert changed.exit_code == 2 and "error: spec: differs from the one" in changed.output


@pytest.mark.slow  # the tiny study fixture: about 20 s
def test_changed_spec_is_refused_saying_what_differs(reference: Path) -> None:
    changed = spec_module.parse(TINY_SPEC.replace("budget = 15_360", "budget = 16_384"))
    with pytest.raises(ConfigError, match=r"budget: stored 15360, given 16384"):
        runner.run(changed, reference, TINY_SPEC)
    learning_rate = spec_module.parse(TINY_SPEC.replace("epochs = 1", "epochs = 1\nlearning_rate = 3e-4"))
    with pytest.raises(ConfigError, match=r"config.ppo.learning_rate: stored 0.001, given 0.0003"):
        runner.run(learning_rate, reference, TINY_SPEC)
    # the same study written differently (a default made explicit) is not a change
    explicit = spec_module.parse(TINY_SPEC.replace("epochs = 1", "epochs = 1\ngamma = 0.99"))
    assert runner.run(explicit, reference, TINY_SPEC).already_finished
    margin = spec_module.parse(TINY_SPEC + "[analysis]\nmargin = 1.2\n")
    with pytest.raises(ConfigError, match=r"analysis.margin: stored 1.1, given 1.2"):
        runner.run(margin, reference, TINY_SPEC)


@pytest.mark.slow  # the tiny study fixture: about 20 s
def test_a_store_written_before_the_analysis_table_existed_resumes_and_reads_its_default(
    reference: Path, tmp_path: Path
) -> None:
    folder = tmp_path / "older"
    shutil.copytree(reference, folder)
    with sqlite3.connect(folder / store_module.DATABASE) as connection:
        (text,) = connection.execute("SELECT value FROM meta WHERE key = 'spec_json'").fetchone()
        older = json.loads(text)
        del older["analysis"]
        connection.execute("UPDATE meta SET value = ? WHERE key = 'spec_json'", (json.dumps(older),))
    connection.close()
    assert runner.run(tiny_spec(), folder, TINY_SPEC).already_finished  # not "the spec differs"
    with store_module.Store.open(folder) as store:
        assert results.load(store).margin == 1.1


@pytest.mark.slow  # the tiny study fixture: about 20 s
def test_a_second_process_is_refused_by_the_lock(reference: Path) -> None:
    holder = subprocess.Popen([sys.executable, "-c", LOCK_HOLDER, str(reference)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        with pytest.raises(ConfigError, match=rf"in use by process {holder.pid}; wait for it"):
            runner.run(tiny_spec(), reference, TINY_SPEC)
    finally:
        holder.kill()
        holder.wait()
    assert runner.run(tiny_spec(), reference, TINY_SPEC).already_finished  # released when its holder died


LOCK_HOLDER = """
import sys, time
from pathlib import Path
from regspeed.study import store
with store.locked(Path(sys.argv[1])):
    print("locked", flush=True)
    time.sleep(60)
"""


@pytest.mark.slow
def test_study_killed_mid_batch_resumes_to_the_uninterrupted_result(reference: Path, tmp_path: Path) -> None:
    spec_path = tmp_path / "tiny.toml"
    spec_path.write_text(TINY_SPEC)
    folder = tmp_path / "killed"
    stopped_at = kill_mid_batch(spec_path, folder)
    assert 0 < stopped_at < 120, "the kill should land inside the first batch"
    # a partial study gets a report of what exists, incomplete conditions marked
    partial = report.write(folder)
    assert "Incomplete conditions (runs still pending or running): none, l2@0.001, l2@0.01" in (
        partial.markdown_path.read_text()
    )
    assert "baseline (incomplete)" in partial.html_path.read_text()
    outcome = runner.run(tiny_spec(), folder, TINY_SPEC)
    assert not outcome.already_finished
    assert store_contents(folder) == store_contents(reference)
    resumed, uninterrupted = checkpoints(folder), checkpoints(reference)
    assert resumed.keys() == uninterrupted.keys()
    for name in resumed:
        for leaf in resumed[name]:
            np.testing.assert_array_equal(resumed[name][leaf], uninterrupted[name][leaf], err_msg=f"{name}/{leaf}")


@pytest.mark.slow
def test_ray_backend_gives_the_same_store(reference: Path, tmp_path: Path) -> None:
    import ray  # the ray extra is part of `make test`: missing, this test fails rather than skips

    assert not ray.is_initialized()  # the runner starts its own (loopback-only) Ray, as `regspeed study` does
    try:
        outcome = runner.run(tiny_spec(), tmp_path, TINY_SPEC, backend="ray", backend_options={"cpus_per_batch": 1})
    finally:
        ray.shutdown()
    assert outcome.runs_total == 6 and not outcome.already_finished
    assert store_contents(tmp_path) == store_contents(reference)


@pytest.mark.slow  # the tiny study fixture: about 20 s
def test_status_and_export(reference: Path, tmp_path: Path) -> None:
    cli = CliRunner()
    status = cli.invoke(app, ["status", str(reference)], env={"COLUMNS": "80"})
    assert status.exit_code == 0 and "l2@0.01" in status.output
    assert "…" not in status.output and max(len(line) for line in status.output.splitlines()) <= 80
    assert "eval" in status.output and "score" in status.output  # a long header wraps between its words
    csv_path = tmp_path / "curves.csv"
    assert cli.invoke(app, ["export", str(reference), "--out", str(csv_path)]).exit_code == 0
    lines = csv_path.read_text().splitlines()
    assert lines[0] == "condition,seed,metric,step,value"
    assert len(lines) - 1 == len(store_contents(reference)["curves"])
    npz_path = tmp_path / "score.npz"
    arguments = ["export", str(reference), "--format", "npz", "--metric", "eval_score", "--out", str(npz_path)]
    exported = cli.invoke(app, arguments)
    assert exported.exit_code == 0
    with np.load(npz_path) as data:
        assert sorted(data) == sorted(["steps", "none", "l2@0.001", "l2@0.01"])
        assert data["none"].shape == (2, 1, 16)  # runs x tasks x evaluation points
    missing = cli.invoke(app, ["status", str(tmp_path / "nothing")])
    assert missing.exit_code == 2 and "holds no study" in missing.output
    bad_format = cli.invoke(app, ["export", str(reference), "--format", "xlsx"])
    assert bad_format.exit_code == 2 and "format: must be one of csv, npz" in bad_format.output


@pytest.mark.slow
def test_a_diverging_run_is_stored_as_failed_and_its_batch_mate_finishes(tmp_path: Path) -> None:
    # decoupled decay of strength 1e30 multiplies the weights by about -1e27 per step: the
    # second minibatch of the first update already sees astronomically large logits
    diverging = TINY_SPEC.replace('kind = "l2"', 'kind = "weight_decay"').replace("[1e-3, 1e-2]", "[1e-3, 1e30]")
    diverging = diverging.replace("budget = 15_360", "budget = 2_048")
    outcome = runner.run(spec_module.parse(diverging), tmp_path, diverging)
    assert outcome.runs_failed == 2
    with store_module.Store.open(tmp_path) as store:
        runs = {(run.condition, run.seed): run for run in store.runs()}
        weights = store.curve("weight_l2")
    for seed in (0, 1):
        failed, healthy = runs["weight_decay@1e+30", seed], runs["weight_decay@0.001", seed]
        assert failed.status == "failed" and failed.error == "policy_loss became nan at update 1"
        assert healthy.status == "finished" and healthy.error is None
        assert len(weights[healthy.run_id][0]) == 16  # every update recorded
        assert len(weights.get(failed.run_id, ([],))[0]) < 4  # nothing after it failed
    summary = CliRunner().invoke(app, ["status", str(tmp_path)])
    assert "weight_decay@1e+30 seed 0 failed: policy_loss became nan at update 1" in summary.output


@pytest.mark.slow
def test_a_study_with_levels_answers_on_held_out_levels_and_reports_the_gap(tmp_path: Path) -> None:
    """Levels end to end: the store records the level curves, the held-out threshold is the
    primary comparison, the report has the fitting-vs-generalization table, and `watch`
    draws the level's walls."""
    levels_spec = TINY_SPEC.replace('observation = "features"', 'observation = "features"\nlevels = 3\n'
                                    "obstacle_density = 0.2").replace("strengths = [1e-3, 1e-2]", "strengths = [1e-2]")
    levels_spec = levels_spec.replace("score = [1, 2]", "test_levels_score = [0.5]\ntrain_levels_score = [0.5]")
    folder = tmp_path / "levels"
    runner.run(spec_module.parse(levels_spec), folder, levels_spec)
    with store_module.Store.open(folder) as store:
        assert {"test_levels_score", "train_levels_score", "levels_gap"} <= set(store.metric_names())
        assert results.speed_metrics(store)[4:6] == ("test_levels_score", "train_levels_score")
    written = report.write(folder)
    summary = (folder / "summary.md").read_text()
    assert "## Fitting vs generalization" in summary and "| l2@0.01 |" in summary.split("## Fitting")[1]
    assert "held-out levels" in summary and written.analysis.primary["l2@0.01"].metric == "test_levels_score"
    options = ["--condition", "none", "--seed", "0", "--max-steps", "5", "--delay", "0"]
    shown = CliRunner().invoke(app, ["watch", str(folder), *options])
    assert shown.exit_code == 0, shown.output
    board = shown.output.split("\n")
    assert any("#" in line.strip("#") for line in board if line.startswith("#")), shown.output  # a wall inside


# ------------------------------------------------------------------------------- factors

FACTOR_SPEC = TINY_SPEC.replace("budget = 15_360", "budget = { board = { 5 = 7_680, 6 = 15_360 } }") + """
[factors]
board = [5, 6]
network.hidden = [[8], [16]]
"""


def test_factors_expand_to_cells_each_a_study_of_its_own() -> None:
    """The grid of cells, first factor slowest; each cell's spec has the values applied and
    its budget from the table; the conditions are the same in every cell."""
    cells = spec_module.cells(spec_module.parse(FACTOR_SPEC))
    assert [cell.label for cell in cells] == [
        "board=5, network.hidden=[8]", "board=5, network.hidden=[16]",
        "board=6, network.hidden=[8]", "board=6, network.hidden=[16]",
    ]  # fmt: skip
    first = cells[0].spec
    assert (first.config["env"]["rows"], first.config["env"]["cols"], first.config["network"]["hidden"]) == (5, 5, [8])
    assert [cell.spec.budget for cell in cells] == [7_680, 7_680, 15_360, 15_360]
    assert not first.factors and cells[3].values == {"board": 6, "network.hidden": [16]}
    assert spec_module.cells(tiny_spec())[0].label == "all"
    per_cell = FACTOR_SPEC.replace("budget = { board = { 5 = 7_680, 6 = 15_360 } }", "budget = { per_cell = 512 }")
    assert [cell.spec.budget for cell in spec_module.cells(spec_module.parse(per_cell))] == [12_800] * 2 + [18_432] * 2
    assert spec_module.quick(spec_module.parse(FACTOR_SPEC)).budget == {"board": {"5": 640, "6": 1_280}}
    mixed = FACTOR_SPEC.replace("5 = 7_680", "5 = { per_cell = 512 }")  # an entry may be a rule per board cell
    assert [cell.spec.budget for cell in spec_module.cells(spec_module.parse(mixed))] == [12_800] * 2 + [15_360] * 2
    assert spec_module.quick(spec_module.parse(mixed)).budget == {"board": {"5": {"per_cell": 42}, "6": 1_280}}


def test_algorithm_as_a_factor_picks_the_task_and_its_table() -> None:
    text = FACTOR_SPEC.replace("[factors]", '[config.dqn]\nnum_envs = 4\n[factors]\nalgorithm = ["ppo", "dqn"]')
    cells = spec_module.cells(spec_module.parse(text))
    assert [cell.spec.task for cell in cells] == ["snake-ppo"] * 4 + ["snake-dqn"] * 4  # the first factor slowest
    assert "dqn" not in cells[0].spec.config and "ppo" not in cells[-1].spec.config


@pytest.mark.parametrize(
    ("change", "problems"),
    [
        (("board = [5, 6]", "board = [5, 3]"), [
            ("budget.board", "has no budget for 3"), ("budget.board.6", "is not a value of the factor"),
            ("factors.board[1]", "must be an integer between 4 and 64 (got 3)"),
        ]),
        (("board = [5, 6]", "board = [5, 6]\nenv.colour = [1, 2]"), [
            ("factors.env.colour", "names no field of the task's configuration; check its spelling"),
        ]),
        (("hidden = [[8], [16]]", "hidden = []"), [("factors.network.hidden", "give at least one value")]),
        (("hidden = [[8], [16]]", "hidden = [8]"), [
            ("factors.network.hidden[0]", "must be a list (got 8)"),
        ]),
        (("hidden = [[8], [16]]", "hidden = [[8], [8]]"), [("factors.network.hidden", "lists [8] twice")]),
        (("hidden = [[8], [16]]", "hidden = 8"), [("factors.network.hidden", "must be a list of values")]),
        (("5 = 7_680", "5 = { per_cell = 0 }"), [
            ("budget.board.5.per_cell", "must be a positive integer: env steps per board cell (got 0)"),
        ]),
        (("5 = 7_680", "5 = 100"), [
            ("budget", "in cell board=5, network.hidden=[8]: must be at least one update"),
            ("budget", "in cell board=5, network.hidden=[16]: must be at least one update"),
        ]),
        (("board = [5, 6]", 'board = [5, 6]\nalgorithm = ["ppo", "dqn"]\nppo.epochs = [1, 2]'), [
            ("factors.ppo.epochs", "sets one algorithm's table while algorithm is a factor too"),
        ]),
        (("chunk_updates = 4", "chunk_updates = 4\nsequential = true\nmax_seeds = 4"), [
            ("execution.sequential", "a study with factors runs a fixed number of seeds per cell"),
        ]),
    ],
)
def test_factor_problems_name_the_factor_and_the_value(change: tuple[str, str], problems: list) -> None:
    """Each problem once, at the factor (and the value's index) that causes it."""
    assert change[0] in FACTOR_SPEC
    with pytest.raises(spec_module.SpecError) as caught:
        spec_module.parse(FACTOR_SPEC.replace(*change))
    found = caught.value.problems
    assert len(found) == len(problems), found
    for (path, message), (want_path, want_start) in zip(found, problems, strict=True):
        assert path == want_path and message.startswith(want_start), found


TWO_CELLS = TINY_SPEC.replace("budget = 15_360", "budget = { per_cell = 256 }").replace(
    "strengths = [1e-3, 1e-2]", "strengths = [1e-2]"
) + "\n[factors]\nboard = [5, 6]\n"


@pytest.mark.slow
def test_a_study_with_factors_killed_mid_batch_resumes_to_the_uninterrupted_result(tmp_path: Path) -> None:
    """Cells in one store: killed inside the first cell's first batch, resumed, it equals the
    uninterrupted study (runs, batches, curves, cells); each cell reads as a study of its own."""
    spec_path = tmp_path / "cells.toml"
    spec_path.write_text(TWO_CELLS)
    reference = tmp_path / "reference"
    runner.run(spec_module.parse(TWO_CELLS), reference, TWO_CELLS)
    folder = tmp_path / "killed"
    assert kill_mid_batch(spec_path, folder) > 0
    runner.run(spec_module.parse(TWO_CELLS), folder, TWO_CELLS)
    assert store_contents(folder) == store_contents(reference)
    with store_module.Store.open(folder) as store, store_module.Store.open(reference) as other:
        assert store.cells() == other.cells() and [cell.label for cell in store.cells()] == ["board=5", "board=6"]
        per_cell = [results.load(store, cell=index) for index in (0, 1)]
    assert [data.budget_steps for data in per_cell] == [25 * 256 // 128 * 128, 36 * 256 // 128 * 128]
    assert [len(data.runs) for data in per_cell] == [4, 4] and per_cell[1].cell == "board=6"
    assert {run.condition for run in per_cell[0].runs} == {"none", "l2@0.01"}
