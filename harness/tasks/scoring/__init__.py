"""The heavy side of task types: task-quality metrics (through ``evaluate``) and a causal LM's
answer loss, candidate scores and generation (through torch). Imported where a run scores, never
by the preflight: ``harness.tasks`` imports this package's ``__init__`` only."""
