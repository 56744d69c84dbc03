"""How long-running work tells its caller what it is doing: a neutral interface.

The build's stages, the structural passes, ``bench`` and ``compare`` report their long steps
here; the CLI draws them (cli/render.py), the Python API ignores them. It lives at the bottom of
the package so that nothing has to import the pipeline (or a terminal) to report progress.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator


class Progress:
    """Receives the long steps of a command; the default does nothing."""

    @contextlib.contextmanager
    def step(self, text: str) -> Iterator[None]:
        """Wraps one long step; ``text`` says what it is."""
        yield

    def warn(self, text: str) -> None:
        """A message the user must see now, not only in the report."""
