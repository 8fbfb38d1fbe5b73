"""The command around the runs: preflight, launchers, overrides, protocols and the sweep's summary."""
