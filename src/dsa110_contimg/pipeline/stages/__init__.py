"""Processing stages: each takes its config section and returns products."""
