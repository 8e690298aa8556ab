"""Changing worlds: phases, and what changes at each boundary (``envs/schedule.py``)."""

from __future__ import annotations

from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import tiny
from conftest import leaves_equal
from hypothesis import given
from hypothesis import strategies as st
from typer.testing import CliRunner

from regspeed.cli import app
from regspeed.envs import schedule
from regspeed.errors import ConfigError, ConfigProblemsError
from regspeed.learn import checkpoint, common
from regspeed.learn import driver as training
from regspeed.learn import regularizers as regs


@given(st.integers(0, 2**32 - 1), st.integers(3, 4), st.integers(2, 40), st.integers(2, 12))
def test_every_later_phase_permutes_and_every_action_changes_meaning(
    seed: int, actions: int, observations: int, phases: int
) -> None:
    both = schedule.Schedule(1024, ("actions", "observations"), seed)
    world = schedule.tables(both, actions, observations, phases)
    assert (world.actions[0] == np.arange(actions)).all() and (world.observations[0] == np.arange(observations)).all()
    for phase in range(1, phases):
        assert sorted(world.actions[phase]) == list(range(actions))
        assert not np.any(world.actions[phase] == np.arange(actions))  # a derangement
        assert sorted(world.observations[phase]) == list(range(observations))
    more = schedule.tables(both, actions, observations, phases + 3)
    assert (more.actions[:phases] == world.actions).all() and (more.observations[:phases] == world.observations).all()


def test_only_the_declared_changes_happen() -> None:
    world = schedule.tables(schedule.Schedule(8, ("observations",), 7), 3, 11, 5)
    assert (world.actions == np.arange(3)).all()
    assert not (world.observations[1:] == np.arange(11)).all(axis=1).any()  # 11! permutations: never identity here


def test_derangements_are_uniform() -> None:
    """Each of the 2 derangements of 3 actions and the 9 of 4 about equally often."""
    generator = np.random.default_rng(0)
    for n, count in ((3, 2), (4, 9)):
        seen = [tuple(schedule.derangement(generator, n)) for _ in range(9_000)]
        frequencies = np.array([seen.count(p) for p in set(seen)]) / len(seen)
        assert len(frequencies) == count and np.abs(frequencies - 1 / count).max() < 0.02


def test_the_agent_sees_the_permuted_observation_and_acts_through_the_permutation() -> None:
    world = schedule.WorldTables(np.array([[0, 1, 2], [2, 0, 1]]), np.array([[0, 1, 2, 3], [3, 2, 1, 0]]))
    observation = jnp.arange(8.0).reshape(2, 4)  # a batch of two
    assert (schedule.seen(world, jnp.asarray(1), observation, (4,)) == observation[:, ::-1]).all()
    assert (schedule.seen(world, jnp.asarray(0), observation, (4,)) == observation).all()
    grid = jnp.arange(4.0).reshape(1, 2, 2)  # one (1, 2, 2) observation: every number permuted
    swapped = schedule.WorldTables(world.actions, np.array([np.arange(4), [1, 0, 3, 2]]))
    assert (schedule.seen(swapped, jnp.asarray(1), grid, (1, 2, 2)) == jnp.array([[[1.0, 0], [3, 2]]])).all()
    assert int(schedule.carried_out(world, jnp.asarray(1), jnp.asarray(0))) == 2
    assert [int(schedule.phase_of(jnp.asarray(u), 10, 3)) for u in (0, 9, 10, 29, 30, 99)] == [0, 0, 1, 2, 2, 2]


@pytest.mark.parametrize(
    ("fields", "problem"),
    [
        ({"phase_steps": -1}, "phase_steps: must be an integer >= 0"),
        ({"phase_steps": 100}, "changes: give what changes every 100 env steps"),
        ({"changes": ("actions",)}, "phase_steps: give the env steps per phase"),
        ({"phase_steps": 100, "changes": ("rules",)}, "changes: unknown change 'rules'"),
        ({"phase_steps": 100, "changes": ("actions", "actions")}, "changes: lists a change twice"),
        ({"phase_steps": 100, "changes": ("actions",), "seed": -1}, "seed: must be an integer from 0"),
    ],
)
def test_a_bad_schedule_is_one_clear_problem(fields: dict, problem: str) -> None:
    with pytest.raises(ConfigError) as caught:
        schedule.Schedule(**fields)
    assert str(caught.value).startswith(problem)


def test_phases_are_whole_updates() -> None:
    changing = schedule.Schedule(8192 * 5, ("actions",))
    assert changing.phase_updates(8192) == 5 and changing.phases(73, 8192) == 15
    assert schedule.Schedule().phases(73, 8192) == 1
    whole = "must be a whole number of updates .8,192 env steps each; got 10,000.: e.g. 16,384"
    with pytest.raises(ConfigError, match=whole):
        schedule.Schedule(10_000, ("actions",)).phase_updates(8192)


# ------------------------------------------------------------------ the agents in it

AGENTS = ["snake-ppo", "snake-dqn"]


