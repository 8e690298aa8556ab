"""Learning curves of a batch of runs: CSV tables and a PNG figure."""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; never needs a display
import matplotlib.pyplot as plt
import numpy as np

from regspeed.analysis import metrics
from regspeed.learn.driver import History


def write_csv(path: Path, seeds: Sequence[int], steps: np.ndarray, columns: dict[str, np.ndarray]) -> Path:
    """One row per (seed, point): ``seed, env_steps, <columns...>``; ``columns`` are
    [runs, points] arrays, ``steps`` is [points]."""
    names = sorted(columns)
    with open(path, "w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(["seed", "env_steps", *names])
        for run, seed in enumerate(seeds):
            for point, step in enumerate(steps):
                writer.writerow([seed, int(step), *(_format(columns[name][run, point]) for name in names)])
    return path


def _format(value: float) -> str:
    return "" if not np.isfinite(value) else f"{float(value):.6g}"


def plot(
    path: Path, title: str, seeds: Sequence[int], history: History, steps_per_update: int, metric: str = "score"
) -> Path:
    """``metric`` of the training episodes (per seed, smoothed) and of the greedy evaluation
    (``eval_<metric>``) against env steps."""
    figure, (train_axis, eval_axis) = plt.subplots(1, 2, figsize=(11, 4), constrained_layout=True)
    score = history.updates[metric]
    steps = np.arange(1, score.shape[1] + 1) * steps_per_update
    smoothed = metrics.smooth(score, max(1, score.shape[1] // 50))
    for run, seed in enumerate(seeds):
        train_axis.plot(steps, smoothed[run], lw=0.8, alpha=0.5, label=f"seed {seed}" if len(seeds) <= 8 else None)
    if len(seeds) > 1:
        train_axis.plot(steps, np.nanmean(smoothed, axis=0), color="black", lw=2, label="mean")
    train_axis.set(title="training episodes", xlabel="env steps", ylabel="score (food eaten)")
    train_axis.legend(fontsize=7)
    if history.evaluated_at:
        eval_steps = np.asarray(history.evaluated_at) * steps_per_update
        evaluation = history.evaluations[f"eval_{metric}"]
        for run in range(len(seeds)):
            eval_axis.plot(eval_steps, evaluation[run], lw=0.8, alpha=0.5, marker=".")
        eval_axis.plot(eval_steps, evaluation.mean(axis=0), color="black", lw=2)
    eval_axis.set(title="greedy evaluation (fixed episodes)", xlabel="env steps", ylabel="score")
    for axis in (train_axis, eval_axis):
        axis.grid(alpha=0.3)
    figure.suptitle(title)
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path
