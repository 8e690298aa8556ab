"""The wheel installs and works without the source checkout: built offline from a copy of the
sources, installed (``--no-deps``) into a fresh virtual environment that sees this environment's
dependencies but not its editable regspeed, and run from a folder outside the repository."""

from __future__ import annotations

import dataclasses
import os
import shutil
import subprocess
import sys
import sysconfig
import tomllib
from pathlib import Path

import pytest

from regspeed import __version__

pytestmark = pytest.mark.slow

pytest.importorskip("build")  # the `dev` extra: build, and setuptools >= 77 to build without network
REPO = Path(__file__).parents[1]
SOURCES = ("pyproject.toml", "README.md", "LICENSE", "src")  # what the build reads (LICENSE if there is one)
HIDDEN = ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "PYTHONUSERBASE", "VIRTUAL_ENV", "__PYVENV_LAUNCHER__")


@dataclasses.dataclass(frozen=True)
class Installed:
    """A fresh virtual environment with the wheel installed, and a working folder outside the repository."""

    venv: Path
    site_packages: Path
    work: Path
    env: dict[str, str]

    def run(self, *command: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        """Run one of the venv's programs (``python``, ``regspeed``) in the working folder; it must succeed."""
        program = str(self.venv / "bin" / command[0])
        done = subprocess.run(
            [program, *command[1:]], cwd=self.work, env=self.env, capture_output=True, text=True, timeout=timeout
        )
        assert done.returncode == 0, f"{' '.join(command)} exited {done.returncode}:\n{done.stdout}\n{done.stderr}"
        return done


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Installed:
    root = tmp_path_factory.mktemp("wheel")
    wheel = build_wheel(root)
    venv = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    pip = [sys.executable, "-m", "pip", "--python", str(python), "install", "--quiet", "--no-deps", "--no-index"]
    subprocess.run([*pip, str(wheel)], check=True)
    purelib = "import sysconfig; print(sysconfig.get_path('purelib'))"
    site_packages = Path(subprocess.check_output([python, "-c", purelib], text=True).strip())
    # The dependencies: this environment's site-packages as a plain path. Its .pth files (the
    # editable install's among them) are not processed from there, and the path comes after the
    # venv's own site-packages, so the installed wheel is the regspeed imported.
    (site_packages / "dependencies-from-the-test-venv.pth").write_text(sysconfig.get_path("purelib") + "\n")
    env = {name: value for name, value in os.environ.items() if name not in HIDDEN}
    env |= {"PATH": f"{venv / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}", "VIRTUAL_ENV": str(venv)}
    work = root / "work"
    work.mkdir()
    return Installed(venv, site_packages, work, env)


def build_wheel(root: Path) -> Path:
    """Build the sdist and, from it, the wheel (``python -m build``, offline: no build isolation)
    from a copy of the sources, so the build leaves nothing in the checkout; the wheel's path."""
    source = root / "source"
    source.mkdir()
    for name in SOURCES:
        if (REPO / name).is_dir():
            shutil.copytree(REPO / name, source / name, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
        elif (REPO / name).exists():
            shutil.copy2(REPO / name, source / name)
    dist = root / "dist"
    command = [sys.executable, "-m", "build", "--no-isolation", "--outdir", str(dist), str(source)]
    subprocess.run(command, check=True, capture_output=True, text=True)
    wheels = list(dist.glob("regspeed-*.whl"))
    assert len(wheels) == 1, wheels
    return wheels[0]


def test_the_installed_wheel_is_the_regspeed_imported(installed: Installed) -> None:
    done = installed.run("python", "-c", "import regspeed, sys; print(regspeed.__file__); print(*sys.path, sep='\\n')")
    module, *path = done.stdout.splitlines()
    assert Path(module).is_relative_to(installed.site_packages)
    dependencies = Path(sysconfig.get_path("purelib")).resolve()  # inside the checkout when its venv is
    from_checkout = [Path(entry).resolve() for entry in path if entry and Path(entry).resolve().is_relative_to(REPO)]
    assert from_checkout in ([], [dependencies])  # the dependencies' folder only: not src/, not the repository


def test_version_and_the_default_spec_come_from_the_wheel(installed: Installed) -> None:
    assert installed.run("python", "-m", "regspeed", "--version").stdout.strip() == f"regspeed {__version__}"
    assert installed.run("python", "-m", "regspeed.cli", "--version").stdout.strip() == f"regspeed {__version__}"
    assert installed.run("regspeed", "--version").stdout.strip() == f"regspeed {__version__}"
    printed = installed.run("regspeed", "spec").stdout
    assert printed == (REPO / "src" / "regspeed" / "study" / "default.toml").read_text()  # package data
    assert tomllib.loads(printed)["name"] == "default"


def test_the_quick_default_study_is_valid_and_planned(installed: Installed) -> None:
    """What ``regspeed study --quick`` runs, checked without running it (that takes minutes)."""
    (installed.work / "default.toml").write_text(installed.run("regspeed", "spec").stdout)
    check = (
        "from regspeed.study import runner, spec; quick = spec.quick(spec.load('default.toml')); "
        "print(quick.name, quick.seeds, "
        "sum(len(b.runs) for c in spec.cells(quick) for b in runner.plan(c.spec).batches))"
    )
    assert installed.run("python", "-c", check).stdout.split() == ["default-quick", "3", "42"]  # 2 boards x 7 x 3


# A supervised task: the same store, analysis and report as a Snake study, compiled in seconds
# (the Snake learners are the same package files; the tiny Snake study costs a minute of compiling).
TINY_LINREG = """
name = "tiny-linreg"
task = "linreg"
seeds = 3
budget = 300
[config]
inputs = 8
condition_number = 100.0
hidden = []
optimizer = "sgd"
learning_rate = 5e-3
[[regularizers]]
kind = "l2"
strengths = [0.01]
[evaluation]
every_updates = 0
[thresholds]
train_r2 = [0.5, 0.9]
[execution]
chunk_updates = 100
"""


def test_a_tiny_study_runs_end_to_end(installed: Installed) -> None:
    (installed.work / "tiny.toml").write_text(TINY_LINREG)
    installed.run("regspeed", "study", "tiny.toml", "--out", "tiny")
    study = installed.work / "tiny"
    assert (study / "report.html").is_file() and (study / "summary.md").is_file()
    assert "l2@0.01" in installed.run("regspeed", "status", "tiny").stdout
    installed.run("regspeed", "export", "tiny")
    assert (study / "curves.csv").read_text().startswith("condition,seed,metric,step,value")
