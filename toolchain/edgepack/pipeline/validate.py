"""Stage 6, validate: embed each file's metadata, then measure the final file (fidelity,
accuracy, host latency), gate each deliverable on the profile's budget (its bounds stated
against the floor of the input grid read from that very file, validate/floor.py) and, with
``--device``, run it on the boards too.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from .. import __version__
from ..cache.keys import file_digest, model_files
from ..cache.records import Measurement
from ..config.profiles import Profile
from ..converters.converter import ConvertedFile
from ..errors import EdgepackError
from ..formats import get_format, metadata
from ..report.model import Artifact
from ..report.parts import DeviceRun
from ..runtimes import get_runtime
from ..runtimes.base import Session
from ..runtimes.integer_semantics import kernels_saturate
from ..signature import Signature, TensorSpec, batch_axis
from ..validate import budget as budget_gate
from ..validate.outputs import feed_for, outputs_in_file_order
from .context import BuildContext, Yardstick
from .convert import FormatBuild
from .measurement import measure, open_session

#: how much slower than its fp32 reference (host p50) a deliverable whose accuracy fallback
#: kept layers in float may be before the report warns: above run-to-run noise
SLOWER_THAN_FP32 = 1.1
#: formats whose runtime computes int8 files as written where its kernels saturate
#: (validate/outputs.py ``exact_options``), by the runtime's name
SEMANTICS_FORMATS = {"onnx": "ONNX Runtime", "openvino": "OpenVINO"}


def validate_all(ctx: BuildContext, builds: list[FormatBuild], profile: Profile,
                 yardstick: Yardstick, preprocessing: dict[str, Any] | None) -> list[Artifact]:
    """Every format's deliverable, then its reference, as the report's artifacts."""
    artifacts = []
    for build in builds:
        artifacts.append(validate(ctx, "deliverable", build.deliverable.precision,
                                  build.deliverable,
                                  profile, yardstick, preprocessing))
        if build.reference is not None:
            artifacts.append(validate(ctx, "reference", "fp32", build.reference, profile,
                                      yardstick, preprocessing))
    ctx.warnings.extend(slower_than_fp32(artifacts))
    ctx.warnings.extend(not_smaller_than_fp32(artifacts))
    return artifacts


def validate(ctx: BuildContext, role: str, precision: str, produced: ConvertedFile,
             profile: Profile, yardstick: Yardstick,
             preprocessing: dict[str, Any] | None) -> Artifact:
    """Embed metadata, then measure the final file: fidelity, accuracy, latency, budget."""
    file = produced.path
    extra = metadata.embed(produced.format, file,
                           _metadata(ctx, yardstick.signature, produced, preprocessing))
    shipped = [file, *(p for p in extra if p.suffix != ".json")]
    m = measure(ctx, produced, [file, *extra], yardstick)
    ctx.tools[get_runtime(get_format(produced.format).runtime).name] = m.runtime_version
    notes = [*produced.notes]
    own = yardstick.floors.of_file(produced.format, file) \
        if role == "deliverable" and yardstick.floors is not None else None
    if own is not None:
        notes.append(own.note)
    if produced.plain_int8 is not None:
        notes.append(_fallback_cost(ctx, produced, produced.plain_int8, m, yardstick))
    if precision in ("int8", "dynamic-int8") and produced.format in SEMANTICS_FORMATS \
            and kernels_saturate():
        runtime = SEMANTICS_FORMATS[produced.format]
        notes.append(
            f"fidelity computed as the file's int8 ops are written: this host's x86 CPU has "
            f"no VNNI, and {runtime}'s int8 kernels here add products in saturating 16-bit "
            f"steps, which ARM and VNNI CPUs do not; its host latency is those kernels'"
            if ctx.int8_as_written else
            f"fidelity computed through this host's int8 kernels: {runtime}'s here add "
            f"products in saturating 16-bit steps, as on {ctx.target.name}'s x86 CPU without "
            f"VNNI (targets' isa)")
    if m.cached:
        notes.append("fidelity, accuracy and host latency taken from the step cache: "
                     "measured by an earlier build of this byte-identical file, with the "
                     "same data and options, on a host with the same CPU")
    if ctx.target.constraints.static_shapes and any(s.is_dynamic for s in m.signature.inputs):
        notes.append(f"{file.name} still has dynamic input dimensions; {ctx.target.name} "
                     "needs static shapes")
    signature = _with_layouts(m.signature, produced).with_normalization(
        ctx.inputs.normalization)
    art = Artifact(
        role=role, format=produced.format, precision=precision, file=file.name,
        fallback=produced.fallback, size_bytes=sum(p.stat().st_size for p in shipped),
        sha256=file_digest(file), path=produced.hops, signature=signature.to_dict(),
        fidelity=m.fidelity, accuracy=m.accuracy, latency=m.latency, notes=notes,
        extra_files=sorted(p.name for p in extra),
        extra_sha256={p.name: file_digest(p) for p in sorted(extra)})
    if role == "deliverable":
        art.budget = budget_gate.evaluate(profile.name, profile.budget, m.fidelity,
                                          yardstick.accuracy, m.accuracy,
                                          own.floor if own is not None else None)
        if ctx.boards:  # device runs are never cached: they need a host session
            art.devices = on_devices(ctx, m.session or open_session(produced, ctx.threads),
                                     produced, yardstick, compressed=precision != "fp32")
    return art


def _fallback_cost(ctx: BuildContext, produced: ConvertedFile, plain: Path, shipped: Measurement,
                   yardstick: Yardstick) -> str:
    """What the layers the accuracy fallback kept out of int8 cost: plain int8's host latency
    is measured as the shipped file's is, both are recorded on their attempts, and the
    note states the size and latency ratios."""
    m = measure(ctx, replace(produced, path=plain, plain_int8=None), model_files(plain),
                yardstick)
    first = produced.fallback[0]
    chosen = next(a for a in produced.fallback if a.chosen)
    first.p50_ms, chosen.p50_ms = m.latency.p50_ms, shipped.latency.p50_ms
    return (f"accuracy fallback cost: the {chosen.out_of_int8()} make the file "
            f"{chosen.size_bytes / first.size_bytes:.3f}x the size of "
            f"plain int8 and its host p50 latency "
            f"{shipped.latency.p50_ms / m.latency.p50_ms:.2f}x plain int8's "
            f"({shipped.latency.p50_ms:.3f} ms vs {m.latency.p50_ms:.3f} ms)")


def on_devices(ctx: BuildContext, session: Session, produced: ConvertedFile,
               yardstick: Yardstick, compressed: bool) -> list[DeviceRun]:
    """The deliverable on each named board: latency there, and its outputs compared with
    the same artifact's host outputs (a device problem fails the build, exit 4), computed the
    way each board's int8 kernels add (devices/agreement.py ``HostReference``); ``session``
    gives the file's input names and layouts. A ``compressed`` file's board outputs may
    drift from the host's by integer rounding, as long as they follow the source model as
    closely (``as_faithful``): the source's outputs go along."""
    from ..devices.remote import DEVICE_SAMPLES, bench_on_devices

    sources = outputs_in_file_order(
        session, [_head(o, spec, DEVICE_SAMPLES)
                  for o, spec in zip(yardstick.outputs, yardstick.signature.outputs,
                                     strict=False)],
        yardstick.signature, produced.output_layouts) if compressed else None

    feed = feed_for(session, yardstick.evaluation.head(DEVICE_SAMPLES).inputs,
                    yardstick.signature, produced.input_layouts)
    names = ", ".join(board.name for board in ctx.boards)
    with ctx.progress.step(f"Running {produced.path.name} on {names}"):
        results = bench_on_devices(ctx.boards, produced.path, feed,
                                   runs=min(ctx.request.validation.runs, 20), warmup=3,
                                   threads=ctx.threads, sources=sources,
                                   trust_new_host=ctx.request.devices.trust_new_host)
    for r in results:
        if isinstance(r, EdgepackError):
            raise r
    return [DeviceRun.from_dict(r.to_dict()) for r in results]


