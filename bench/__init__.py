"""Benchmarks and soak runs for Mothership; run each as `python -m bench.<name>` from the repository root."""
