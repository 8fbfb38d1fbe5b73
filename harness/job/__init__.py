"""One job from the driver's side: the runner, the worker process and fork server, validation, plug-in loading, provenance."""
