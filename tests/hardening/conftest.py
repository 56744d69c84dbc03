"""Hardening tests: fuzzing, fault injection, untrusted files. The fuzz counts are printed in
the terminal summary (the CI log), one line per target plus a total (tests/conftest.py)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # model_files, hostile_files

import fuzzlib  # noqa: E402


def pytest_sessionfinish(session: pytest.Session) -> None:
    """In a pytest-xdist worker: the tally goes to the controller, which prints it
    (tests/conftest.py)."""
    output = getattr(session.config, "workeroutput", None)
    if output is not None:
        output["fuzz_tally"] = fuzzlib.to_wire()


@pytest.fixture(scope="session")
def fuzz_worker() -> fuzzlib.Worker:
    worker = fuzzlib.Worker()
    yield worker
    worker.stop()
