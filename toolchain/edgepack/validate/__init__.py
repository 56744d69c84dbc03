"""Validation: fidelity against the source, accuracy on labelled data, latency."""
