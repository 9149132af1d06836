"""Benchmarks that print figures (run each as a script; not part of the test suite)."""
