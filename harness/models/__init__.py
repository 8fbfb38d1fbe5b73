"""Where a model comes from (hub or local folder), its shapes read from its config, and loading it."""
