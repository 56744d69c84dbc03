"""Stage 5, compress: an int8 deliverable over the profile's accuracy budget goes through the
accuracy fallback (fallback.py) before it is accepted; each attempt is judged on the eval set,
from the step cache when this very file was judged before.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from ..cache.keys import model_files
from ..converters.converter import Converter
from ..errors import ConversionError
from ..formats import get_format
from .context import BuildContext, Yardstick
from .convert import FormatBuild, nothing_built
from .data import BuildData
from .fallback import fit_budget
from .fallback_attempts import BudgetMeter, FallbackSetup
from .load import Plan
from .measurement import measure_key


def fit_budgets(ctx: BuildContext, planned: Plan, converter: Converter,
                builds: list[FormatBuild], data: BuildData, yardstick: Yardstick,
                staging: Path) -> list[FormatBuild]:
    """The formats whose deliverable meets the budget, or came as close as the fallback could
    (the budget gate then fails the build); a format whose fallback broke is not built."""
    profile = planned.profile
    meter = BudgetMeter(yardstick, profile, ctx.accuracy, ctx.steps,
                        lambda p: measure_key(ctx, p, model_files(p.path), yardstick,
                                              latency=False), ctx.int8_as_written)
    fitted = []
    for build in builds:
        if build.deliverable.precision != "int8" or build.reference is None:
            # fp32/fp16, dynamic int8 made because static int8 could not be (convert.py):
            # quantizing again would fail as it did, or a source's own quantization (no fp32
            # reference, nothing to quantize again); the budget gate judges it as it is
            fitted.append(build)
            continue
        runtime = ctx.target.runtime(get_format(build.format).runtime or "")
        setup = FallbackSetup(converter, build.format, profile, data.calibration, staging,
                              ctx.inputs.name, meter, ctx.progress,
                              int16x8=runtime is not None and runtime.kernels_int16x8,
                              threads=ctx.threads,
                              board=ctx.boards[0] if ctx.boards else None,
                              trust_new_host=ctx.request.devices.trust_new_host,
                              more_calibration=data.more_calibration)
        try:
            fitted.append(replace(build, deliverable=fit_budget(setup, build.deliverable,
                                                                build.reference)))
        except ConversionError as exc:
            if len(planned.formats) == 1:
                raise
            ctx.not_built(build.format, profile.precision, str(exc))
    if not fitted:
        raise nothing_built(ctx)
    ctx.tools.update(converter.tools)
    return fitted
