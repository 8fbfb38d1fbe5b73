"""A user's own method, metric and YAML from a folder outside the package, without forking."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

from harness.results import load
from tests.conftest import TINY

ROOT = Path(__file__).resolve().parents[1]

PLUGIN = '''
"""An outside plug-in: a bias-only method (BitFit-like) and a metric that counts biases."""
import torch

from harness import fields
from harness.methods import Adapted, register_method
from harness.pipeline import MEASUREMENTS

fields.declare(name="bias_tensors_trained", type="integer", unit="tensors",
               higher_is_better=False, terminal="biases", doc="bias tensors that trained")


@register_method("bias_only_test", four_bit=False)
def build(model, method, ctx):
    heads = set(ctx.head_modules)
    for name, param in model.named_parameters():
        param.requires_grad_(name.endswith(".bias") or bool(heads.intersection(name.split("."))))
    return Adapted(model, method, ctx)


@MEASUREMENTS.register("bias_tensors_trained")
def count_biases(setup, trained):
    model = setup.adapted.model
    return {"bias_tensors_trained": sum(1 for n, p in model.named_parameters()
                                        if p.requires_grad and n.endswith(".bias"))}
'''

YAML = '''# python -m harness plugins=[my_plugin.py] hydra.searchpath=[file://conf] method=bias_only_test
defaults:
  - method_schema
  - _self_

name: bias_only_test
lr: 1.0e-3
'''


def write_plugin(folder: Path) -> tuple[Path, Path]:
    (folder / "conf" / "method").mkdir(parents=True)
    (folder / "conf" / "method" / "bias_only_test.yaml").write_text(YAML)
    plugin = folder / "my_bias_plugin.py"
    plugin.write_text(textwrap.dedent(PLUGIN))
    return plugin, folder / "conf"


def test_an_outside_method_and_metric_run_from_their_own_folder(tmp_path):
    plugin, conf = write_plugin(tmp_path / "mine")
    store = tmp_path / "results.sqlite"
    command = [sys.executable, "-m", "harness", *TINY, "trainer.max_steps=2", "trainer.epochs=1",
               "trainer.latency_batches=1", f"store.url={store}", f"hydra.run.dir={tmp_path / 'run'}",
               f"plugins=[{plugin}]", f"hydra.searchpath=[file://{conf}]", "method=bias_only_test"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    row = load(store).iloc[0]
    assert row["status"] == "finished" and row["method"] == "bias_only_test"
    assert row["config"]["method"]["lr"] == 1.0e-3 and row["config"]["plugins"] == [str(plugin)]
    # the outside metric is a column of the store, measured in the worker process
    assert row["bias_tensors_trained"] > 0
    assert row["trainable_params"] < row["total_params"] / 10

    # a typo in the outside method's name is refused in one line, with the outside option listed
    bad = subprocess.run([*command[:-1], "method=bias_only_tst"], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2
    assert bad.stderr.strip().splitlines() == [bad.stderr.strip()]
    assert "Did you mean 'bias_only_test'?" in bad.stderr


def test_an_installed_plugin_joins_through_its_entry_point(tmp_path):
    plugin, _ = write_plugin(tmp_path / "mine")
    site = tmp_path / "site"
    (site / "my_bias_plugin-0.1.dist-info").mkdir(parents=True)
    (site / "my_bias_plugin-0.1.dist-info" / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: my-bias-plugin\nVersion: 0.1\n")
    (site / "my_bias_plugin-0.1.dist-info" / "entry_points.txt").write_text(
        "[peft_harness.plugins]\nbias = my_bias_plugin\n")
    (site / "my_bias_plugin.py").write_text(plugin.read_text())
    probe = ("from harness.plugins import load_plugins; load_plugins(); "
             "from harness.methods import METHODS; from harness import fields; import json; "
             "print(json.dumps(['bias_only_test' in METHODS, "
             "fields.get('bias_tensors_trained').terminal]))")
    env = {**os.environ, "PYTHONPATH": str(site)}
    out = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True,
                         timeout=120, cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-2000:]
    assert json.loads(out.stdout.strip().splitlines()[-1]) == [True, "biases"]
