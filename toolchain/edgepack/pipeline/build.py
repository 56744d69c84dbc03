"""One build: a model for one target -> deliverable artifacts + a report, written atomically.

load (plan, source) -> data -> the source's outputs -> structural passes -> control flow
folded -> convert -> compress (the accuracy fallback) -> validate -> report -> publish. Each
stage is a module of this package that takes the build context and what the stage before
returned; this module only sequences them. Every conversion hop and validation goes through
the step cache unless the request asks for none, and the report says which steps were reused.
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from ..progress import Progress
from ..report.model import Report
from . import compress, control_flow, convert, data, load, publish, report, structural, validate
from .context import BuildContext

if TYPE_CHECKING:
    from ..request import BuildRequest


def run_build(request: BuildRequest, progress: Progress | None = None,
              notes: Sequence[str] = ()) -> Report:
    """Build the request's one model for its one target; the Report is also in the folder.
    ``notes`` are build-wide facts the caller knows (how a PyTorch module was exported)."""
    ctx = BuildContext.create(request, progress)
    ctx.notes.extend(notes)
    publish.check_output(ctx)
    planned = load.plan(ctx)
    source = load.load_source(ctx, planned)
    samples = data.load_data(ctx, source, planned.profile)
    with publish.staged(ctx) as staging:
        with tempfile.TemporaryDirectory(prefix="edgepack-work-") as tmp:
            work = Path(tmp)
            yardstick = data.source_outputs(ctx, source, samples, planned.profile, work)
            changed = structural.run_structural(ctx, source, samples, yardstick, work)
            changed, samples, yardstick = control_flow.fold(ctx, source.format, changed,
                                                            samples, yardstick, work)
            converter = convert.make_converter(ctx, planned, source, samples, yardstick,
                                               changed, work)
            builds = convert.convert_formats(ctx, planned, converter, samples, staging)
            builds = compress.fit_budgets(ctx, planned, converter, builds, samples, yardstick,
                                          staging)
            artifacts = validate.validate_all(ctx, builds, planned.profile, yardstick,
                                              samples.preprocessing)
        result = report.make_report(ctx, planned, source, samples, yardstick, changed,
                                    artifacts)
        publish.publish(ctx, result, staging)
    return result
