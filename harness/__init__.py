"""PEFT benchmark harness: controlled comparisons of LoRA and its family.

The package is built in layers (docs/architecture.md). ``LAYERS`` lists them from the top down:
a module may import its own layer and the layers below it, never one above, and no import
(at the top of a module, inside a function, or for type annotations only) closes a circle.
``tests/test_architecture.py`` reads this declaration and checks every import against it.
"""
__version__ = "0.3.0"

# (layer, the modules and packages in it, what lives there), top first.
LAYERS = (
    ("dashboard", ("harness.dashboard",), "python -m harness.dashboard: a store explored live, read-only, locally"),
    ("command", ("harness.__main__",), "python -m harness: checks, launches and summarises a sweep"),
    ("report", ("harness.report",), "the store turned into tables, figures, findings and a PDF"),
    ("plan", ("harness.plan",), "the memory planner: what fits a device before anything runs"),
    ("sweep", ("harness.sweep",), "around the runs: preflight, launchers, overrides, protocols, summary"),
    ("job", ("harness.job",), "one job from the driver's side: runner, worker, fork server, validation, plug-ins"),
    ("run", ("harness.run",), "inside the training process: the steps of one run and the row it records"),
    ("results", ("harness.results",), "the store: backends, run identity, import and copy"),
    ("methods", ("harness.methods",), "the PEFT methods and baselines, one plug-in each"),
    ("training", ("harness.training",), "the tools a run's steps use: the loop, memory meters, energy"),
    ("tracking", ("harness.tracking",), "mirrors of a run to wandb (or a plug-in tracker)"),
    ("tasks", ("harness.tasks",), "data loaders, task types, tokenization, metrics"),
    ("models", ("harness.models",), "where a model comes from, its shapes, and loading it"),
    ("config", ("harness.config",), "the typed schema of every config group"),
    ("base", ("harness", "harness.errors", "harness.paths", "harness.registry", "harness.fields",
              "harness.quiet", "harness.digest", "harness.device"),
     "tools everything uses: errors, the plug-in registry, the recorded fields, devices"),
)
