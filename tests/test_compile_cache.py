"""Compile once (regspeed.compile_cache): where the cache is, that it is private to the user and
apart per machine type, that off is off, and that a warm cache gives the same numbers.

Every test here uses folders of its own; the ones that enable a cache in this process restore
the session's (``restored``)."""

from __future__ import annotations

import json
import os
import re
import stat
import subprocess
import sys
from pathlib import Path

import jax
import pytest
from jax.experimental.compilation_cache import compilation_cache as jax_cache
from typer.testing import CliRunner

from regspeed import compile_cache
from regspeed.cli import app
from regspeed.errors import ConfigError

runner = CliRunner()
VARIABLES = (compile_cache.ENV, compile_cache.JAX_ENV, compile_cache.MIN_COMPILE_TIME_ENV, "XDG_CACHE_HOME", "HOME")


@pytest.fixture
def restored(monkeypatch: pytest.MonkeyPatch):
    """This process's cache settings (environment, JAX's configuration, the module's state) as
    they were before the test."""
    for name in VARIABLES:
        if name in os.environ:
            monkeypatch.setenv(name, os.environ[name])  # so that monkeypatch puts it back
        else:
            monkeypatch.delenv(name, raising=False)
    folder = jax.config.jax_compilation_cache_dir
    seconds = jax.config.jax_persistent_cache_min_compile_time_secs
    setting = compile_cache.setting()
    yield
    jax.config.update("jax_persistent_cache_min_compile_time_secs", seconds)
    if jax.config.jax_compilation_cache_dir != folder:
        jax.config.update("jax_compilation_cache_dir", folder)
        jax_cache.reset_cache()
    compile_cache._setting = setting


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def private(path: Path) -> Path:
    path.mkdir(mode=0o700, parents=True)
    path.chmod(0o700)
    return path


def refused(arguments: list[str], env: dict[str, str] | None = None) -> str:
    """The one line a refused command prints (exit code 2)."""
    result = runner.invoke(app, [*arguments, "spec"], env=env)
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1, result.output
    return lines[0]


# ------------------------------------------------------------------------ where


def test_the_default_folder_is_under_xdg_cache_home_else_home_cache() -> None:
    assert compile_cache.request(environ={"XDG_CACHE_HOME": "/x/cache", "HOME": "/h"}) == compile_cache.Request(
        Path("/x/cache/regspeed/jax"), "default"
    )
    assert compile_cache.request(environ={"HOME": "/h"}).base == Path("/h/.cache/regspeed/jax")
    # a relative XDG_CACHE_HOME is ignored, as the XDG spec asks
    assert compile_cache.request(environ={"XDG_CACHE_HOME": "cache", "HOME": "/h"}).base == Path(
        "/h/.cache/regspeed/jax"
    )


def test_the_option_wins_over_the_variables_and_ours_over_jaxs(tmp_path: Path) -> None:
    both = {compile_cache.ENV: "/ours", compile_cache.JAX_ENV: "/jaxs", "HOME": "/h"}
    assert compile_cache.request("/option", environ=both) == compile_cache.Request(Path("/option"), "--compile-cache")
    assert compile_cache.request(None, environ=both) == compile_cache.Request(Path("/ours"), compile_cache.ENV)
    only_jax = {compile_cache.JAX_ENV: "/jaxs"}
    assert compile_cache.request(None, environ=only_jax) == compile_cache.Request(Path("/jaxs"), compile_cache.JAX_ENV)
    assert compile_cache.request("", environ={compile_cache.ENV: ""}).source == "default"  # empty: unset
    assert compile_cache.request("~/c", environ={"HOME": "/h"}).base == Path("/h/c")
    assert compile_cache.request("relative", environ={}).base == Path.cwd() / "relative"
    assert compile_cache.request(tmp_path, "path", environ={}) == compile_cache.Request(tmp_path, "path")


def test_off_turns_it_off_from_the_option_or_our_variable() -> None:
    assert compile_cache.request("off", environ={compile_cache.ENV: "/ours"}) == compile_cache.Request(
        None, "--compile-cache"
    )
    assert compile_cache.request(None, environ={compile_cache.ENV: "OFF"}) == compile_cache.Request(
        None, compile_cache.ENV
    )
    assert compile_cache.request("/folder", environ={compile_cache.ENV: "off"}).base == Path("/folder")
    assert compile_cache.folder(compile_cache.Request(None, compile_cache.ENV)) is None


# ------------------------------------------------------------------------ per machine type