def _head(output: np.ndarray, spec: TensorSpec, n: int) -> np.ndarray:
    """The first ``n`` samples of a source output, on its batch axis (a scalar whole)."""
    axis = batch_axis(spec.shape)
    return output if axis is None or output.ndim <= axis \
        else output[(slice(None),) * axis + (slice(0, n),)]


def _metadata(ctx: BuildContext, source: Signature, produced: ConvertedFile,
              preprocessing: dict[str, Any] | None) -> dict[str, Any]:
    """What an app needs to feed the artifact: name, version, layouts, normalization."""
    inputs = []
    for spec, lay in zip(source.inputs, produced.input_layouts, strict=True):
        d = spec.to_dict()
        d["layout"] = lay
        inputs.append(d)
    return {"name": ctx.inputs.name, "version": ctx.inputs.version, "producer": "edgepack",
            "edgepack_version": __version__, "inputs": inputs,
            "output_layouts": produced.output_layouts, "labels": ctx.inputs.labels,
            "preprocessing": preprocessing}


def slower_than_fp32(artifacts: list[Artifact]) -> list[str]:
    """Warnings for deliverables that the accuracy fallback's float layers made slower than
    their fp32 reference on this host (ONNX Runtime pays a layout change around each float
    island): the budget was met, but the int8 file no longer buys speed, and fp32 (or a looser
    budget) may be the better thing to ship. Measured on the build host, not on the device."""
    warnings = []
    for art in artifacts:
        chosen = next((a for a in art.fallback if a.chosen), None)
        ref = _reference_of(art, artifacts)
        if art.role != "deliverable" or not chosen \
                or not chosen.widened() \
                or ref is None or art.latency is None or ref.latency is None \
                or art.latency.p50_ms <= SLOWER_THAN_FP32 * ref.latency.p50_ms:
            continue
        warnings.append(
            f"{art.file} runs slower than its fp32 reference on this host (p50 "
            f"{art.latency.p50_ms:.3f} ms vs {ref.latency.p50_ms:.3f} ms) with the "
            f"{chosen.out_of_int8()} by the accuracy fallback: check "
            f"on the device (--device) before shipping it for speed; fp32 or a looser budget "
            f"may serve better")
    return warnings