@pytest.mark.parametrize("name", AGENTS)
def test_the_first_phase_is_the_stationary_world_and_the_next_is_not(name: str) -> None:
    """Two updates in phase 0 equal the stationary world's bit for bit (evaluation after
    them too: it plays the world of the last update); the next two, in a changed world, do not."""
    learner, still, fixed = tiny.start(name, [1, 2], [1e-3, 0.0])
    _, changing, moving = tiny.start(name, [1, 2], [1e-3, 0.0], schedule=tiny.CHANGING[name])
    fixed, fixed_metrics = learner.trainer.advance_batch(still.config, fixed, 2)
    moving, moving_metrics = learner.trainer.advance_batch(changing.config, moving, 2)
    assert leaves_equal(fixed, moving)
    for metric, values in fixed_metrics.items():
        np.testing.assert_array_equal(moving_metrics[metric], values)
    for metric, values in learner.trainer.evaluate_batch(still.config, fixed).items():
        np.testing.assert_array_equal(learner.trainer.evaluate_batch(changing.config, moving)[metric], values)
    fixed, _ = learner.trainer.advance_batch(still.config, fixed, 2)
    moving, _ = learner.trainer.advance_batch(changing.config, moving, 2)
    assert not leaves_equal(fixed.params, moving.params)


@pytest.mark.parametrize("name", AGENTS)
def test_the_agent_meets_each_phase_through_its_permutations(name: str) -> None:
    """The perspective of an update in phase k sees the world's observations permuted by the
    phase's table and carries out the phase's action; phase 0 is the identity."""
    config = tiny.setup(name, schedule=tiny.CHANGING[name]).config
    world = common.world_tables(config)
    assert world is not None and len(world.actions) == -(-config.total_updates // 2)
    observation = jnp.arange(float(np.prod(config.env.observation_shape)))
    for update, phase in ((0, 0), (1, 0), (2, 1), (5, 2)):
        view = common.perspective(config, update)
        np.testing.assert_array_equal(view.see(observation), observation[world.observations[phase]])
        assert [int(view.act(jnp.asarray(a))) for a in range(config.env.num_actions)] == list(world.actions[phase])
    assert common.world_tables(tiny.setup(name).config) is None


@pytest.mark.slow
@pytest.mark.parametrize("name", AGENTS)
def test_a_changing_world_resumes_bit_identical(name: str, tmp_path: Path) -> None:
    """Killed mid-phase and resumed from its checkpoint, a run ends as if uninterrupted: the
    phase follows from the update count in the carry."""
    options = {"schedule": tiny.CHANGING[name]}
    learner, setup, carry = tiny.start(name, [5, 6], [1e-3, 0.0], **options)
    total = learner.total_updates(setup)
    straight, straight_history = training.train(learner.trainer, setup.config, carry, total, 3, eval_every=2)
    first, history = training.train(learner.trainer, setup.config, tiny.start(name, [5, 6], [1e-3, 0.0], **options)[2],
                                    3, 3, eval_every=2)  # fmt: skip
    template = tiny.start(name, [0, 0], [0.0, 0.0], **options)[2]
    restored = checkpoint.load(checkpoint.save(tmp_path / "carry.npz", first), template)
    resumed, history = training.train(learner.trainer, setup.config, restored, total, 3, eval_every=2, history=history)
    assert leaves_equal(resumed, straight) and jax.tree.structure(resumed) == jax.tree.structure(straight)
    for metric, values in straight_history.updates.items():
        np.testing.assert_array_equal(history.updates[metric], values)


@pytest.mark.parametrize(
    ("table", "problem"),
    [
        ('phase_steps = 1000\nchanges = ["actions"]', "config.schedule.phase_steps: must be a whole number of updates"),
        ('phase_steps = 15_360\nchanges = ["actions"]', "config.schedule.phase_steps: must be shorter than the budget"),
        ('phase_steps = 1024\nchanges = ["rules"]', "config.schedule.changes: unknown change 'rules'"),
        ("phase_steps = 1024", "config.schedule.changes: give what changes every 1024 env steps"),
        ('phase_steps = 1024\nchanges = ["actions"]\nwhen = 3', "config.schedule.when: unknown key"),
        ('phase_steps = 1024\nchanges = ["board"]\nmin_side = 7', "config.schedule.min_side: must be at most"),
        ('phase_steps = 1024\nchanges = ["actions"]\nmin_side = 5', "config.schedule.min_side: is a setting of"),
    ],
)
def test_a_bad_schedule_in_a_spec_exits_2_with_its_path(tmp_path: Path, table: str, problem: str) -> None:
    from test_study import TINY_SPEC

    path = tmp_path / "changing.toml"
    path.write_text(TINY_SPEC.replace("[config.ppo]", f"[config.schedule]\n{table}\n[config.ppo]", 1))
    result = CliRunner().invoke(app, ["study", str(path), "--out", str(tmp_path / "out")])
    assert result.exit_code == 2 and problem in result.output and "Traceback" not in result.output
    assert not (tmp_path / "out").exists()


def test_more_phases_than_the_program_holds_is_refused_naming_phase_steps(tmp_path: Path) -> None:
    from test_study import TINY_SPEC

    many = TINY_SPEC.replace("budget = 15_360", f"budget = {128 * (schedule.MAX_PHASES + 1)}")
    path = tmp_path / "many.toml"
    path.write_text(many.replace("[config.ppo]", '[config.schedule]\nphase_steps = 128\nchanges = ["actions"]\n'
                                 "[config.ppo]", 1))  # fmt: skip
    result = CliRunner().invoke(app, ["study", str(path), "--out", str(tmp_path / "out")])
    assert result.exit_code == 2 and "config.schedule.phase_steps: gives 10,001 phases" in result.output
    assert not (tmp_path / "out").exists()


# ------------------------------------------------------- shrink and perturb at each phase change

AT_PHASE_CHANGE = regs.Regularizer("shrink_perturb", period=0, perturb=0.0)  # shrink only: a * (w + u)
SHRUNK_UPDATES = {  # updates (0-based) after which it acts, of the first ones, with tiny.CHANGING's 2 updates a phase
    "snake-ppo": ([1, 3], 5),
    "snake-dqn": ([3, 5], 7),  # a tiny DQN learns from update 3 on: the phase change after update 1 finds nothing
}


def _twin(carry, hp):
    """Run 1 set to a copy of run 0's state, keeping each run's strength."""
    copied = jax.tree.map(lambda x: x.at[1].set(x[0]), carry)
    hyperparams = {**copied.opt_state.hyperparams, "strength": hp.strength}
    opt_state = copied.opt_state._replace(hyperparams=hyperparams)
    return jax.tree.map(jnp.copy, copied.replace(hparams=hp, opt_state=opt_state))


@pytest.mark.slow
@pytest.mark.parametrize("name", AGENTS)
def test_shrink_perturb_at_phase_changes_acts_after_each_phases_last_update_only(name: str) -> None:
    """Update by update, a run shrinking half its weights at phase changes and its twin at
    strength 0, both from the same state: equal bit for bit after every update but the last
    of a phase (once learning has started), where the kernels are half the twin's and the
    biases the twin's; the flag is schedule.ends_phase."""
    shrunk, updates = SHRUNK_UPDATES[name]
    learner, setup, carry = tiny.start(name, [1, 1], [0.5, 0.0], regularizer=AT_PHASE_CHANGE,
                                       schedule=tiny.CHANGING[name])  # fmt: skip
    hp = carry.hparams
    phase_updates = setup.config.schedule.phase_updates(setup.config.steps_per_update)
    for update in range(updates):
        carry, _ = learner.trainer.advance_batch(setup.config, _twin(carry, hp), 1)
        flat = jax.tree_util.tree_flatten_with_path(carry.params)[0]
        if update not in shrunk:
            assert all(np.array_equal(w[0], w[1]) for _, w in flat), update
            continue
        assert bool(schedule.ends_phase(update, phase_updates, setup.config.total_updates))
        for path, w in flat:
            kernel = str(path[-1].key) == "kernel"
            np.testing.assert_allclose(w[0], 0.5 * w[1] if kernel else w[1], rtol=1e-6, atol=1e-7)
    assert not bool(schedule.ends_phase(setup.config.total_updates - 1, phase_updates, setup.config.total_updates))


def test_the_last_update_of_a_phase_is_flagged_but_not_the_runs_last() -> None:
    assert [bool(schedule.ends_phase(u, 3, 9)) for u in range(9)] == [0, 0, 1, 0, 0, 1, 0, 0, 0]
    assert [bool(schedule.ends_phase(u, 3, 8)) for u in range(8)] == [0, 0, 1, 0, 0, 1, 0, 0]


@pytest.mark.parametrize("name", AGENTS)
def test_shrink_perturb_at_phase_changes_in_a_world_that_never_changes_is_refused(name: str) -> None:
    with pytest.raises(ConfigProblemsError) as caught:
        tiny.setup(name, regularizer=AT_PHASE_CHANGE)
    [(path, message)] = caught.value.problems
    assert path == "regularizer.period" and message.startswith("0 (shrink and perturb at each phase change) needs")


@pytest.mark.slow
def test_shrink_perturb_at_phase_changes_resumes_bit_identical_across_a_boundary(tmp_path: Path) -> None:
    """Killed after 3 updates (mid-phase), resumed across the phase changes after updates 4
    and 6: the same carry and curves as an uninterrupted run."""
    options = {"schedule": tiny.CHANGING["snake-ppo"], "regularizer": regs.Regularizer("shrink_perturb", period=0)}
    learner, setup, carry = tiny.start("snake-ppo", [5, 6], [0.3, 0.0], **options)
    total = learner.total_updates(setup)
    straight, straight_history = training.train(learner.trainer, setup.config, carry, total, 3, eval_every=2)
    fresh = tiny.start("snake-ppo", [5, 6], [0.3, 0.0], **options)[2]
    first, history = training.train(learner.trainer, setup.config, fresh, 3, 3, eval_every=2)
    template = tiny.start("snake-ppo", [0, 0], [0.0, 0.0], **options)[2]
    restored = checkpoint.load(checkpoint.save(tmp_path / "carry.npz", first), template)
    resumed, history = training.train(learner.trainer, setup.config, restored, total, 3, eval_every=2, history=history)
    assert leaves_equal(resumed, straight)
    for metric, values in straight_history.updates.items():
        np.testing.assert_array_equal(history.updates[metric], values)


# ------------------------------------------------------------------------------ reward changes

REWARDS = {name: {**table, "changes": ["rewards"]} for name, table in tiny.CHANGING.items()}


def test_reward_scales_are_log_uniform_from_a_tenth_to_ten_and_leave_the_permutations_alone() -> None:
    found = schedule.Schedule(100, ("rewards",), 11)
    world = schedule.tables(found, 3, 5, 2000)
    assert world.rewards[0] == 1.0 and world.rewards.dtype == np.float32
    exponents = np.log10(world.rewards[1:])
    assert exponents.min() >= -1 and exponents.max() <= 1 and len(np.unique(exponents)) == 1999
    assert abs(exponents.mean()) < 0.1 and abs((exponents < 0).mean() - 0.5) < 0.05  # uniform: 5+ standard errors
    assert (world.actions == np.arange(3)).all() and (world.observations == np.arange(5)).all()
    assert schedule.reward_scale(found, 7) == pytest.approx(float(world.rewards[7]))
    assert np.array_equal(schedule.tables(found, 3, 5, 8).rewards, world.rewards[:8])  # the same however many phases
    both = schedule.tables(schedule.Schedule(100, ("actions", "observations", "rewards"), 11), 3, 5, 8)
    permuted = schedule.tables(schedule.Schedule(100, ("actions", "observations"), 11), 3, 5, 8)
    assert np.array_equal(both.actions, permuted.actions) and np.array_equal(both.observations, permuted.observations)
    assert np.array_equal(both.rewards, world.rewards[:8]) and (permuted.rewards == 1).all()
    reward = jnp.array([1.0, -1.0, 0.0])
    np.testing.assert_array_equal(schedule.scaled(world, jnp.asarray(3), reward), reward * world.rewards[3])
    assert schedule.scaled(schedule.WorldTables(world.actions, world.observations), jnp.asarray(3), reward) is reward


@pytest.mark.parametrize("name", AGENTS)
def test_the_learner_receives_each_phases_scaled_reward_and_only_with_the_change(name: str) -> None:
    config = tiny.setup(name, schedule=REWARDS[name]).config
    world = common.world_tables(config)
    reward = jnp.array([1.0, -1.0, -0.01])
    for update, phase in ((0, 0), (1, 0), (2, 1), (5, 2)):
        np.testing.assert_array_equal(common.perspective(config, update).reward(reward), reward * world.rewards[phase])
    assert world.rewards[1] != 1
    for other in (tiny.CHANGING[name], None):
        assert common.perspective(tiny.setup(name, schedule=other).config, 4).reward(reward) is reward


@pytest.mark.slow
def test_dqn_stores_the_scaled_reward_and_its_score_is_the_worlds() -> None:
    """The same seed in a stationary world and in one whose rewards change: the first phase
    is the same bit for bit; the first update of phase 1 collects the same transitions with
    every stored reward times the phase's scale, and the same score."""
    learner, still, fixed = tiny.start("snake-dqn", [1], [0.0])
    _, changing, moving = tiny.start("snake-dqn", [1], [0.0], schedule=REWARDS["snake-dqn"])
    fixed, fixed_metrics = learner.trainer.advance_batch(still.config, fixed, 3)
    moving, moving_metrics = learner.trainer.advance_batch(changing.config, moving, 3)
    scale = common.world_tables(changing.config).rewards[1]
    rows = slice(0, 3 * 2)  # 2 rows an update; the third update is phase 1's first
    np.testing.assert_array_equal(moving.replay.observation[0, rows], fixed.replay.observation[0, rows])
    stored, world_rewards = np.asarray(moving.replay.reward[0, rows]), np.asarray(fixed.replay.reward[0, rows])
    np.testing.assert_array_equal(stored[:4], world_rewards[:4])
    np.testing.assert_allclose(stored[4:], world_rewards[4:] * scale, rtol=1e-6)
    assert (world_rewards[4:] != 0).any()  # a step cost or food: something to scale
    for metric in ("score", "episodes", "length", "epsilon"):
        np.testing.assert_array_equal(moving_metrics[metric], fixed_metrics[metric])


@pytest.mark.slow
def test_ppo_learns_from_the_scaled_reward_and_scores_the_worlds() -> None:
    """PPO's first update of phase 1 plays the same episodes as in a stationary world (the same
    score), but its critic's targets are rescaled: a different value loss."""
    learner, still, fixed = tiny.start("snake-ppo", [1], [0.0])
    _, changing, moving = tiny.start("snake-ppo", [1], [0.0], schedule=REWARDS["snake-ppo"])
    _, fixed_metrics = learner.trainer.advance_batch(still.config, fixed, 3)
    _, moving_metrics = learner.trainer.advance_batch(changing.config, moving, 3)
    for metric in ("score", "episodes", "length", "steps"):
        np.testing.assert_array_equal(moving_metrics[metric], fixed_metrics[metric])
    np.testing.assert_array_equal(moving_metrics["value_loss"][:, :2], fixed_metrics["value_loss"][:, :2])
    assert moving_metrics["value_loss"][0, 2] != fixed_metrics["value_loss"][0, 2]


# ------------------------------------------------------------------------ regspeed train's flags


@pytest.mark.parametrize(
    ("flags", "line"),
    [
        (["--phase-steps", "1000", "--changes", "actions"], "error: phase_steps: must be a whole number of updates"),
        (["--phase-steps", "8192", "--changes", "actions,rules"], "error: changes: unknown change 'rules'"),
        (["--phase-steps", "8192", "--changes", ""], "error: changes: give what changes every 8192 env steps"),
        (["--changes", "rewards"], "error: phase_steps: give the env steps per phase"),
        (["--phase-steps", "8192", "--changes", "actions", "--schedule-seed", "-1"], "error: schedule_seed: must be"),
        (["--phase-steps", "8192", "--changes", "actions", "--steps", "8192"], "error: phase_steps: must be shorter"),
        (["--reg", "shrink_perturb", "--reg-period", "0"], "error: reg_period: 0 (shrink and perturb at each phase"),
        (["--phase-steps", "8192", "--changes", "board", "--min-side", "3"], "error: min_side: must be an integer"),
        (["--phase-steps", "8192", "--changes", "board", "--min-side", "12"], "error: min_side:"),
        (["--phase-steps", "8192", "--changes", "obstacles", "--phase-obstacle-density", "0.5"],
         "error: phase_obstacle_density:"),
        (["--phase-steps", "8192", "--changes", "actions", "--min-side", "6"], "error: min_side:"),
        (["--schedule-seed", "5"], "error: schedule_seed: sets a world that changes: give --phase-steps"),
        (["--phase-steps", "0", "--schedule-seed", "5"], "error: schedule_seed: sets a world that changes"),
        (["--min-side", "6"], "error: min_side: sets a world that changes"),
        (["--phase-obstacle-density", "0.1"], "error: phase_obstacle_density: sets a world that changes"),
        (["--changes", "board", "--min-side", "6"], "error: phase_steps: give the env steps per phase"),
        (["--phase-steps", "8192", "--changes", "actions", "--phase-obstacle-density", "0.1"],
         'error: phase_obstacle_density: is a setting of the "obstacles" change'),  # the default, passed
        (["--phase-steps", "8192", "--changes", "actions", "--min-side", "0"],
         'error: min_side: is a setting of the "board" change'),
    ],
)
def test_bad_schedule_flags_are_one_line_naming_the_flag_exit_2(tmp_path: Path, flags: list[str], line: str) -> None:
    result = CliRunner().invoke(app, ["train", *flags, "--out", str(tmp_path / "out")])
    assert result.exit_code == 2 and result.output.strip().startswith(line), result.output
    assert len(result.output.strip().splitlines()) == 1 and not (tmp_path / "out").exists()


@pytest.mark.slow
def test_train_runs_a_changing_world_from_its_flags(tmp_path: Path) -> None:
    import json

    tiny_ppo = ["--rows", "5", "--cols", "5", "--observation", "features", "--hidden", "32", "--num-envs", "8",
                "--rollout-steps", "16", "--steps", "1024", "--eval-every", "2", "--no-tensorboard"]  # fmt: skip
    changing = ["--phase-steps", "256", "--changes", "observations, actions,rewards", "--schedule-seed", "7"]
    shrink = ["--reg", "shrink_perturb", "--reg-period", "0", "--strength", "0.2"]
    result = CliRunner().invoke(app, ["train", *tiny_ppo, *changing, *shrink, "--out", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    assert "observations/actions/rewards change every 256 env steps" in result.output
    written = json.loads((tmp_path / "out" / "config.json").read_text())
    found = written["schedule"]
    assert (found["phase_steps"], found["changes"], found["seed"]) == (256, ["observations", "actions", "rewards"], 7)
    assert written["regularizer"]["period"] == 0


# ------------------------------------------------------------------------ the Gymnasium adapters

GYM_SCHEDULE = {"phase_steps": 4, "changes": ["actions", "observations", "rewards"], "seed": 5}


def test_the_gymnasium_env_changes_world_every_phase_steps_env_steps_as_the_learners_would() -> None:
    """A changing SnakeEnv against a plain one, same seed, the plain one carrying out the
    phase's action: the changing one's observations are the plain one's seen in the next
    step's phase, its rewards scaled by the step's phase, its action mask the plain one's
    through the phase's actions; the phase switches every 4 env steps and reset does not
    start it over. The tables are schedule.tables', as common.world_tables draws them."""
    from regspeed.envs.gym import SnakeEnv

    kwargs = {"rows": 6, "cols": 6, "observation": "features"}
    changing, plain = SnakeEnv(schedule=GYM_SCHEDULE, **kwargs), SnakeEnv(**kwargs)
    config = changing.config
    world = schedule.tables(schedule.Schedule(4, tuple(GYM_SCHEDULE["changes"]), 5), 3, 11, 6)
    (observation, info), (raw, raw_info) = changing.reset(seed=3), plain.reset(seed=3)
    np.testing.assert_array_equal(observation, raw)
    phases, generator = [], np.random.default_rng(0)
    for step in range(18):
        if step == 9:  # a new episode, the same phase counter
            (observation, info), (raw, raw_info) = changing.reset(seed=4), plain.reset(seed=4)
            assert changing.phase == 2 and changing.env_steps == 9
            np.testing.assert_array_equal(observation, np.asarray(schedule.seen(world, 2, jnp.asarray(raw), (11,))))
        phase = changing.phase
        phases.append(phase)
        action = int(generator.integers(3))
        observation, reward, terminated, truncated, info = changing.step(action)
        raw, raw_reward, raw_terminated, _, raw_info = plain.step(int(schedule.carried_out(world, phase, action)))
        following = (step + 1) // 4
        assert info["phase"] == following == changing.phase and changing.env_steps == step + 1
        np.testing.assert_array_equal(observation, np.asarray(schedule.seen(world, following, jnp.asarray(raw), (11,))))
        assert reward == float(schedule.scaled(world, phase, jnp.float32(raw_reward)))
        np.testing.assert_array_equal(info["action_mask"], raw_info["action_mask"][world.actions[following]])
        assert terminated == raw_terminated and info["score"] == raw_info["score"]
        if terminated or truncated:
            (observation, info), (raw, raw_info) = changing.reset(seed=step), plain.reset(seed=step)
    assert phases == [k // 4 for k in range(18)]
    tiny_ppo = tiny.setup("snake-ppo", schedule={**GYM_SCHEDULE, "phase_steps": 128}).config
    learners = common.world_tables(tiny_ppo)
    assert config.observation_shape == tiny_ppo.env.observation_shape
    both = min(len(learners.actions), len(world.actions))
    for learners_table, ours in zip(learners, world, strict=True):
        assert np.array_equal(learners_table[:both], ours[:both])


def test_the_gymnasium_vector_env_counts_every_environments_steps() -> None:
    """4 environments and phases of 8 env steps: the world changes every 2 calls; the final
    observations are seen in the step's phase, the next observations in the next call's."""
    from regspeed.envs.gym import SnakeVectorEnv

    kwargs = {"rows": 5, "cols": 5, "observation": "features"}
    changing = SnakeVectorEnv(4, schedule={**GYM_SCHEDULE, "phase_steps": 8}, **kwargs)
    plain = SnakeVectorEnv(4, **kwargs)
    world = schedule.tables(schedule.Schedule(8, tuple(GYM_SCHEDULE["changes"]), 5), 3, 11, 8)
    (observation, _), (raw, _) = changing.reset(seed=1), plain.reset(seed=1)
    np.testing.assert_array_equal(observation, raw)
    generator = np.random.default_rng(1)
    for call in range(7):
        phase = changing.phase
        assert phase == call // 2 and changing.env_steps == 4 * call
        actions = generator.integers(0, 3, 4)
        observation, reward, _, _, info = changing.step(actions)
        raw, raw_reward, _, _, raw_info = plain.step(np.asarray(schedule.carried_out(world, phase, actions)))
        np.testing.assert_array_equal(observation, schedule.seen(world, (call + 1) // 2, jnp.asarray(raw), (11,)))
        np.testing.assert_array_equal(info["final_obs"], schedule.seen(world, phase, raw_info["final_obs"], (11,)))
        np.testing.assert_array_equal(reward, schedule.scaled(world, phase, jnp.asarray(raw_reward)))
        np.testing.assert_array_equal(info["episode"]["score"], raw_info["episode"]["score"])
    changing.reset(seed=2)
    assert changing.phase == 3 and changing.env_steps == 28


def test_the_gymnasium_adapters_refuse_what_they_do_not_change() -> None:
    import gymnasium

    from regspeed.envs.gym import SnakeEnv

    with pytest.raises(ConfigError, match="changes: the Gymnasium adapters change actions, observations, rewards"):
        SnakeEnv(schedule={"phase_steps": 10, "changes": ["labels"]})
    with pytest.raises(ConfigError, match="schedule: must be a Schedule"):
        SnakeEnv(schedule=10)
    env = gymnasium.make("regspeed/Snake-v0", schedule=schedule.Schedule(10, ("observations",)))
    env.reset(seed=0)
    assert env.unwrapped.phase == 0 and SnakeEnv(schedule={"phase_steps": 0}).phase == 0


@pytest.mark.parametrize("make", ["env", "vector", "gymnasium.make"])
@pytest.mark.parametrize(
    ("fields", "problem"),
    [
        ({"phase_step": 100}, "schedule: unknown field 'phase_step'; fields: phase_steps, changes, seed, min_side"),
        ({"phase_steps": 100, "changes": "observations"}, "changes: must be a list of changes, some of actions, "),
        ({"phase_steps": 100, "changes": None}, "changes: must be a list of changes"),
        ({"phase_steps": 100, "changes": ["observations", 3]}, "changes: must be a list of changes"),
        ({"phase_steps": "100", "changes": ["observations"]}, "phase_steps: must be an integer >= 0"),
        ({"phase_steps": 100, "changes": ["observations"], "seed": "1"}, "seed: must be an integer from 0"),
        ({"phase_steps": 100, "changes": ["board"], "min_side": "5"}, "min_side: must be an integer >= 4"),
        ({"phase_steps": 100, "changes": ["obstacles"], "obstacle_density": "0.1"}, "obstacle_density: must be in"),
    ],
)
def test_a_bad_schedule_argument_to_the_gymnasium_adapters_is_one_clear_error(
    make: str, fields: dict, problem: str
) -> None:
    import gymnasium

    from regspeed.envs.gym import SnakeEnv, SnakeVectorEnv

    makers = {
        "env": lambda: SnakeEnv(schedule=fields),
        "vector": lambda: SnakeVectorEnv(2, schedule=fields),
        "gymnasium.make": lambda: gymnasium.make("regspeed/Snake-v0", schedule=fields),
    }
    with pytest.raises(ConfigError) as caught:
        makers[make]()
    assert type(caught.value) is ConfigError and str(caught.value).startswith(problem)


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"changes": "observations"}, "changes"),
        ({"changes": ("observations",), "seed": 1.5}, "seed"),
        ({"changes": ("board",), "min_side": 4.5}, "min_side"),
        ({"changes": ("obstacles",), "obstacle_density": "0.1"}, "obstacle_density"),
        ({"changes": ("obstacles",), "obstacle_density": None}, "obstacle_density"),
    ],
)
def test_a_schedule_checks_types_before_comparing(fields: dict, field: str) -> None:
    with pytest.raises(ConfigError) as caught:
        schedule.Schedule(100, **fields)
    assert caught.value.field == field
    listed = schedule.Schedule(100, ["actions"])  # a list, as TOML and JSON give it, kept as a hashable tuple
    assert listed.changes == ("actions",) and hash(listed) == hash(schedule.Schedule(100, ("actions",)))


# schedule.tables' rows as drawn before they were built from schedule.phase_row (recorded then)
RECORDED = {
    (5, ("actions", "observations", "rewards"), 3, 11): (
        [[0, 1, 2], [2, 0, 1], [1, 2, 0], [2, 0, 1]],
        [list(range(11)), [0, 1, 7, 10, 9, 3, 5, 2, 4, 6, 8], [5, 3, 0, 6, 2, 10, 4, 7, 8, 9, 1],
         [0, 1, 10, 4, 7, 6, 9, 3, 5, 8, 2]],
        [1.0, 0.5306089520454407, 0.3183363974094391, 0.21623890101909637],
    ),
    (123, ("labels", "observations", "rewards"), 10, 6): (
        [list(range(10)), [8, 4, 6, 1, 0, 9, 2, 5, 3, 7], [1, 7, 5, 6, 0, 8, 9, 3, 4, 2]],
        [list(range(6)), [1, 0, 2, 5, 4, 3], [1, 2, 4, 3, 5, 0]],
        [1.0, 8.314031600952148, 8.540505409240723],
    ),
}  # fmt: skip
RECORDED_DIGEST = "ce0cd3a2e97351181111ae94d1faeeb9eda28ce3d1d8763167e6039530add651"  # 60 tables of 40 phases


def test_the_tables_are_their_phase_rows_and_as_recorded_before_rows_existed() -> None:
    import hashlib

    for (seed, changes, actions, observations), expected in RECORDED.items():
        world = schedule.tables(schedule.Schedule(4, changes, seed), actions, observations, len(expected[0]))
        assert world.actions.tolist() == expected[0] and world.observations.tolist() == expected[1]
        assert world.rewards.tolist() == expected[2]
        assert (world.actions.dtype, world.observations.dtype, world.rewards.dtype) == (np.int32, np.int32, np.float32)
    digest = hashlib.sha256()
    for seed in (0, 5, 123, 2**32 - 1):
        for changes in (("actions", "observations", "rewards"), ("labels", "observations"), ("observations",),
                        ("rewards",), ("actions",)):  # fmt: skip
            for actions, observations in ((3, 11), (4, 75), (10, 64)):
                found = schedule.Schedule(100, changes, seed)
                world = schedule.tables(found, actions, observations, 40)
                for table in world:
                    digest.update(str(table.dtype).encode() + str(table.shape).encode())
                    digest.update(np.ascontiguousarray(table).tobytes())
                for phase in (0, 1, 17, 39):
                    row = schedule.phase_row(found, actions, observations, phase)
                    assert np.array_equal(row.actions, world.actions[phase]) and row.actions.dtype == np.int32
                    assert np.array_equal(row.observations, world.observations[phase])
                    assert np.float32(row.reward) == world.rewards[phase]
    assert digest.hexdigest() == RECORDED_DIGEST
    empty = schedule.tables(schedule.Schedule(4, ("actions",)), 3, 2, 0)
    assert empty.actions.shape == (0, 3) and empty.observations.shape == (0, 2) and empty.rewards.shape == (0,)


def test_the_gymnasium_adapters_hold_only_the_phases_they_are_in() -> None:
    """A phase per env step for 40 steps (a vector env: 3 phases a call): the envs hold two
    rows, the step's phase's and the next's, and meet the phases' worlds as schedule.tables'."""
    from regspeed.envs.gym import SnakeEnv, SnakeVectorEnv

    kwargs = {"rows": 5, "cols": 5, "observation": "features"}
    fields = {**GYM_SCHEDULE, "phase_steps": 1}
    env, vector = SnakeEnv(schedule=fields, **kwargs), SnakeVectorEnv(3, schedule=fields, **kwargs)
    world = schedule.tables(schedule.Schedule(1, tuple(GYM_SCHEDULE["changes"]), 5), 3, 11, 130)
    env.reset(seed=0)
    vector.reset(seed=0)
    for _ in range(40):
        _, _, terminated, truncated, _ = env.step(0)
        if terminated or truncated:
            env.reset(seed=1)
        vector.step(np.zeros(3, np.int64))
        for made in (env, vector):
            rows = made._phases.rows
            assert len(rows) <= 2 and made.phase in rows
            for phase, row in rows.items():
                assert np.array_equal(row.actions, world.actions[phase])
                assert np.array_equal(row.observations, world.observations[phase])
    assert env.phase == 40 and sorted(env._phases.rows) == [39, 40]
    assert vector.phase == 120 and sorted(vector._phases.rows) == [117, 120]


WALL_SCHEDULES = [["board"], ["obstacles"], ["board", "obstacles", "actions", "observations"]]


@pytest.mark.parametrize("changes", WALL_SCHEDULES)
def test_the_gymnasium_adapters_meet_the_learners_walls(changes: list[str]) -> None:
    """board / obstacles: the adapters' config is the agents' (changing_walls, the grid's walls
    channel from phase 0), and their world at phase k is common.world_walls' phase k for the
    same schedule, whether drawn alone, on from the phase before, or by an env as it goes."""
    from regspeed.envs import snake
    from regspeed.envs.gym import SnakeEnv, SnakeVectorEnv
    from regspeed.envs.schedule import phase_walls

    env_table = {"rows": 7, "cols": 7, "observation": "grid"}
    fields = {"phase_steps": 128, "changes": changes, "seed": 5}
    agents = tiny.setup("snake-ppo", env=env_table, schedule=fields).config
    learners = common.world_walls(agents)
    found, phases = agents.schedule, len(learners.walls)
    env, vector = SnakeEnv(schedule=fields, **env_table), SnakeVectorEnv(2, schedule=fields, **env_table)
    assert env.config == vector.config and env.config.changing_walls and agents.env.changing_walls
    assert env.config.observation_shape == agents.env.observation_shape == (4, 7, 7)  # the agents: a wider window
    assert env.observation_space.shape == vector.single_observation_space.shape == (4, 7, 7)
    assert phases == 8 and not learners.walls[0].any() and all(learners.walls[k].any() for k in range(1, phases))
    previous = None
    for phase in range(phases):
        alone, _ = phase_walls(found, env.config, phase)
        on, previous = phase_walls(found, env.config, phase, previous)
        assert np.array_equal(alone, learners.walls[phase]) and np.array_equal(on, learners.walls[phase])
        held = env._phases.world(phase)
        expected = snake.world_at(learners, phase)
        for name in ("walls", "counts", "free", "rank", "open"):
            assert np.array_equal(getattr(held, name), getattr(expected, name)), name
        assert np.array_equal(held.starts, np.asarray(expected.starts)[:, : held.starts.shape[1]])
        assert len(env._phases.worlds) <= 2
    assert np.array_equal(phase_walls(found, env.config, 3, previous)[0], learners.walls[3])  # an earlier phase too


def test_the_gymnasium_adapters_keep_food_and_snakes_off_the_walls_across_phases() -> None:
    """A few hundred random steps over phases of 16 env steps (board and obstacles): every
    episode's walls are those of the phase it started in (reset: the next step's phase; a
    vector env's same-step reset: the step's), across boundaries too; neither the food nor a
    running snake's head is ever on a wall; the observation's shape never changes."""
    from regspeed.envs import snake
    from regspeed.envs.gym import SnakeEnv, SnakeVectorEnv

    env_table = {"rows": 8, "cols": 8, "observation": "grid"}
    fields = {"phase_steps": 16, "changes": ["board", "obstacles"], "seed": 2, "min_side": 5}
    env, vector = SnakeEnv(schedule=fields, **env_table), SnakeVectorEnv(3, schedule=fields, **env_table)
    layouts = schedule.walls(schedule.Schedule(**fields), env.config, 300 * 3 // 16 + 2)
    generator, shape = np.random.default_rng(0), env.observation_space.shape

    def check(state: snake.SnakeState, started: int, running: bool) -> None:
        walls = np.asarray(state.body) < 0
        assert np.array_equal(walls, layouts[started])
        food, head = (int(r) * 8 + int(c) for r, c in (np.asarray(state.food), np.asarray(state.head)))
        assert not walls[food] and (not running or not walls[head])

    observation, _ = env.reset(seed=0)
    started, crossed = env.phase, set()
    for _ in range(300):
        check(env._state, started, True)
        observation, _, terminated, truncated, _ = env.step(int(generator.integers(3)))
        assert observation.shape == shape
        check(env._state, started, not terminated)
        crossed.add(env.phase != started)
        if terminated or truncated:
            observation, _ = env.reset(seed=int(generator.integers(1000)))
            started = env.phase
    assert crossed == {True, False}  # episodes ran across boundaries and within one phase
    observation, _ = vector.reset(seed=0)
    starts = np.full(3, vector.phase)
    for _ in range(100):
        phase = vector.phase
        observation, _, terminated, truncated, _ = vector.step(generator.integers(0, 3, 3))
        assert observation.shape == (3, *shape)
        starts = np.where(terminated | truncated, phase, starts)
        for i in range(3):
            check(jax.tree.map(lambda x, i=i: x[i], vector._states), int(starts[i]), True)
    assert vector.phase == 18 and starts.max() > 0 and len(vector._phases.worlds) <= 2  # same-step resets later on


def test_a_spec_shrinks_at_phase_changes_only_in_a_changing_world() -> None:
    from test_study import TINY_SPEC

    from regspeed.study import spec as spec_module

    shrink = 'kind = "shrink_perturb"\nperiod = 0\nstrengths = [0.2]'
    text = TINY_SPEC.replace('kind = "l2"\nstrengths = [1e-3, 1e-2]', shrink)
    with pytest.raises(spec_module.SpecError) as caught:
        spec_module.parse(text)
    [(path, message)] = caught.value.problems
    assert path == "regularizers[0].period" and message.startswith("0 (shrink and perturb at each phase change) needs")
    table = '[config.schedule]\nphase_steps = 1024\nchanges = ["rewards"]\n'
    changing = text.replace("[config.ppo]", f"{table}[config.ppo]")
    assert [c.name for c in spec_module.conditions(spec_module.parse(changing))] == [
        "none", "shrink_perturb[period=phase]@0.2"
    ]  # fmt: skip