def test_the_machine_type_names_the_architecture_and_changes_with_the_cpu_flags() -> None:
    name = compile_cache.machine_type()
    assert re.fullmatch(r"[a-z0-9_]+-[0-9a-f]{12}", name), name
    assert name == compile_cache.machine_type()  # stable
    assert name.startswith(re.sub(r"[^a-z0-9_]", "_", os.uname().machine.lower()) + "-")
    plain = compile_cache.cpu_description("flags\t: fpu sse sse2 avx avx2\nmodel name\t: Some CPU\n")
    wider = compile_cache.cpu_description("flags\t: fpu sse sse2 avx avx2 avx512f\nmodel name\t: Some CPU\n")
    other_model = compile_cache.cpu_description("flags\t: fpu sse sse2 avx avx2\nmodel name\t: Another CPU\n")
    names = {compile_cache.machine_type(cpu) for cpu in (plain, wider, other_model)}
    assert len(names) == 3


def test_the_cpu_description_reads_model_and_flags_once_in_any_order() -> None:
    one = "processor\t: 0\nmodel name\t: Some CPU\nflags\t\t: sse avx fpu\ncpu MHz\t\t: 2400.1\n\n"
    two = "processor\t: 1\nmodel name\t: Some CPU\nflags\t\t: fpu avx sse\ncpu MHz\t\t: 1200.7\n\n"
    arm = "processor\t: 0\nFeatures\t: fp asimd aes\nCPU implementer\t: 0x41\nCPU part\t: 0xd0c\nBogoMIPS\t: 50.00\n"
    assert compile_cache.cpu_description(one + two) == "flags: avx fpu sse\nmodel name: Some CPU"  # no MHz, no ids
    assert compile_cache.cpu_description(one + two) == compile_cache.cpu_description(two + one)
    assert compile_cache.cpu_description(arm) == "cpu implementer: 0x41\ncpu part: 0xd0c\nfeatures: aes asimd fp"
    assert compile_cache.cpu_description()  # this machine's: something


# ------------------------------------------------------------------------ private to the user


def test_every_folder_it_creates_is_owner_only_whatever_the_umask(tmp_path: Path) -> None:
    parent = tmp_path / "mine"
    parent.mkdir(mode=0o755)
    parent.chmod(0o755)
    previous = os.umask(0)
    try:
        machine = compile_cache.folder(compile_cache.Request(parent / "a" / "b", "path"))
    finally:
        os.umask(previous)
    assert machine == parent / "a" / "b" / compile_cache.machine_type()
    assert [mode(path) for path in (parent / "a", parent / "a" / "b", machine)] == [0o700] * 3
    assert mode(parent) == 0o755  # a folder it did not create is left as it was


@pytest.mark.parametrize("bits", [0o770, 0o702, 0o720], ids=oct)
def test_a_folder_others_can_write_to_is_refused_with_one_line(tmp_path: Path, bits: int) -> None:
    shared = private(tmp_path / "shared")
    shared.chmod(bits)
    line = refused(["--compile-cache", str(shared)])
    assert line.startswith(f"error: --compile-cache: {shared} can be written by others (mode {bits:o})")
    assert f"chmod go-w {shared}" in line and "REGSPEED_COMPILE_CACHE" in line
    line = refused([], env={compile_cache.ENV: str(shared)})
    assert line.startswith(f"error: {compile_cache.ENV}: {shared} can be written by others")
    line = refused([], env={compile_cache.ENV: "", compile_cache.JAX_ENV: str(shared)})
    assert line.startswith(f"error: {compile_cache.JAX_ENV}: {shared} can be written by others")
    assert list(shared.iterdir()) == []  # nothing made in it
    assert mode(shared) == bits  # nor changed


def test_a_per_machine_subfolder_others_can_write_to_is_refused(tmp_path: Path) -> None:
    machine = private(tmp_path / "cache" / compile_cache.machine_type())
    machine.chmod(0o777)
    with pytest.raises(ConfigError, match=re.escape(f"path: {machine} can be written by others (mode 777)")):
        compile_cache.folder(compile_cache.Request(tmp_path / "cache", "path"))


def test_a_folder_of_another_user_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    theirs = private(tmp_path / "theirs")
    monkeypatch.setattr(compile_cache, "_user", lambda: theirs.stat().st_uid + 1)  # as if we were someone else
    line = refused(["--compile-cache", str(theirs)])
    uid = theirs.stat().st_uid
    assert line.startswith(f"error: --compile-cache: {theirs} belongs to another user (uid {uid})")
    assert list(theirs.iterdir()) == []


