"""Structural passes on TensorFlow SavedModels, on their restored variables."""
