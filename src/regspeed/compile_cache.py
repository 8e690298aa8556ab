"""Compile once: JAX's persistent compilation cache, in a folder private to the user, one
subfolder per machine type.

JAX can keep every program it compiles on disk and load it, instead of compiling again, in
the next process that asks for the same program (same computation, shapes, JAX version,
backend and XLA flags: JAX's own key). A second ``regspeed study``, a resumed study, a
``regspeed train`` with the same configuration and the test suite then skip most of their
compile time. A loaded program is run as it is, so the cache is trusted code:

- it lives in a folder of the user's own: every folder this module creates is made with
  mode 0o700, and a cache folder (or its per-machine subfolder) that belongs to another user
  or that others can write to is refused with one line (:class:`~regspeed.errors.ConfigError`),
  as is a folder inside a world-writable folder without the sticky bit; a symbolic link is
  resolved and its target checked, and JAX is given the resolved path;
- it is kept apart per machine type (:func:`machine_type`: CPU architecture, model and
  feature flags, JAX and jaxlib versions), because JAX's key does not include the CPU's
  features: a shared home on a cluster would otherwise hand one node's programs, compiled
  for its instruction set, to a node without it.

Where: ``--compile-cache FOLDER|off`` (the command line) wins over ``REGSPEED_COMPILE_CACHE``
(a folder, or ``off``), which wins over JAX's own ``JAX_COMPILATION_CACHE_DIR`` (the user's
explicit choice of a place: used as the folder, with the same checks and the same
per-machine subfolder), then ``$XDG_CACHE_HOME/regspeed/jax`` or ``~/.cache/regspeed/jax``.

The command line turns it on for every command (``cli.app``); Python code calls
:func:`enable` before its first compilation. Importing ``regspeed`` changes nothing.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import platform
import re
import stat
import subprocess
import sys
import warnings
from collections.abc import Mapping
from importlib import metadata
from pathlib import Path

from regspeed.errors import ConfigError

ENV = "REGSPEED_COMPILE_CACHE"
OPTION = "--compile-cache"
OFF = "off"
JAX_ENV = "JAX_COMPILATION_CACHE_DIR"  # JAX reads it when it is imported
MIN_COMPILE_TIME_ENV = "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"  # likewise; a user's value is kept
# JAX's default (1 s) keeps only programs that took a second to compile. Caching every one
# (0) made a warm `regspeed study --quick` faster and the cache barely larger (the
# numbers: docs/ARCHITECTURE.md "Compile once").
MIN_COMPILE_TIME_SECS = 0.0
# The lines of /proc/cpuinfo that decide which instructions a compiled program may use (the
# flags) and the CPU model LLVM tuned it for (XLA:CPU's loader refuses a program whose target
# features, tuning ones included, the host lacks: jax issue 38445).
_X86_KEYS = ("flags", "vendor_id", "cpu family", "model", "model name")
_ARM_KEYS = ("features", "cpu implementer", "cpu architecture", "cpu variant", "cpu part")
CPUINFO_KEYS = frozenset((*_X86_KEYS, *_ARM_KEYS, "isa", "cpu", "uarch"))  # the last: RISC-V, POWER


class CompileCacheWarning(UserWarning):
    """The default cache folder cannot be used (e.g. a read-only home): programs are compiled as
    if the cache were off. (A folder the user named is an error instead.)"""


@dataclasses.dataclass(frozen=True)
class Request:
    """Where the cache was asked to be: ``base`` (absolute, not yet resolved; None: off) and who
    asked (``source``: the option, an environment variable, or ``default``)."""

    base: Path | None
    source: str


_setting: str | None = None  # what enable() last applied: the resolved base folder, or OFF


def request(
    option: str | os.PathLike[str] | None = None, option_name: str = OPTION, environ: Mapping[str, str] | None = None
) -> Request:
    """The folder asked for: ``option`` (named ``option_name`` in messages), else
    ``REGSPEED_COMPILE_CACHE``, else ``JAX_COMPILATION_CACHE_DIR``, else the default. An empty
    value counts as unset; ``off`` (any case; not in JAX's variable) turns the cache off."""
    environ = os.environ if environ is None else environ
    for source, value in ((option_name, option), (ENV, environ.get(ENV)), (JAX_ENV, environ.get(JAX_ENV))):
        text = "" if value is None else os.fspath(value)
        if not text:
            continue
        if source != JAX_ENV and text.strip().lower() == OFF:
            return Request(None, source)
        return Request(Path(_expand_home(text, environ)).absolute(), source)
    return Request(default_base(environ), "default")


def default_base(environ: Mapping[str, str] | None = None) -> Path:
    """``$XDG_CACHE_HOME/regspeed/jax`` (an absolute XDG_CACHE_HOME only, as the XDG spec asks),
    else ``~/.cache/regspeed/jax``."""
    environ = os.environ if environ is None else environ
    xdg = environ.get("XDG_CACHE_HOME", "")
    root = Path(xdg) if os.path.isabs(xdg) else Path(_expand_home("~", environ)) / ".cache"
    return root / "regspeed" / "jax"


def _expand_home(text: str, environ: Mapping[str, str]) -> str:
    if text == "~" or text.startswith("~/"):
        home = environ.get("HOME") or os.path.expanduser("~")
        return home + text[1:]
    return os.path.expanduser(text)


# ------------------------------------------------------------------------ machine type


def machine_type(cpu: str | None = None) -> str:
    """The per-machine subfolder's name, e.g. ``x86_64-3fa2c1d0b9e4``: the CPU architecture and a
    short hash of what decides whether a compiled program runs correctly here: the OS, the
    architecture, the CPU's model and feature flags (``cpu``: :func:`cpu_description` unless
    given), and the JAX and jaxlib versions. JAX's own key already tells backends (CPU, GPU
    kind), platform versions and XLA flags apart; it does not include the CPU's features."""
    cpu = cpu_description() if cpu is None else cpu
    architecture = platform.machine().lower() or "unknown"
    facts = [platform.system(), architecture, cpu, _version("jax"), _version("jaxlib")]
    digest = hashlib.sha256("\n".join(facts).encode()).hexdigest()[:12]
    return f"{re.sub(r'[^a-z0-9_]', '_', architecture)}-{digest}"


def cpu_description(cpuinfo: str | None = None) -> str:
    """This machine's CPU model and feature flags as one text: on Linux the model and flag
    lines of ``/proc/cpuinfo`` (each distinct one once, flags sorted), on macOS
    ``sysctl``'s CPU and ``hw.optional`` feature entries, else ``platform.processor()``."""
    if cpuinfo is None and sys.platform.startswith("linux"):
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text(errors="replace")
        except OSError:
            cpuinfo = None
    if cpuinfo is not None:
        lines = set()
        for line in cpuinfo.splitlines():
            key, colon, value = line.partition(":")
            key = key.strip().lower()
            if colon and key in CPUINFO_KEYS:
                words = value.split()
                lines.add(f"{key}: {' '.join(sorted(words) if key in ('flags', 'features', 'isa') else words)}")
        if lines:
            return "\n".join(sorted(lines))
    if sys.platform == "darwin":
        names = ["machdep.cpu.brand_string", "machdep.cpu.features", "machdep.cpu.leaf7_features", "hw.optional"]
        try:  # a name this Mac does not have is reported on stderr; the others are still printed
            found = subprocess.run(["sysctl", *names], capture_output=True, text=True, timeout=10).stdout
        except (OSError, subprocess.SubprocessError):
            found = ""
        if found.strip():
            return "\n".join(sorted(found.strip().splitlines()))
    return platform.processor() or platform.machine()


def _version(distribution: str) -> str:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return "absent"


# ------------------------------------------------------------------------ the folder


def folder(asked: Request) -> Path | None:
    """The per-machine cache folder of ``asked``, created (mode 0o700) and checked, resolved;
    None when off. A folder that belongs to another user, that others can write to, or that
    cannot be made is a :class:`ConfigError` naming who asked for it; the default folder
    that cannot be made (no home, read-only file system) is a :class:`CompileCacheWarning`
    and None (no cache: every program is compiled, nothing else changes)."""
    if asked.base is None:
        return None
    field = "compile cache" if asked.source == "default" else asked.source
    hint = f"choose another folder with {OPTION} FOLDER or {ENV}=FOLDER, or turn the cache off ({OFF})"
    try:
        base = _make_folders(asked.base)
        _check_private(base, field, hint)
        machine = base / machine_type()
        _make_folders(machine)
        _check_private(machine, field, hint)
    except OSError as error:
        why = error.strerror or str(error)
        where = error.filename or asked.base
        if asked.source == "default":
            fix = hint.replace("another", "a")
            message = f"compiled programs are not cached: cannot use {where}: {why}; {fix}"
            warnings.warn(message, CompileCacheWarning, stacklevel=2)
            return None
        raise ConfigError(field, f"cannot use {where} as the compile cache: {why}") from None
    return machine


def _make_folders(path: Path) -> Path:
    """Create the missing folders of ``path`` with mode 0o700 (exactly: whatever the umask) and
    return its resolved form. Existing folders are left as they are (only checked, by the caller)."""
    missing = []
    existing = path
    while not os.path.lexists(existing):
        missing.append(existing.name)
        existing = existing.parent
    made = Path(os.path.realpath(existing))
    for name in reversed(missing):
        made = made / name
        try:
            os.mkdir(made, 0o700)
        except FileExistsError:  # made meanwhile by another process: checked like any existing folder
            made = Path(os.path.realpath(made))
        else:
            os.chmod(made, 0o700)
    return Path(os.path.realpath(made))


def _user() -> int | None:
    """This process's user id (None where there are no POSIX owners, e.g. Windows)."""
    return os.getuid() if hasattr(os, "getuid") else None


def _check_private(path: Path, field: str, hint: str) -> None:
    """Refuse ``path`` (resolved) unless it is a folder of this user that no one else can write
    to, inside folders that not everyone can write to (unless sticky, like /tmp)."""
    status = os.stat(path)
    if not stat.S_ISDIR(status.st_mode):
        raise ConfigError(field, f"{path} is not a folder; {hint}")
    user = _user()
    if user is None:
        return
    mode = stat.S_IMODE(status.st_mode)
    if status.st_uid != user:
        raise ConfigError(
            field,
            f"{path} belongs to another user (uid {status.st_uid}); compiled programs are run as they are "
            f"found, so the cache must be a folder of your own: {hint}",
        )
    if mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise ConfigError(
            field,
            f"{path} can be written by others (mode {mode:o}); compiled programs are run as they are found: "
            f"run `chmod go-w {path}`, or {hint}",
        )
    for parent in path.parents:
        mode = os.stat(parent).st_mode
        if mode & stat.S_IWOTH and not mode & stat.S_ISVTX:
            raise ConfigError(
                field,
                f"{path} is inside {parent}, which anyone can write to (mode {stat.S_IMODE(mode):o}): "
                f"they could replace the cache; {hint}",
            )


# ------------------------------------------------------------------------ turning it on


def enable(path: str | os.PathLike[str] | None = None) -> Path | None:
    """Turn JAX's persistent compilation cache on for this process and the processes it starts
    (call it before the first compilation; a later call switches folders), and return the
    per-machine folder in use, or None when off.

    ``path``: a cache folder, or ``"off"``; None: ``REGSPEED_COMPILE_CACHE``, else
    ``JAX_COMPILATION_CACHE_DIR``, else ``~/.cache/regspeed/jax`` (see the module's text).
    Raises :class:`ConfigError` for a folder that is not private. Sets the environment
    variables that JAX reads when it is imported (``JAX_COMPILATION_CACHE_DIR``, and
    ``JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS`` unless set) and ``REGSPEED_COMPILE_CACHE``
    (so child processes, Ray's local workers among them, use the same cache), and, if JAX is
    already imported, its configuration. JAX itself is not imported here."""
    return _enable(request(path, "path"))


def enable_for_command(option: str | None) -> Path | None:
    """:func:`enable` for the command line: ``option`` is ``--compile-cache``'s value."""
    return _enable(request(option, OPTION))


def setting() -> str | None:
    """What :func:`enable` last applied in this process (the resolved cache folder, above its
    per-machine subfolder, or ``off``), or None if it was never called: what a driver hands
    its Ray workers (:func:`enable_in_worker`)."""
    return _setting


def enable_in_worker(driver_setting: str | None) -> None:
    """In a Ray worker: use the driver's cache folder (``setting()`` there), with this machine's
    own subfolder. None: the driver never enabled one; the worker is left as it is. A folder
    refused or unusable here turns the worker's cache off (a warning): a cache only ever saves
    time, so a worker runs without one rather than fail."""
    if driver_setting is None:
        return
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", CompileCacheWarning)
            _enable(request(driver_setting, "the driver's compile cache"))
    except (ConfigError, CompileCacheWarning) as problem:
        warnings.warn(f"compiled programs are not cached in this worker: {problem}", CompileCacheWarning, stacklevel=2)
        _apply(None, None)


def _enable(asked: Request) -> Path | None:
    machine = folder(asked)
    _apply(asked, machine)
    return machine


def _apply(asked: Request | None, machine: Path | None) -> None:
    global _setting
    if machine is None:
        os.environ[ENV] = OFF
        os.environ.pop(JAX_ENV, None)
        _setting = OFF
    else:
        os.environ[ENV] = str(machine.parent)
        os.environ[JAX_ENV] = str(machine)
        os.environ.setdefault(MIN_COMPILE_TIME_ENV, repr(MIN_COMPILE_TIME_SECS))
        _setting = str(machine.parent)
    if "jax" in sys.modules:  # else JAX reads the variables when it is imported
        _configure_jax(machine)


def _configure_jax(machine: Path | None) -> None:
    import jax
    from jax.experimental.compilation_cache import compilation_cache

    wanted = None if machine is None else str(machine)
    if machine is not None:
        try:
            seconds = float(os.environ[MIN_COMPILE_TIME_ENV])
        except ValueError:
            raise ConfigError(
                MIN_COMPILE_TIME_ENV, f"must be a number of seconds (got {os.environ[MIN_COMPILE_TIME_ENV]!r})"
            ) from None
        jax.config.update("jax_persistent_cache_min_compile_time_secs", seconds)
    if jax.config.jax_compilation_cache_dir != wanted:
        jax.config.update("jax_compilation_cache_dir", wanted)
        compilation_cache.reset_cache()  # JAX opens its cache once: the next compilation opens this one
