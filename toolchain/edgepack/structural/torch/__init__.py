"""Structural passes on PyTorch ExportedPrograms."""