def test_a_folder_inside_a_world_writable_folder_needs_its_sticky_bit(tmp_path: Path) -> None:
    open_to_all = private(tmp_path / "open")
    open_to_all.chmod(0o777)
    cache = private(open_to_all / "cache")
    asked = compile_cache.Request(cache, "path")
    with pytest.raises(ConfigError, match=re.escape(f"{cache} is inside {open_to_all}, which anyone can write to")):
        compile_cache.folder(asked)
    open_to_all.chmod(0o1777)  # like /tmp: no one can rename or replace another's entry
    assert compile_cache.folder(asked) == cache / compile_cache.machine_type()


def test_a_symbolic_link_is_followed_and_its_target_checked(tmp_path: Path) -> None:
    target = private(tmp_path / "target")
    link = tmp_path / "link"
    link.symlink_to(target)
    assert compile_cache.folder(compile_cache.Request(link, "path")) == target / compile_cache.machine_type()
    target.chmod(0o775)
    with pytest.raises(ConfigError, match=re.escape(f"{target} can be written by others")):
        compile_cache.folder(compile_cache.Request(link, "path"))
    (tmp_path / "dangling").symlink_to(tmp_path / "nowhere")
    with pytest.raises(ConfigError, match="cannot use"):
        compile_cache.folder(compile_cache.Request(tmp_path / "dangling", "path"))


def test_a_folder_that_cannot_be_made_is_an_error_the_default_one_a_warning(tmp_path: Path, restored: None) -> None:
    below_a_file = tmp_path / "file" / "cache"
    (tmp_path / "file").write_text("")
    line = refused(["--compile-cache", str(below_a_file)])
    assert line == f"error: --compile-cache: cannot use {below_a_file} as the compile cache: Not a directory"
    environment = {compile_cache.ENV: "", compile_cache.JAX_ENV: "", "XDG_CACHE_HOME": str(below_a_file)}
    result = runner.invoke(app, ["spec"], env=environment)
    assert result.exit_code == 0, result.output
    assert "warning: compiled programs are not cached: cannot use" in result.output
    assert jax.config.jax_compilation_cache_dir is None  # this command ran without a cache


# ------------------------------------------------------------------------ turning it on, and off


def test_enable_configures_jax_and_the_environment_children_inherit(tmp_path: Path, restored: None) -> None:
    os.environ.pop(compile_cache.MIN_COMPILE_TIME_ENV, None)
    machine = compile_cache.enable(tmp_path / "cache")
    assert machine == tmp_path / "cache" / compile_cache.machine_type()
    assert jax.config.jax_compilation_cache_dir == str(machine)
    assert jax.config.jax_persistent_cache_min_compile_time_secs == compile_cache.MIN_COMPILE_TIME_SECS
    assert os.environ[compile_cache.JAX_ENV] == str(machine)
    assert os.environ[compile_cache.ENV] == str(machine.parent)  # so a child resolves the same folder
    assert compile_cache.enable() == machine
    assert compile_cache.setting() == str(machine.parent)
    os.environ[compile_cache.MIN_COMPILE_TIME_ENV] = "2.5"  # a user's own value is kept
    compile_cache.enable(tmp_path / "cache")
    assert jax.config.jax_persistent_cache_min_compile_time_secs == 2.5


def test_off_leaves_jax_without_a_cache(tmp_path: Path, restored: None) -> None:
    compile_cache.enable(tmp_path / "cache")
    assert compile_cache.enable("off") is None
    assert jax.config.jax_compilation_cache_dir is None
    assert compile_cache.JAX_ENV not in os.environ and os.environ[compile_cache.ENV] == "off"
    assert compile_cache.setting() == "off"
    jax.jit(lambda x: x * 3 + 1)(jax.numpy.arange(5.0)).block_until_ready()  # compiles, writes nowhere
    assert list((tmp_path / "cache" / compile_cache.machine_type()).iterdir()) == []
    result = runner.invoke(app, ["--compile-cache", "off", "spec"])
    assert result.exit_code == 0 and jax.config.jax_compilation_cache_dir is None


def test_a_ray_worker_uses_the_drivers_folder_or_runs_without_one(tmp_path: Path, restored: None) -> None:
    compile_cache.enable(tmp_path / "before")
    compile_cache.enable_in_worker(None)  # the driver never enabled one: left as it is
    assert jax.config.jax_compilation_cache_dir == str(tmp_path / "before" / compile_cache.machine_type())
    compile_cache.enable_in_worker(str(tmp_path / "drivers"))
    assert jax.config.jax_compilation_cache_dir == str(tmp_path / "drivers" / compile_cache.machine_type())
    shared = private(tmp_path / "shared")
    shared.chmod(0o777)
    with pytest.warns(compile_cache.CompileCacheWarning, match="not cached in this worker"):
        compile_cache.enable_in_worker(str(shared))
    assert jax.config.jax_compilation_cache_dir is None
    compile_cache.enable_in_worker("off")
    assert jax.config.jax_compilation_cache_dir is None


