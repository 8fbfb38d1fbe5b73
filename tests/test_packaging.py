"""An installed harness carries its configs: the wheel holds harness/conf with every YAML file."""
from __future__ import annotations

import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_every_harness_folder_is_a_listed_package():
    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    found = {"harness." + ".".join(p.relative_to(ROOT / "harness").parts)
             for p in (ROOT / "harness").rglob("*") if p.is_dir() and any(p.glob("*.py"))}
    assert found - {"harness."} <= listed, f"add to pyproject packages: {sorted(found - listed)}"


def test_wheel_ships_every_config_file(tmp_path):
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                    "-q", "-w", str(tmp_path), str(ROOT)], check=True)
    wheel = next(tmp_path.glob("*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    configs = {"harness/conf/" + str(p.relative_to(ROOT / "conf")) for p in (ROOT / "conf").rglob("*.yaml")}
    assert configs and configs <= names, sorted(configs - names)
    assert {"harness/metric_scripts/accuracy.py", "harness/metric_scripts/f1.py"} <= names
    assert {"harness/dashboard/static/plotly-basic.min.js", "harness/dashboard/static/LICENSE-plotly.js.txt"} <= names
    modules = {str(p.relative_to(ROOT)) for p in (ROOT / "harness").rglob("*.py")}
    assert modules <= names, sorted(modules - names)  # every layer's package is in the wheel

    # Installed (not editable) elsewhere, the package finds its configs and composes a run.
    site = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(site),
                    str(wheel)], check=True)
    probe = ("import harness, harness.paths, json; from hydra import compose, initialize_config_dir; "
             "from harness.job.validation import register_schemas, validate; register_schemas(); "
             "initialize_config_dir(config_dir=str(harness.paths.conf_dir()), version_base='1.3'); "
             "cfg = compose(config_name='config', overrides=['method=dora']); "
             "print(json.dumps([harness.__file__, str(harness.paths.conf_dir()), validate(cfg).method.name]))")
    out = subprocess.run([sys.executable, "-c", probe], cwd=tmp_path, capture_output=True, text=True,
                         env={"PYTHONPATH": str(site), "PATH": "/usr/bin:/bin"}, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    import json

    where, conf, method = json.loads(out.stdout.strip().splitlines()[-1])
    assert where.startswith(str(site)) and conf == str(site / "harness" / "conf") and method == "dora"
