"""The CLI's progress lines: one line per step at any width, so nothing is left behind when a
narrow terminal would wrap them."""

from __future__ import annotations

import re
from io import StringIO

from edgepack.cli.render import ConsoleProgress
from rich.cells import cell_len
from rich.console import Console

STEP = "Validating mobilenet_v2.int8.tflite on 200 eval samples"
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\r")


def _run_steps(console: Console, *texts: str) -> list[str]:
    """The lines ``texts`` leave on ``console`` once done, without colours and cursor moves."""
    progress = ConsoleProgress(console=console)
    for text in texts:
        with progress.step(text):
            pass
    return [line for line in ANSI.sub("", console.file.getvalue()).splitlines() if line]


def test_a_finished_step_is_one_line_that_fits_a_narrow_terminal() -> None:
    console = Console(width=40, file=StringIO(), force_terminal=True)
    lines = _run_steps(console, STEP)
    done = [line for line in lines if line.startswith("✓")]
    assert len(done) == 1, lines
    assert done[0].startswith("✓ Validating mobilenet") and "…" in done[0]
    assert re.search(r" \(\d+\.\d s\)$", done[0]), done[0]  # the duration stays in view
    assert all(cell_len(line) <= 40 for line in lines), lines
    assert not any(line.endswith("s)") and not line.startswith("✓") for line in lines), lines


def test_a_step_that_fits_is_printed_whole() -> None:
    console = Console(width=40, file=StringIO(), force_terminal=True)
    done = [line for line in _run_steps(console, "Loading keras model") if line.startswith("✓")]
    assert re.fullmatch(r"✓ Loading keras model \(\d+\.\d s\)", done[0]), done


def test_in_a_file_each_step_is_one_whole_line() -> None:
    """A log keeps the whole text (nothing redraws there), still one line per step, and a
    file name with brackets is printed as it is, not read as markup."""
    lines = _run_steps(Console(width=40, file=StringIO()), STEP, "Timing [model].tflite")
    assert len(lines) == 2, lines
    assert re.fullmatch(rf"✓ {STEP} \(\d+\.\d s\)", lines[0]), lines
    assert lines[1].startswith("✓ Timing [model].tflite ("), lines
