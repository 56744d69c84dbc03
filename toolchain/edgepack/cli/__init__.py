"""The command line: parse, call the Python API, render (``edgepack = edgepack.cli:main``)."""

from .main import cli, main

__all__ = ["cli", "main"]
