"""A user's own method, metric and YAML from a folder outside the package, without forking."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

from harness.results import load
from tests.conftest import TINY

ROOT = Path(__file__).resolve().parents[1]

DOCS = ROOT / "docs" / "extending.md"



def doc_block(first_line: str) -> str:
    """The code block of docs/extending.md that starts with ``first_line``: the guide's own
    example is what runs here."""
    blocks = re.findall(r"```(?:python|yaml)\n(.*?)```", DOCS.read_text(), flags=re.S)
    (block,) = [b for b in blocks if b.startswith(first_line)]
    return block


def write_plugin(folder: Path) -> tuple[Path, Path, Path]:
    """The guide's BitFit method as an outside module and YAML, and its metric module."""
    (folder / "conf" / "method").mkdir(parents=True)
    (folder / "conf" / "method" / "bitfit.yaml").write_text(doc_block("# conf/method/bitfit.yaml"))
    method = folder / "my_bitfit.py"
    method.write_text(doc_block("# harness/methods/bitfit.py"))
    metric = folder / "my_bias_metric.py"
    metric.write_text(doc_block("# my_bias_metric.py"))
    return method, metric, folder / "conf"


def test_an_outside_method_and_metric_run_from_their_own_folder(tmp_path):
    method, metric, conf = write_plugin(tmp_path / "mine")
    store = tmp_path / "results.sqlite"
    command = [sys.executable, "-m", "harness", *TINY, "trainer.max_steps=2", "trainer.epochs=1",
               "trainer.latency_batches=1", f"store.url={store}", f"hydra.run.dir={tmp_path / 'run'}",
               f"plugins=[{method},{metric}]", f"hydra.searchpath=[file://{conf}]", "method=bitfit"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    row = load(store).iloc[0]
    assert row["status"] == "finished" and row["method"] == "bitfit"
    assert row["config"]["method"]["lr"] == 1.0e-3
    assert row["config"]["plugins"] == [str(method), str(metric)]
    # the outside metric is a column of the store, measured in the worker process
    assert row["bias_tensors_trained"] > 0
    assert row["trainable_params"] < row["total_params"] / 10

    # a typo in the outside method's name is refused in one line, with the outside option listed
    bad = subprocess.run([*command[:-1], "method=bitfti"], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2
    assert bad.stderr.strip().splitlines() == [bad.stderr.strip()]
    assert "Did you mean 'bitfit'?" in bad.stderr
    # what the method declares is enforced for outside methods too
    four_bit = subprocess.run([*command, "quant=nf4"], cwd=tmp_path, env=env,
                              capture_output=True, text=True, timeout=120)
    assert four_bit.returncode == 2 and "method=bitfit cannot train a 4-bit base" in four_bit.stderr


def test_an_installed_plugin_joins_through_its_entry_point(tmp_path):
    method, metric, _ = write_plugin(tmp_path / "mine")
    site = tmp_path / "site"
    (site / "my_bias_plugin-0.1.dist-info").mkdir(parents=True)
    (site / "my_bias_plugin-0.1.dist-info" / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: my-bias-plugin\nVersion: 0.1\n")
    (site / "my_bias_plugin-0.1.dist-info" / "entry_points.txt").write_text(
        "[peft_harness.plugins]\nbitfit = my_bitfit\nbiases = my_bias_metric\n")
    (site / "my_bitfit.py").write_text(method.read_text())
    (site / "my_bias_metric.py").write_text(metric.read_text())
    probe = ("from harness.job.plugins import load_plugins; load_plugins(); "
             "from harness.methods import METHODS; from harness import fields; import json; "
             "print(json.dumps(['bitfit' in METHODS, "
             "fields.get('bias_tensors_trained').terminal]))")
    env = {**os.environ, "PYTHONPATH": str(site)}
    out = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True,
                         timeout=120, cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-2000:]
    assert json.loads(out.stdout.strip().splitlines()[-1]) == [True, "biases"]


def test_the_guides_loader_example_registers_reads_and_is_checked(tmp_path):
    module = tmp_path / "my_reviews_loader.py"
    module.write_text(doc_block("# harness/tasks/my_reviews.py"))
    csv = tmp_path / "reviews.csv"
    csv.write_text("body,stars\n" + "".join(f"review number {i},{1 + i % 5}\n" for i in range(60)))
    probe = textwrap.dedent(f"""
        import json
        from harness.config import TaskConfig
        from harness.job.plugins import load_plugins
        from harness.tasks import data_path_hint, load_task
        load_plugins([{str(module)!r}])
        data = load_task(TaskConfig(name="my_reviews", loader="my_reviews", data_path={str(csv)!r}))
        print(json.dumps([data_path_hint("my_reviews"), data.label_names,
                          len(data.train) + len(data.validation) + len(data.test)]))
    """)  # in a process of its own: the session's registries stay as the harness ships them
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    hint, labels, rows = json.loads(out.stdout.strip().splitlines()[-1])
    assert hint == "path/to/reviews.csv" and labels == ["neg", "pos"] and rows == 60
