"""Hardening tests: fuzzing, fault injection, untrusted files. The fuzz counts are printed in
the terminal summary (the CI log), one line per target plus a total."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # model_files, hostile_files

import fuzzlib  # noqa: E402


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    lines = fuzzlib.summary_lines()
    if not lines:
        return
    terminalreporter.section("fuzz cases")
    for line in lines:
        terminalreporter.write_line(line)


@pytest.fixture(scope="session")
def fuzz_worker() -> fuzzlib.Worker:
    worker = fuzzlib.Worker()
    yield worker
    worker.stop()
