"""End-to-end tests: the `funnelcast` and `mlflow` commands as real processes on 127.0.0.1."""
