"""The built wheel works on its own: configs inside it, the CLI installed, ``--version``.

The wheel is built from a copy of the sources (the checkout stays untouched), installed with
``--no-deps --no-index`` into a fresh virtual environment without pip, and run from a folder
outside the checkout. The new environment sees the test interpreter's site-packages (torch,
numpy, ...) through a ``.pth`` line *after* its own site-packages; a line in a ``.pth`` file
only extends ``sys.path``, so the editable install's own ``.pth`` hook there is never run and
the checkout's ``src`` is not importable. The test asserts that ``gaussrender`` is imported
from the new environment.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from importlib import metadata
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "src" / "gaussrender" / "configs"


def test_version_flag_prints_the_installed_version(capsys):
    import gaussrender
    from gaussrender.cli import main

    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out.strip() == f"gaussrender {metadata.version('gaussrender')}"
    assert gaussrender.__version__ == metadata.version("gaussrender")


def _setuptools_builds_wheels() -> str | None:
    """Why this interpreter cannot build the wheel offline, or None when it can."""
    try:
        import setuptools
    except ImportError:
        return "setuptools is not installed (the wheel is built offline, without build isolation)"
    major_minor = tuple(int(x) for x in setuptools.__version__.split(".")[:2])
    if major_minor < (70, 1):
        try:
            import wheel  # noqa: F401  (older setuptools need it for bdist_wheel)
        except ImportError:
            return f"setuptools {setuptools.__version__} < 70.1 needs the 'wheel' package to build wheels"
    return None


# Run by the new environment's interpreter (argv[1]: the checkout's src): where gaussrender is
# imported from, its version, whether the checkout is on sys.path, a shipped config resolved by
# name, and the CLI's exit code and output for --version, a subcommand's --help and
# --print-config, as JSON.
INSTALLED_REPORT = r"""
import contextlib, io, json, sys
import gaussrender
from gaussrender.cli import main
from gaussrender.train.config import resolve_config

def cli(*argv):
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        try:
            code = main(list(argv))
        except SystemExit as exit:
            code = exit.code
    return code, out.getvalue().strip()

print(json.dumps({
    "file": gaussrender.__file__,
    "version": gaussrender.__version__,
    "checkout_on_path": any(p.startswith(sys.argv[1]) for p in sys.path),
    "resolved": str(resolve_config("tpvformer_occ3d_render")),
    "--version": cli("--version"),
    "--help": cli("train", "--config", "tiny_synthetic_std", "--help"),
    "--print-config": cli("train", "--config", "tiny_synthetic_std", "--print-config"),
}))
"""


def _run(args: list, cwd: Path, env: dict, timeout: float = 300) -> str:
    proc = subprocess.run([str(a) for a in args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"{args} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc.stdout


@pytest.mark.slow
@pytest.mark.skipif(_setuptools_builds_wheels() is not None, reason=str(_setuptools_builds_wheels()))
def test_wheel_installs_and_runs_outside_the_checkout(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "PIP_INDEX_URL")}
    env.update(PIP_NO_INDEX="1", PIP_DISABLE_PIP_VERSION_CHECK="1", OMP_NUM_THREADS="1")

    # 1. build from a copy of the sources: setuptools writes build/ and *.egg-info next to them
    src = tmp_path / "src_copy"
    shutil.copytree(ROOT / "src", src / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, src / name)
    dist = tmp_path / "dist"
    _run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-index",
            "--no-build-isolation",
            "-q",
            "-w",
            dist,
            src,
        ],
        tmp_path,
        env,
    )
    (wheel,) = dist.glob("gaussrender-*.whl")
    with zipfile.ZipFile(wheel) as z:
        files = set(z.namelist())
    shipped = {f"gaussrender/configs/{p.name}" for p in CONFIGS.glob("*.yaml")}
    assert len(shipped) >= 12 and shipped <= files, sorted(shipped - files)
    assert "gaussrender/py.typed" in files and "gaussrender/cli.py" in files
    assert not any(f.startswith(("tests/", "configs/")) for f in files)

    # 2. a fresh environment without pip; the test interpreter's pip installs into it
    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", venv], tmp_path, env)
    python = venv / "bin" / "python"
    _run(
        [sys.executable, "-m", "pip", "--python", python, "install", "--no-deps", "--no-index", "-q", wheel],
        tmp_path,
        env,
    )
    site = Path(
        _run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], tmp_path, env).strip()
    )
    deps = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
    (site / "_test_dependencies.pth").write_text("".join(f"{d}\n" for d in sorted(deps)))

    # 3. run it from a folder outside the checkout: one interpreter answers every question
    # (each start imports torch, seconds of CPU); the console script itself runs the demo
    work = tmp_path / "work"
    work.mkdir()
    report = json.loads(_run([python, "-c", INSTALLED_REPORT, ROOT / "src"], work, env))
    assert Path(report["file"]).is_relative_to(venv), f"gaussrender imported from {report['file']}, not the new venv"
    assert report["version"] == metadata.version("gaussrender")
    # (the checkout's sources; its .venv may well hold the dependencies)
    assert not report["checkout_on_path"], "the checkout's src/ is on the new environment's sys.path"
    assert report["--version"] == [0, f"gaussrender {report['version']}"]

    # a shipped config by name: --help, then resolved from inside the installed wheel
    code, help_text = report["--help"]
    assert code == 0 and "--config" in help_text
    code, printed = report["--print-config"]
    assert code == 0 and "name: surroundocc" in printed and "size: tiny" in printed
    resolved = Path(report["resolved"])
    assert resolved.is_relative_to(venv) and resolved.is_file()

    # the demo through the installed console script, small: two orbit frames of 1/20 size
    exe = venv / "bin" / "gaussrender"
    out = _run([exe, "demo", "--frames", "2", "--size", "0.05", "--out", work / "demo"], work, env)
    assert "GaussRender loss" in out
    assert {p.name for p in (work / "demo").iterdir()} == {
        "overview.png",
        "sensor.png",
        "elevated.png",
        "bev.png",
        "orbit.gif",
    }
