"""Structural passes on Keras models."""