def not_smaller_than_fp32(artifacts: list[Artifact]) -> list[str]:
    """Warnings for compressed deliverables at least as large as their fp32 reference: a
    model of a few hundred thousand weights is mostly graph description (an OpenVINO IR's
    .xml grows with every quantizer it gains), and a source whose weights are already stored
    in fp16 halves what int8 can save. The file may still be the faster one; the user should
    know that size is not what it buys."""
    warnings = []
    for art in artifacts:
        ref = _reference_of(art, artifacts)
        if art.role != "deliverable" or ref is None or art.size_bytes < ref.size_bytes:
            continue
        warnings.append(
            f"{art.file} ({art.precision}) is not smaller than its fp32 reference "
            f"({art.size_bytes / 1024:.1f} KB vs {ref.size_bytes / 1024:.1f} KB): "
            f"{art.precision} saves no space on this model (its file is mostly graph "
            f"description, or the reference already stores its weights in fp16); ship the "
            f"reference where size is what matters")
    return warnings


def _reference_of(art: Artifact, artifacts: list[Artifact]) -> Artifact | None:
    """The fp32 reference of ``art``'s format, if the build made one."""
    return next((r for r in artifacts if r.role == "reference" and r.format == art.format),
                None)


def _with_layouts(sig: Signature, produced: ConvertedFile) -> Signature:
    """The artifact's signature with the layouts its conversion path gave its tensors."""
    return Signature(
        inputs=tuple(replace(s, layout=lay) for s, lay in
                     zip(sig.inputs, produced.input_layouts, strict=False)),
        outputs=tuple(replace(s, layout=lay) for s, lay in
                      zip(sig.outputs, produced.output_layouts, strict=False)))
