"""An installed (non-editable) rfsearch writes nothing into its installation.

The package is built into a wheel and installed with ``pip install --no-deps --target
SITE`` (from a copy of the sources pip needs, so the build's ``build/`` and
``*.egg-info`` folders land in a temporary folder, not in the repository). A search of
``nasbench101`` then runs in a subprocess that imports rfsearch from SITE, in an empty
working folder, with ``RFSEARCH_CACHE`` at the user's real cache (so the 423,624 cells are
read, not regenerated; a cache without them gets them, there). Every file under SITE must
be unchanged afterwards: no ``datasets/`` folder, no ``.npz``, no compiled kernel.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

from rfsearch.cache import ENV_CACHE, cache_dir

ROOT = Path(__file__).resolve().parent.parent
SEARCH = ("import rfsearch; print(rfsearch.__file__); "
          "df = rfsearch.search('nasbench101', sample=1000, where='rf_h > 0'); print(len(df))")


def pip(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pip", *args, "--disable-pip-version-check",
                           "--no-input", "-q"], capture_output=True, text=True, check=False,
                          timeout=300)


def install(target: Path, work: Path) -> None:
    """rfsearch from this repository, installed non-editable into ``target``."""
    src = work / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        if (ROOT / name).exists():
            shutil.copy2(ROOT / name, src / name)
    shutil.copytree(ROOT / "rfsearch", src / "rfsearch",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "*.so", "*.lock"))
    built = pip("install", "--no-deps", "--target", str(target), str(src))
    if built.returncode == 0:
        return
    # No build backend to fetch (offline): build the wheel with the installed setuptools.
    wheel = pip("wheel", "--no-deps", "--no-build-isolation", "-w", str(work / "dist"),
                str(src))
    assert wheel.returncode == 0, f"cannot build rfsearch:\n{built.stderr}\n{wheel.stderr}"
    (whl,) = (work / "dist").glob("rfsearch-*.whl")
    with zipfile.ZipFile(whl) as archive:
        archive.extractall(target)


def snapshot(folder: Path) -> dict[str, str]:
    """Every file and folder under ``folder``: relative path -> content hash ('dir' for
    folders)."""
    out = {}
    for path in sorted(folder.rglob("*")):
        key = path.relative_to(folder).as_posix()
        out[key] = "dir" if path.is_dir() else hashlib.sha256(path.read_bytes()).hexdigest()
    return out


def test_a_search_writes_nothing_into_the_installation(tmp_path):
    site = tmp_path / "site"
    install(site, tmp_path)
    assert (site / "rfsearch" / "native" / "dag.cc").exists()  # package data installed
    assert not (site / "rfsearch" / "datasets").exists()
    before = snapshot(site)
    assert any(k.endswith("rfsearch/search/runner.py") for k in before)
    work = tmp_path / "work"
    work.mkdir()
    env = dict(os.environ, PYTHONPATH=str(site), PYTHONDONTWRITEBYTECODE="1",
               JAX_PLATFORMS="cpu", **{ENV_CACHE: str(cache_dir())})
    proc = subprocess.run([sys.executable, "-c", SEARCH], cwd=work, env=env,
                          capture_output=True, text=True, check=False, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    imported, rows = proc.stdout.split()[-2:]
    assert Path(imported) == site / "rfsearch" / "__init__.py"  # not the editable checkout
    assert int(rows) > 0
    after = snapshot(site)
    assert sorted(set(after) - set(before)) == []  # no new files or folders
    assert sorted(k for k in before if after.get(k) != before[k]) == []  # none changed
    assert list(work.iterdir()) == []  # and nothing in the working folder