def test_the_suite_runs_with_a_private_cache_of_its_own() -> None:
    asked = os.environ[compile_cache.ENV]
    if asked == "off":
        pytest.skip("the suite was started with REGSPEED_COMPILE_CACHE=off")
    folder = Path(jax.config.jax_compilation_cache_dir)
    assert folder.name == compile_cache.machine_type() and folder.parent == Path(asked)
    assert mode(folder) == 0o700 and folder.stat().st_uid == os.getuid()


# ------------------------------------------------------------------------ other processes

CHILD = """
import json, sys
from regspeed import compile_cache
compile_cache.enable()  # from REGSPEED_COMPILE_CACHE, as a user's notebook would
import jax, jax.numpy as jnp
hits = []
jax.monitoring.register_event_listener(lambda event, **_: hits.append(event) if event.endswith("/cache_hits") else None)
x = jnp.linspace(-1.0, 1.0, 64).reshape(8, 8)
y = jax.jit(lambda a: jnp.tanh(a @ a.T + jnp.sin(a)).sum(0))(x)
print(json.dumps({"hits": len(hits), "y": [float(v).hex() for v in y]}))
"""


def child_environment(cache: Path) -> dict[str, str]:
    environment = {name: value for name, value in os.environ.items() if name not in VARIABLES[:3]}
    return environment | {compile_cache.ENV: str(cache)}


def test_a_second_process_loads_what_the_first_compiled_and_computes_the_same(tmp_path: Path) -> None:
    environment = child_environment(tmp_path / "cache")

    def run() -> dict:
        done = subprocess.run([sys.executable, "-c", CHILD], env=environment, capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)

    cold = run()
    entries = sorted(path.name for path in (tmp_path / "cache" / compile_cache.machine_type()).iterdir())
    assert cold["hits"] == 0 and any("-cache" in name for name in entries)
    warm = run()
    assert warm["hits"] >= 1 and warm["y"] == cold["y"]  # bit for bit


def test_version_neither_imports_jax_nor_makes_a_folder(tmp_path: Path) -> None:
    environment = child_environment(tmp_path / "cache") | {compile_cache.ENV: "", "XDG_CACHE_HOME": str(tmp_path)}
    code = "import sys\nfrom regspeed.cli import app\n"
    code += "try: app(['--version'])\nexcept SystemExit: print('jax' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], env=environment, capture_output=True, text=True)
    assert done.stdout.splitlines() == ["regspeed 0.1.0", "False"], done.stderr
    assert not (tmp_path / "regspeed").exists() and not (tmp_path / "cache").exists()


@pytest.mark.slow
def test_train_with_a_warm_cache_compiles_nothing_and_gives_the_numbers_of_a_cold_one(tmp_path: Path) -> None:
    environment = child_environment(tmp_path / "cache") | {"COLUMNS": "200"}
    environment |= {"JAX_LOG_COMPILES": "1", "JAX_EXPLAIN_CACHE_MISSES": "1"}  # JAX logs each hit and miss
    arguments = ["--rows", "5", "--cols", "5", "--observation", "features", "--hidden", "16", "--num-envs", "8"]
    arguments += ["--rollout-steps", "16", "--steps", "640", "--seeds", "2", "--eval-every", "5"]
    arguments += ["--reg", "l2", "--strength", "1e-3", "--no-tensorboard"]

    def train(out: str) -> tuple[int, int]:
        command = [sys.executable, "-m", "regspeed.cli", "train", *arguments, "--out", str(tmp_path / out)]
        done = subprocess.run(command, env=environment, capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
        return done.stderr.count("Persistent compilation cache hit"), done.stderr.count(
            "PERSISTENT COMPILATION CACHE MISS"
        )

    cold_hits, cold_misses = train("cold")
    assert cold_hits == 0 and cold_misses > 0
    assert any((tmp_path / "cache" / compile_cache.machine_type()).iterdir())
    warm_hits, warm_misses = train("warm")
    assert warm_misses == 0 and warm_hits == cold_misses  # every program loaded, none compiled
    for name in ("curve.csv", "eval.csv", "checkpoint.npz"):
        assert (tmp_path / "cold" / name).read_bytes() == (tmp_path / "warm" / name).read_bytes(), name
