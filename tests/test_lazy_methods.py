"""Checking a command line loads no deep-learning library: methods are declared from their source."""
import dataclasses
import importlib
import subprocess
import sys

import pytest

from harness.config import METHOD_SCHEMAS
from harness.methods import METHODS

HEAVY = ("torch", "transformers", "peft", "bitsandbytes")


# Methods for prompt tasks on a causal LM only: checked on such a task.
PROMPT_ONLY = ["p_tuning", "prefix_tuning", "prompt_tuning", "zero_shot"]


@pytest.mark.parametrize("prompt", [False, True])
def test_preflight_of_every_method_imports_no_deep_learning_library(prompt):
    every = sorted(p.stem for p in (__import__("harness").paths.conf_dir() / "method").glob("*.yaml"))
    names = PROMPT_ONLY if prompt else [n for n in every if n not in PROMPT_ONLY]
    where = ["model=tiny_llama", "task=rotten_tomatoes_prompt"] if prompt else []
    code = ("import sys\nfrom harness.job.validation import register_schemas\nfrom harness.sweep.preflight import preflight\n"
            "register_schemas()\n"
            f"plan = preflight(['-m', 'method={','.join(names)}', 'report.enabled=false', *{where!r}])\n"
            "print(len(plan.jobs))\n"
            f"print([m for m in {HEAVY!r} if m in sys.modules])\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    jobs, loaded = out.strip().splitlines()
    assert int(jobs) == len(names) == (4 if prompt else 53)
    assert loaded == "[]"


def test_a_bad_value_is_refused_without_importing_torch():
    code = ("import sys, runpy\nsys.argv = ['harness', 'method=vera', 'method.r=-3']\n"
            "try:\n    runpy.run_module('harness', run_name='__main__')\n"
            "except SystemExit as exc:\n    print(exc.code, 'torch' in sys.modules)\n")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert run.stdout.strip() == "2 False", run.stderr
    assert "method.r" in run.stderr


def test_declared_schemas_are_the_modules_own():
    """The schema built from a module's source has the fields, defaults and checks of its class."""
    import ast
    from pathlib import Path

    import pytest

    from harness.errors import ConfigError
    from harness.methods.spec import _schemas

    folder = Path(importlib.import_module("harness.methods").__file__).parent
    seen = 0
    for file in sorted(folder.glob("*.py")):
        module = f"harness.methods.{file.stem}"
        for name, schema in _schemas(ast.parse(file.read_text()), module, file).items():
            real = getattr(importlib.import_module(module), schema.__name__)
            assert schema is not real and schema.__module__ == real.__module__ == module
            assert ([(f.name, f.default) for f in dataclasses.fields(schema)]
                    == [(f.name, f.default) for f in dataclasses.fields(real)]), name
            with pytest.raises(ConfigError) as declared_error:
                schema(name=name, r=-1)
            with pytest.raises(ConfigError) as real_error:
                real(name=name, r=-1)
            assert str(declared_error.value) == str(real_error.value)
            seen += 1
    assert seen == len(METHOD_SCHEMAS) == 12  # 8 methods' own, peft's tuners, the 3 baselines


def test_a_declared_method_builds_through_its_module():
    from harness.methods.spec import _Deferred

    spec = METHODS.get("vera")
    assert not isinstance(spec.build, _Deferred) or spec.build.module == "harness.methods.vera"
    importlib.import_module("harness.methods.vera")
    assert not isinstance(METHODS.get("vera").build, _Deferred)
    assert METHODS.get("vera").four_bit is spec.four_bit
