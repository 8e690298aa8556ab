"""Strict types in specs and learner tables: a bool is not an integer, a string is not a
number, nothing is coerced silently; an integer may stand for a float and a TOML list for a
tuple. (The one-message-per-problem cases of specs are in test_study.)"""

from __future__ import annotations

import pytest
from test_study import TINY_SPEC

from regspeed.errors import ConfigProblemsError
from regspeed.learn import dqn, ppo, registry, tables
from regspeed.learn import regularizers as regs
from regspeed.learn.learner import Request
from regspeed.study import spec as spec_module


def test_integers_stand_for_floats_and_lists_for_tuples() -> None:
    text = TINY_SPEC.replace("rows = 6", "rows = 6\nreward_food = 2").replace("hidden = [16]", "hidden = [16, 8]")
    text = text.replace("epochs = 1", "epochs = 1\nlearning_rate = 1\nclip_eps = 1")
    text = text.replace("strengths = [1e-3, 1e-2]", "strengths = [1, 2]")
    text = text.replace("chunk_updates = 4", "chunk_updates = 4\nmemory_cap_gb = 2")
    parsed = spec_module.parse(text)
    setup = spec_module.setup(parsed, regs.Regularizer())
    assert setup.config.env.reward_food == 2.0 and isinstance(setup.config.env.reward_food, float)
    assert setup.config.clip_eps == 1.0 and isinstance(setup.config.clip_eps, float)
    assert setup.config.network.hidden == (16, 8) and setup.learning_rate == 1.0
    assert parsed.regularizers[0].strengths == [1.0, 2.0] and parsed.execution.memory_cap_gb == 2.0
    assert [condition.name for condition in spec_module.conditions(parsed)] == ["none", "l2@1", "l2@2"]


def test_nested_dataclasses_given_as_tables_are_checked_strictly_too() -> None:
    data = {"env": {"rows": "6", "cols": True}, "network": {"hidden": [64, True]}, "num_envs": 8.0, "gamma": 1}
    config, problems = tables.validated(ppo.PPOConfig, data, ("ppo",))
    assert config is None
    assert problems == [
        ("ppo.env.rows", "must be an integer (got '6')"),
        ("ppo.env.cols", "must be an integer (got True)"),
        ("ppo.network.hidden[1]", "must be an integer (got True)"),
        ("ppo.num_envs", "must be an integer (got 8.0)"),
    ]
    good = {"env": {"rows": 6, "reward_food": 2}, "network": {"hidden": [64, 64]}, "gamma": 1}
    config, problems = tables.validated(ppo.PPOConfig, good, ("ppo",))
    assert problems == [] and config.env.rows == 6 and config.network.hidden == (64, 64) and config.gamma == 1.0


@pytest.mark.parametrize(
    ("task", "given", "problem"),
    [
        ("snake-dqn", {"dqn": {"batch_size": True}}, ("dqn.batch_size", "must be an integer (got True)")),
        ("snake-dqn", {"dqn": {"tau": "1"}}, ("dqn.tau", "must be a number (got '1')")),
        ("snake-ppo", {"ppo": {"anneal_lr": 0}}, ("ppo.anneal_lr", "must be true or false (got 0)")),
        ("snake-ppo", {"env": {"time_limit": "100"}}, ("env.time_limit", "must be an integer (got '100')")),
        ("teacher", {"teacher_hidden": ["8"]}, ("teacher_hidden[0]", "must be an integer (got '8')")),
        ("teacher", {"data_seed": True}, ("data_seed", "must be an integer (got True)")),
        ("linreg", {"optimizer": 1}, ("optimizer", "must be a string (got 1)")),
    ],
)
def test_learner_tables_refuse_wrong_types(task: str, given: dict, problem: tuple[str, str]) -> None:
    with pytest.raises(ConfigProblemsError) as caught:
        registry.get(task).build(given, Request(budget=10_000))
    assert caught.value.problems == [problem]


def test_learner_tables_accept_integers_for_floats_and_lists_for_tuples() -> None:
    setup = registry.get("teacher").build({"teacher_hidden": [8, 8], "noise": 0}, Request(budget=10))
    assert setup.config.teacher_hidden == (8, 8) and setup.config.noise == 0.0
    setup = registry.get("snake-dqn").build({"dqn": {"tau": 1, "gamma": 1}}, Request(budget=10_000))
    assert isinstance(setup.config, dqn.DQNConfig) and setup.config.tau == 1.0 and setup.config.gamma == 1.0
