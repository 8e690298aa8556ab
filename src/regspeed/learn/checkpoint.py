"""Checkpoints of a trainer's carry: every leaf, bit for bit, written atomically.

A carry is saved as an ``.npz`` of its leaves in pytree-flattening order (typed PRNG keys
as their raw key data). Loading needs a *template*: a carry of the same configuration (for
example from ``init``), which supplies the tree structure and which leaves are keys. The
file is written beside its final name and renamed into place, so a crash never leaves a
half-written checkpoint; the file beside it is created afresh, never through a symbolic link
(a study folder may come from someone else).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import jax
import numpy as np

from regspeed.errors import ConfigError

FORMAT_VERSION = 1


def _is_key(leaf: Any) -> bool:
    return isinstance(leaf, jax.Array) and jax.dtypes.issubdtype(leaf.dtype, jax.dtypes.prng_key)


def to_arrays(carry: Any) -> dict[str, np.ndarray]:
    """The carry's leaves as host NumPy arrays, as a checkpoint holds them (picklable, for
    sending a carry between processes)."""
    leaves = jax.device_get([jax.random.key_data(x) if _is_key(x) else x for x in jax.tree.leaves(carry)])
    arrays = {f"leaf_{i}": np.asarray(x) for i, x in enumerate(leaves)}
    arrays["format_version"] = np.asarray(FORMAT_VERSION)
    return arrays


def save(path: str | Path, carry: Any) -> Path:
    """Write ``carry`` (or its :func:`to_arrays`) to ``path`` atomically; return the path."""
    path = Path(path)
    arrays = carry if isinstance(carry, dict) and "format_version" in carry else to_arrays(carry)
    temporary = path.with_name(path.name + ".partial")
    descriptor = _create_new(temporary)
    try:
        with os.fdopen(descriptor, "wb") as file:
            np.savez(file, **arrays)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)  # a link at ``path`` is replaced itself, never its target
    finally:
        temporary.unlink(missing_ok=True)
    return path


def _create_new(path: Path) -> int:
    """A descriptor of a new, empty file at ``path``: a leftover (or a link planted there) is
    removed first, never followed, and the file is created exclusively without following links."""
    if path.is_symlink() or path.is_file():
        path.unlink()
    elif path.exists():
        raise ConfigError("checkpoint", f"{path} is in the way: it is not a plain file; remove it")
    return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o666)


def load(path: str | Path, template: Any) -> Any:
    """Read a carry saved by :func:`save`, shaped like ``template``."""
    with np.load(Path(path)) as data:
        return from_arrays(dict(data), template, str(path))


def from_arrays(data: dict[str, np.ndarray], template: Any, path: str = "checkpoint") -> Any:
    """Rebuild a carry from :func:`to_arrays`, shaped like ``template``."""
    leaves, treedef = jax.tree.flatten(template)
    if int(data["format_version"]) != FORMAT_VERSION:
        raise ValueError(f"{path}: checkpoint format {int(data['format_version'])}, expected {FORMAT_VERSION}")
    restored = []
    for i, like in enumerate(leaves):
        array = data[f"leaf_{i}"]
        if _is_key(like):
            restored.append(jax.random.wrap_key_data(array, impl=jax.random.key_impl(like)))
        else:
            if array.shape != like.shape or array.dtype != like.dtype:
                raise ValueError(f"{path}: leaf {i} is {array.dtype}{array.shape}, expected {like.dtype}{like.shape}")
            restored.append(jax.numpy.asarray(array))
    return jax.tree.unflatten(treedef, restored)
