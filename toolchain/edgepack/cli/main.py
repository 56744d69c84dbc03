"""The command line: parse, call the Python API, render. Nothing here that the API cannot do.

Start-up stays instant: this module imports only click and edgepack's light modules; rich,
pydantic and every framework are imported inside the command that needs them.
"""

from __future__ import annotations

import json
import sys
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click

from .. import __version__
from ..errors import EXIT_CODES, EdgepackError


@dataclass
class State:
    debug: bool = False
    targets_dirs: list[Path] = field(default_factory=list)
    profiles_dirs: list[Path] = field(default_factory=list)
    project: Path | None = None


class EdgepackGroup(click.Group):
    """Turns EdgepackError into one line on stderr and its exit code (traceback with --debug)."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (click.exceptions.Exit, click.ClickException, click.Abort):
            raise
        except EdgepackError as exc:
            if _debug(ctx):
                traceback.print_exc()
            click.echo(f"edgepack: error: {exc}", err=True)
            ctx.exit(exc.exit_code)
        except KeyboardInterrupt:
            click.echo("edgepack: interrupted", err=True)
            ctx.exit(130)
        except Exception as exc:  # a bug: say so, keep the traceback for --debug
            if _debug(ctx):
                traceback.print_exc()
            click.echo(f"edgepack: internal error: {type(exc).__name__}: {exc} "
                       "(run with --debug for the traceback and please report it)", err=True)
            ctx.exit(1)


def _debug(ctx: click.Context) -> bool:
    return isinstance(ctx.obj, State) and ctx.obj.debug


def _exit_codes_help() -> str:
    return "\b\nExit codes:\n" + "\n".join(f"  {k:>2}  {v}" for k, v in EXIT_CODES.items())


@click.group(cls=EdgepackGroup, epilog=_exit_codes_help(),
             context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="edgepack")
@click.option("--debug", is_flag=True, help="Show tracebacks and framework logs on errors.")
@click.option("--targets-dir", multiple=True, type=click.Path(path_type=Path),
              help="A folder of extra target YAML files (repeatable).")
@click.option("--profiles-dir", multiple=True, type=click.Path(path_type=Path),
              help="A folder of extra profile YAML files (repeatable).")
@click.option("--project", type=click.Path(path_type=Path),
              help="An edgepack.yaml project file (default: ./edgepack.yaml if present).")
@click.option("--trust-model-code", is_flag=True,
              help="Load Keras files with safe_mode off: Lambda layers and custom objects in "
                   "the file RUN on this machine. Only for files you trust like a script.")
@click.option("--max-seconds", type=click.FloatRange(min=0, min_open=True),
              help="Stop with exit 13 after S seconds (calibration, validation, everything; "
                   "or EDGEPACK_MAX_SECONDS).")
@click.option("--max-memory-mb", type=click.FloatRange(min=1),
              help="Stop with exit 13 above M MB resident, and refuse larger arrays declared by "
                   "a model (or EDGEPACK_MAX_MEMORY_MB).")
@click.pass_context
def cli(ctx: click.Context, debug: bool, targets_dir: tuple[Path, ...],
        profiles_dir: tuple[Path, ...], project: Path | None, trust_model_code: bool,
        max_seconds: float | None, max_memory_mb: float | None) -> None:
    """Ship trained neural networks to edge and mobile devices.

    \b
    edgepack targets                      the devices edgepack builds for
    edgepack inspect model.onnx           what a model file takes and gives
    edgepack build model.keras --target raspberrypi --calibration calib.npz --eval eval.npz
    """
    ctx.obj = State(debug=debug, targets_dirs=list(targets_dir), profiles_dirs=list(profiles_dir),
                    project=project)
    from ..limits import applied
    from ..trust import environment

    # in the environment, so worker processes inherit them; restored after the command
    ctx.with_resource(environment(
        EDGEPACK_TRUST_MODEL_CODE="1" if trust_model_code else None,
        EDGEPACK_MAX_SECONDS=None if max_seconds is None else repr(max_seconds),
        EDGEPACK_MAX_MEMORY_MB=None if max_memory_mb is None else repr(max_memory_mb)))
    ctx.with_resource(applied(max_seconds, max_memory_mb))  # also EDGEPACK_MAX_* alone


def _catalog(state: State) -> Any:
    from ..config.catalog import load_catalog
    from ..config.project import find_project, load_project

    project = load_project(state.project) if state.project else find_project(Path.cwd())
    tdirs = [*(project.targets_dirs if project else []), *state.targets_dirs]
    pdirs = [*(project.profiles_dirs if project else []), *state.profiles_dirs]
    return load_catalog(tdirs, pdirs)


def _print_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, default=str))


# ------------------------------------------------------------------------- targets, profiles

def _catalog_commands(kind: str, list_help: str, show_help: str) -> None:
    """`edgepack KIND [--json]` lists a catalog registry; `edgepack KIND show NAME` shows one.

    ``kind`` is "targets" or "profiles": the Catalog attribute and the render functions
    (``targets_table``/``target_detail``, ``profiles_table``/``profile_detail``) follow it.
    """
    singular = kind[:-1]

    @cli.group(name=kind, invoke_without_command=True, help=list_help)
    @click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
    @click.pass_context
    def listing(ctx: click.Context, as_json: bool) -> None:
        if ctx.invoked_subcommand is not None:
            return
        from . import render

        registry = getattr(_catalog(ctx.obj), kind)
        entries = [registry.entries[n] for n in registry.names()]
        if as_json:
            _print_json([{**e.item.model_dump(), "source": str(e.source)} for e in entries])
        else:
            getattr(render, f"{kind}_table")(entries)

    @listing.command("show", help=show_help)
    @click.argument("name")
    @click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
    @click.pass_obj
    def show(state: State, name: str, as_json: bool) -> None:
        from . import render

        catalog = _catalog(state)
        entry = getattr(catalog, kind).entry(name)
        if as_json:
            _print_json({**entry.item.model_dump(), "source": str(entry.source)})
        else:
            getattr(render, f"{singular}_detail")(entry, catalog)


_catalog_commands("targets",
                  "List the devices edgepack can build for (`targets show NAME` for one).",
                  "Show one target: device, arch, runtimes and versions, formats, default profile.")
_catalog_commands("profiles", "List the compression profiles (`profiles show NAME` for one).",
                  "Show one profile: precision, quantization, calibration and accuracy budget.")


# ------------------------------------------------------------------------------------ inspect

@cli.command()
@click.argument("model", type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def inspect(model: Path, as_json: bool) -> None:
    """Show a model's format, inputs and outputs, parameters, size and operators.

    MODEL is a .keras/.h5 file, a SavedModel folder, an .onnx, a .tflite or an OpenVINO .xml.
    """
    from .. import formats
    from . import render

    info = formats.inspect(model)
    if as_json:
        _print_json(info.to_dict())
    else:
        render.model_info(info)


# ------------------------------------------------------------------------------------ build

@cli.command()
@click.argument("model", type=click.Path(path_type=Path), required=False)
@click.option("--target", "-t", "targets", multiple=True,
              help="Target device (see `edgepack targets`); repeatable; default: the project's.")
@click.option("--model", "-m", "model_names", multiple=True, metavar="NAME",
              help="With a project of several models: build these (repeatable).")
@click.option("-j", "--jobs", type=click.IntRange(min=1), default=1, show_default=True,
              help="Matrix builds: cells built at once, each in its own process.")
@click.option("--no-cache", is_flag=True,
              help="Run every step (and every matrix cell) afresh; reuse and store nothing.")
@click.option("--executor", type=click.Choice(["local", "ray"]), default="local",
              show_default=True, help="Matrix builds: run cells here or as Ray tasks.")
@click.option("--address", metavar="HOST:PORT", help="With --executor ray: the cluster.")
@click.option("--profile", "-p", help="Compression profile; default: the target's.")
@click.option("--calibration", type=click.Path(path_type=Path),
              help="Calibration data: .npz (arrays named after the inputs, or x), a folder "
                   "of .npy files, or a folder of images.")
@click.option("--eval", "eval_data", type=click.Path(path_type=Path),
              help="Evaluation data, same forms; labels as y for accuracy.")
@click.option("-o", "--output", type=click.Path(path_type=Path),
              help="Output folder (default: build/NAME-TARGET).")
@click.option("--force", is_flag=True, help="Replace a non-empty output folder.")
@click.option("--threads", type=click.IntRange(min=1),
              help="Threads for host latency (default: the target's core count).")
@click.option("--runs", type=click.IntRange(min=1), default=100, show_default=True,
              help="Timed runs for host latency.")
@click.option("--warmup", type=click.IntRange(min=0), default=10, show_default=True,
              help="Warm-up runs before timing.")
@click.option("--input-shape", "input_shape", multiple=True, metavar="NAME:1x3x224x224",
              help="Fix an input's shape (TorchScript sources, static-shape targets).")
@click.option("--device", "devices", multiple=True, metavar="NAME",
              help="Also run the deliverables on this board (see `edgepack devices`).")
@click.option("--trust-new-host", is_flag=True,
              help="Accept an unknown device host key once (a changed key is always refused).")
@click.option("--metric", metavar="PKG.MODULE:FUNCTION",
              help="Your accuracy metric, called as f(outputs, labels) -> float.")
@click.option("--allow-accuracy-drop", is_flag=True,
              help="Exit 0 even when an artifact is over its profile's accuracy budget.")
@click.option("--prune", type=click.FloatRange(0, 1, min_open=True, max_open=True),
              help="Magnitude-prune this fraction of weights (or channels) before converting.")
@click.option("--structured", is_flag=True,
              help="Prune whole channels/units, so the model really gets smaller and faster.")
@click.option("--lowrank", type=click.FloatRange(0, 1, min_open=True),
              help="Factorize Dense/MatMul/1x1 conv by truncated SVD keeping this energy.")
@click.option("--distill", is_flag=True,
              help="Recover accuracy by distillation from the original model (Keras, "
                   "SavedModel and PyTorch .pt2 sources).")
@click.option("--student", type=click.Path(path_type=Path),
              help="Distil into this model (.keras, or .pt2 for PyTorch sources) instead of "
                   "the pruned/factorized one.")
@click.option("--train", "train_data", type=click.Path(path_type=Path),
              help="Training data for --distill (labels y are mixed in); default: the "
                   "calibration data, unlabelled. Never the --eval data.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.pass_obj
def build(state: State, model: Path | None, targets: tuple[str, ...],
          model_names: tuple[str, ...], jobs: int, no_cache: bool, executor: str,
          address: str | None, profile: str | None,
          calibration: Path | None, eval_data: Path | None, output: Path | None, force: bool,
          threads: int | None, runs: int, warmup: int, input_shape: tuple[str, ...],
          devices: tuple[str, ...], trust_new_host: bool, metric: str | None,
          allow_accuracy_drop: bool, prune: float | None, structured: bool,
          lowrank: float | None, distill: bool, student: Path | None, train_data: Path | None,
          as_json: bool) -> None:
    """Build MODEL for a target: convert, compress, validate, report.

    MODEL is a Keras file, a SavedModel folder, an ONNX, TFLite, PyTorch ExportedProgram (.pt2)
    or TorchScript file, or a project folder with an edgepack.yaml (default: this folder).
    A project of several models, or several targets, builds the whole matrix (cached).
    Every conversion hop and validation is cached by content (see `edgepack cache`).
    """
    from ..config.project import find_project
    from ..errors import UsageError
    from ..pipeline import builder as pipeline
    from . import render

    path = model or Path.cwd()
    project = find_project(path) if path.is_dir() else None
    listed = list(targets) or (project.spec.targets if project else [])
    if project is not None and (project.spec.models or model_names or len(listed) > 1):
        from ..pipeline.structural import StructuralRequest

        _build_matrix(state, project.path, tuple(targets), model_names, output, profile, jobs,
                      runs, warmup, threads, not no_cache, as_json, executor, address,
                      StructuralRequest(prune, structured, lowrank, distill, student, train_data))
        return
    if executor != "local":
        raise UsageError("--executor ray builds a project's matrix; MODEL is a single model")
    if model is None:
        raise UsageError("which model? pass MODEL or run in a folder with an edgepack.yaml")
    if len(listed) != 1:
        raise UsageError("which target? pass --target NAME",
                         hint=f"the project lists {', '.join(listed)}" if listed else
                         "see `edgepack targets`")
    target = listed[0]
    progress = render.ConsoleProgress(quiet=as_json)
    from ..formats.source import parse_input_shapes

    report = pipeline.build(
        model, target, profile=profile, calibration=calibration, eval=eval_data, output=output,
        force=force, threads=threads, runs=runs, warmup=warmup,
        input_shapes=parse_input_shapes(input_shape) or None, devices=devices,
        trust_new_host=trust_new_host, metric=metric,
        targets_dirs=tuple(state.targets_dirs), profiles_dirs=tuple(state.profiles_dirs),
        prune=prune, structured=structured, lowrank=lowrank, distill=distill, student=student,
        train=train_data, progress=progress, cache=not no_cache)
    progress.close()
    if as_json:
        click.echo(report.to_json())
    else:
        render.build_summary(report)
    if not report.passed:
        if allow_accuracy_drop:
            click.echo("edgepack: warning: over the accuracy budget, accepted with "
                       "--allow-accuracy-drop", err=True)
        else:
            raise_budget(report)


@cli.command("convert")
@click.argument("model", type=click.Path(path_type=Path))
@click.option("--to", "to", required=True, type=click.Choice(["tflite", "onnx", "openvino"]),
              help="The format to convert to.")
@click.option("-o", "--output", type=click.Path(path_type=Path),
              help="Output file (default: MODEL's name with the format's suffix, here).")
@click.option("--eval", "eval_data", type=click.Path(path_type=Path),
              help="Samples to check each hop on (default: seeded random inputs).")
@click.option("--input-shape", "input_shape", multiple=True, metavar="NAME:1x3x224x224",
              help="Fix an input's shape (required for TorchScript).")
@click.option("--force", is_flag=True, help="Replace an existing output file.")
def convert_command(model: Path, to: str, output: Path | None, eval_data: Path | None,
                    input_shape: tuple[str, ...], force: bool) -> None:
    """Convert MODEL to one format at fp32, every hop checked against the source."""
    from ..formats.source import parse_input_shapes
    from ..pipeline.convert_file import convert
    from . import render

    progress = render.ConsoleProgress()
    result = convert(model, to, output, eval=eval_data,
                     input_shapes=parse_input_shapes(input_shape) or None, force=force,
                     progress=progress)
    progress.close()
    click.echo(f"{result.path} ({result.conversion_path})")
    for hop in result.hops:
        click.echo(f"  {hop.src} -> {hop.dst}: {hop.tool_version}, max abs error "
                   f"{hop.check_max_abs_error:.3g} vs source on {hop.check_samples} samples")


def _build_matrix(state: State, project: Path, targets: tuple[str, ...],
                  model_names: tuple[str, ...], output: Path | None, profile: str | None,
                  jobs: int, runs: int, warmup: int, threads: int | None, use_cache: bool,
                  as_json: bool, executor: str, address: str | None,
                  structural: Any = None) -> None:
    """Every (model, target) cell of the project; a summary table; exit as the worst cell.
    ``structural`` (the --prune/--distill/... flags) applies to every cell."""
    from ..errors import EdgepackError
    from ..pipeline.matrix import run_matrix
    from . import render

    cells = run_matrix(project, models=model_names, targets=targets,
                       output=output or Path("build"), profile=profile, jobs=jobs, runs=runs,
                       warmup=warmup, threads=threads, use_cache=use_cache,
                       targets_dirs=tuple(state.targets_dirs),
                       profiles_dirs=tuple(state.profiles_dirs), executor=executor,
                       address=address, on_cell=None if as_json else render.matrix_cell,
                       structural=structural)
    if as_json:
        _print_json([c.to_dict() for c in cells])
    else:
        render.matrix_table(cells)
    worst = max((c.exit_code or (3 if c.status == "over budget" else 0)) for c in cells)
    if worst:
        failed = [f"{c.model}/{c.target}: {c.status}" for c in cells
                  if c.status in ("failed", "over budget")]
        error = EdgepackError(f"{len(failed)} of {len(cells)} cells did not pass: "
                              + "; ".join(failed))
        error.exit_code = worst
        raise error


@cli.group("cache")
def cache_group() -> None:
    """The content-addressed cache of builds and build steps ($EDGEPACK_CACHE, else
    ~/.cache/edgepack): matrix cells, conversion hops and validations."""


@cache_group.command("info")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def cache_info(as_json: bool) -> None:
    """Where the cache is, how many builds and steps it holds, how big they are."""
    from dataclasses import asdict

    from ..cache.store import cache_info as info_of
    from ..report.formatting import fmt_bytes

    info = info_of()
    if as_json:
        _print_json(asdict(info))
    else:
        click.echo(f"{info.root}: {info.builds.entries} builds ({fmt_bytes(info.builds.bytes)}), "
                   f"{info.steps.entries} steps ({fmt_bytes(info.steps.bytes)})")


@cache_group.command("clear")
def cache_clear() -> None:
    """Remove every cached build and step."""
    from ..cache.store import clear_cache
    from ..report.formatting import fmt_bytes

    gone = clear_cache()
    click.echo(f"removed {gone.builds.entries} cached builds and {gone.steps.entries} cached "
               f"steps ({fmt_bytes(gone.builds.bytes + gone.steps.bytes)})")


def raise_budget(report: Any) -> None:
    from ..errors import BudgetError

    failed = [f"{a.file}: " + ", ".join(f"{c.name} {c.reading()}"
                                        for c in a.budget.failures())
              for a in report.artifacts if a.budget and not a.budget.passed]
    on_device = [f"{a.file} on {d['device']}: " + "; ".join(d["failures"])
                 for a in report.artifacts for d in a.devices if not d["passed"]]
    what = "over the accuracy budget" if failed else "on-device validation failed"
    raise BudgetError(f"{what}: " + "; ".join(failed + on_device),
                      hint="the build folder and report were written for inspection")


# ------------------------------------------------------------------------------ bench, compare

@cli.command()
@click.argument("artifacts", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--threads", type=click.IntRange(min=1),
              help="Threads per runtime (default: the runtime's own, usually all cores).")
@click.option("--runs", type=click.IntRange(min=1), help="Timed runs (default 100).")
@click.option("--duration", type=float, help="Time for S seconds instead of a number of runs.")
@click.option("--warmup", type=click.IntRange(min=0), default=10, show_default=True,
              help="Warm-up runs before timing.")
@click.option("--batch", type=click.IntRange(min=1),
              help="Batch size of a model with a dynamic batch (default 1).")
@click.option("--runtime", help="Runtime to time with (default: the format's own; e.g. "
                                "openvino for an .onnx).")
@click.option("--device-type", default="CPU", show_default=True,
              help="OpenVINO device: CPU, GPU or NPU.")
@click.option("--precision-hint", help="OpenVINO inference precision: f32, bf16 or f16 "
                                       "(default: the device's own).")
@click.option("--inputs", type=click.Path(path_type=Path),
              help="Input samples (.npz, a folder of .npy or of images); default: seeded "
                   "random inputs.")
@click.option("--device", "devices", multiple=True, metavar="NAME",
              help="Run on this device over SSH instead (repeatable; see `edgepack devices`): "
                   "on-device latency and fidelity against this host.")
@click.option("--samples", type=click.IntRange(min=1), default=8, show_default=True,
              help="With --device: samples compared with the host's outputs.")
@click.option("--timeout", type=click.IntRange(min=1), default=600, show_default=True,
              help="With --device: seconds one device run may take.")
@click.option("--trust-new-host", is_flag=True,
              help="With --device: accept an unknown host key once and record it.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_obj
def bench(state: State, artifacts: tuple[Path, ...], threads: int | None, runs: int | None,
          duration: float | None, warmup: int, batch: int | None, runtime: str | None,
          device_type: str, precision_hint: str | None, inputs: Path | None,
          devices: tuple[str, ...], samples: int, timeout: int, trust_new_host: bool,
          as_json: bool) -> None:
    """Time ARTIFACTS (.tflite, .onnx, OpenVINO .xml), each in its own process.

    Reports p50/p90/p99, mean, std, min, throughput, load and first-inference time and peak
    memory, as an app on this machine would see them. With --device, on that board instead.
    """
    if devices:
        host_only = {"--duration": duration, "--batch": batch, "--runtime": runtime,
                     "--precision-hint": precision_hint,
                     "--device-type": None if device_type.upper() == "CPU" else device_type}
        _bench_on_devices(state, artifacts, devices, threads=threads, runs=runs, warmup=warmup,
                          inputs=inputs, samples=samples, timeout=timeout,
                          trust_new_host=trust_new_host, as_json=as_json, host_only=host_only)
        return
    from ..formats import detect
    from ..measure import host as benchmark
    from . import render

    progress = render.ConsoleProgress(quiet=as_json)
    results = benchmark.bench(
        artifacts, threads=threads, runs=runs, duration_s=duration, warmup=warmup, batch=batch,
        runtime=runtime, device=device_type, precision_hint=precision_hint, inputs=inputs,
        progress=progress)
    progress.close()
    if as_json:
        _print_json([{"artifact": str(p), "format": detect(p).name, "latency": s.to_dict()}
                     for p, s in zip(artifacts, results, strict=True)])
    else:
        render.bench_table([(str(p), s) for p, s in zip(artifacts, results, strict=True)])


@cli.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--source", type=click.Path(path_type=Path),
              help="The model the artifacts were made from (not with a build folder).")
@click.option("--eval", "eval_data", type=click.Path(path_type=Path),
              help="Evaluation data (.npz, folder of .npy or images; labels y); default: "
                   "seeded random inputs.")
@click.option("--threads", type=click.IntRange(min=1),
              help="Threads per runtime (default: the runtime's own).")
@click.option("--runs", type=click.IntRange(min=1), default=100, show_default=True,
              help="Timed runs per artifact.")
@click.option("--warmup", type=click.IntRange(min=0), default=10, show_default=True,
              help="Warm-up runs before timing.")
@click.option("--json", "as_json", is_flag=True, help="Print the comparison as JSON.")
@click.option("--markdown", "markdown_file", type=click.Path(path_type=Path),
              help="Also write the table as markdown to FILE.")
@click.option("--html", "html_file", type=click.Path(path_type=Path),
              help="Also write a self-contained HTML report with plots to FILE.")
def compare(paths: tuple[Path, ...], source: Path | None, eval_data: Path | None,
            threads: int | None, runs: int, warmup: int, as_json: bool,
            markdown_file: Path | None, html_file: Path | None) -> None:
    """Compare artifacts across formats and precisions: size, fidelity, accuracy, speed.

    \b
    edgepack compare build/digits-raspberrypi4           a build folder (its report.json)
    edgepack compare a.int8.tflite a.fp32.onnx --source model.keras --eval eval.npz
    """
    from ..measure import compare as compare_runner
    from . import render

    progress = render.ConsoleProgress(quiet=as_json)
    comparison = compare_runner.compare(paths, source=source, eval=eval_data, threads=threads,
                                        runs=runs, warmup=warmup, progress=progress)
    progress.close()
    written = compare_runner.write_renderings(comparison, markdown=markdown_file,
                                              html=html_file)
    if as_json:
        _print_json(comparison.to_dict())
        return
    render.compare_table(comparison)
    for path in written:
        click.echo(f"wrote {path}")


# ---------------------------------------------------------------------- package, verify, keygen

@cli.command("package")
@click.argument("build_dir", type=click.Path(path_type=Path))
@click.option("--version", "version", required=True,
              help="Release version, X.Y.Z (semantic versioning).")
@click.option("--format", "archive_format", type=click.Choice(["zip", "tar.gz"]), default="zip",
              show_default=True, help="Archive format.")
@click.option("--layout", type=click.Choice(["plain", "android"]), default="plain",
              show_default=True,
              help="plain: one flat folder; android: models and labels under assets/MODEL/.")
@click.option("--sign", "key", type=click.Path(path_type=Path),
              help="Sign the manifest with this ed25519 private key (see `edgepack keygen`).")
@click.option("--include-reference", is_flag=True, help="Also ship the fp32 reference artifact.")
@click.option("-o", "--output", type=click.Path(path_type=Path), default=Path("dist"),
              show_default=True, help="Folder for the bundles.")
@click.option("--force", is_flag=True, help="Replace bundles that exist.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def package_command(build_dir: Path, version: str, archive_format: str, layout: str,
                    key: Path | None, include_reference: bool, output: Path, force: bool,
                    as_json: bool) -> None:
    """Package a build folder as a release bundle, one per target.

    BUILD_DIR is a folder `edgepack build` wrote, or a folder of them. The bundle holds the
    artifacts, labels.txt, MODEL_CARD.md, the report and manifest.json (every file's sha256).
    Packaging the same build twice gives identical bytes: timestamps come from
    SOURCE_DATE_EPOCH, else from the build time.
    """
    from ..bundle import package
    from ..report.formatting import fmt_bytes

    bundles = package(build_dir, version, format=archive_format, layout=layout, sign=key,
                      output=output, include_reference=include_reference, force=force)
    if as_json:
        _print_json([b.to_dict() for b in bundles])
        return
    for b in bundles:
        signed = f"signed with key {b.key_id}" if b.key_id else "unsigned"
        click.echo(f"{b.path}  {fmt_bytes(b.size_bytes)}  {signed}  sha256 {b.sha256}")


@cli.command("verify")
@click.argument("bundle", type=click.Path(path_type=Path))
@click.option("--key", type=click.Path(path_type=Path),
              help="Require a valid signature by this ed25519 public key (the .pub file).")
@click.option("--extract", "extract_to", type=click.Path(path_type=Path),
              help="Once verified, extract the bundle into this new folder.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def verify_command(bundle: Path, key: Path | None, extract_to: Path | None,
                   as_json: bool) -> None:
    """Verify a release bundle before using it.

    \b
    Checks, in order: the archive is safe to open (no links, absolute or '..' paths, device
    files, duplicate names or zip bombs; nothing is extracted before), the signature when
    --key is given, the manifest's schema, every file's sha256, and that each model loads in
    its runtime with the inputs and outputs the manifest promises.
    Exit codes: 0 valid, 10 tampered or corrupt, 11 signature required but missing or
    invalid, 12 unsafe archive.
    """
    from ..bundle import verify

    result = verify(bundle, key, extract_to=extract_to)
    if as_json:
        _print_json(result.to_dict())
        return
    click.echo(f"{bundle}: valid: {result.name} {result.version} for {result.target}, "
               f"{result.files} files match the manifest")
    if result.signature_verified:
        click.echo(f"  signature: verified, key {result.signed_by}")
    elif result.signed_by:
        click.echo(f"  signature: signed with key {result.signed_by}, not checked (pass --key)")
    else:
        click.echo("  signature: unsigned")
    for m in result.models:
        click.echo(f"  {m.file}: loads in {m.runtime} ({m.runtime_version}); inputs and "
                   "outputs match the manifest")
    if result.extracted_to:
        click.echo(f"  extracted to {result.extracted_to}")


@cli.command("keygen")
@click.argument("path", type=click.Path(path_type=Path))
@click.option("--force", is_flag=True, help="Replace an existing key pair.")
def keygen_command(path: Path, force: bool) -> None:
    """Make an ed25519 key pair for signing bundles: PATH (private) and PATH.pub (public)."""
    from ..bundle.signing import key_id, keygen, load_public_key

    private, public = keygen(path, force=force)
    click.echo(f"private key: {private} (owner-only; keep it secret, it signs releases)")
    click.echo(f"public key:  {public} (key {key_id(load_public_key(public))}; give it to "
               "whoever runs edgepack verify)")


# ------------------------------------------------------------------------------------ devices

def _inventory(state: State) -> Any:
    from ..config.project import PROJECT_FILE
    from ..devices.inventory import load_inventory

    return load_inventory(project_file=state.project or Path.cwd() / PROJECT_FILE)


@cli.group("devices", invoke_without_command=True)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_context
def devices_group(ctx: click.Context, as_json: bool) -> None:
    """Boards reachable over SSH (`devices list` is the default).

    \b
    edgepack devices add pi4 ssh://pi@192.168.1.20 --target raspberrypi4
    edgepack devices check pi4 --trust-new-host      first contact: accept its host key once
    edgepack bench model.int8.tflite --device pi4    on-device latency and fidelity
    """
    if ctx.invoked_subcommand is None:
        ctx.invoke(devices_list, as_json=as_json)


@devices_group.command("add")
@click.argument("name")
@click.argument("url")
@click.option("--target", "-t", help="The device's target (see `edgepack targets`).")
@click.option("--key", type=click.Path(path_type=Path),
              help="Private key to log in with (default: the ssh agent and ~/.ssh/id_*).")
@click.option("--known-hosts", type=click.Path(path_type=Path),
              help="known_hosts file its host key is checked against (default ~/.ssh/known_hosts).")
@click.option("--python", default="python3", show_default=True,
              help="The board's python command.")
@click.option("--runtime", "runtimes", multiple=True, metavar="PACKAGE==VERSION",
              help="A runtime the fleet runs, checked besides the board's own (repeatable), "
                   "e.g. tflite-runtime==2.14.")
@click.option("--emulated", is_flag=True, default=None,
              help="Mark it emulated (detected for qemu-user boards anyway).")
@click.option("--force", is_flag=True, help="Replace a device of that name.")
@click.pass_obj
def devices_add(state: State, name: str, url: str, target: str | None, key: Path | None,
                known_hosts: Path | None, python: str, runtimes: tuple[str, ...],
                emulated: bool | None, force: bool) -> None:
    """Add device NAME at URL (ssh://user@host[:port]) to your inventory."""
    from pydantic import ValidationError

    from ..devices.inventory import DeviceSpec, add_device
    from ..errors import UsageError

    if target is not None:
        target = _catalog(state).targets.entry(target).item.name  # UsageError if unknown
    declared = {}
    for item in runtimes:
        package, sep, version = item.partition("==")
        if not sep:
            raise UsageError(f"--runtime {item}: expected PACKAGE==VERSION",
                             hint="e.g. --runtime tflite-runtime==2.14")
        declared[package.strip()] = version.strip()
    try:
        spec = DeviceSpec(url=url, target=target, key=str(key.expanduser().resolve())
                          if key else None, known_hosts=str(known_hosts.expanduser().resolve())
                          if known_hosts else None, python=python, emulated=emulated,
                          runtimes=declared)
    except ValidationError as exc:
        raise UsageError(f"device {name}: {exc.errors()[0]['msg']}") from None
    device = add_device(name, spec, replace=force)
    click.echo(f"added {name}: {device.user}@{device.host}:{device.port} to {device.source}; "
               f"next: `edgepack devices check {name}`")


@devices_group.command("list")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_obj
def devices_list(state: State, as_json: bool) -> None:
    """List the devices of your inventory and of the project's edgepack.yaml."""
    inventory = _inventory(state)
    rows = [{"name": n, **inventory.devices[n].spec.model_dump(exclude_defaults=True),
             "source": str(inventory.devices[n].source)} for n in inventory.names()]
    if as_json:
        _print_json(rows)
        return
    if not rows:
        click.echo(f"no devices (inventory: {inventory.user_file}); add one with "
                   "`edgepack devices add NAME ssh://user@host --target TARGET`")
    for row in rows:
        extra = "".join(f" {k}={row[k]}" for k in ("target", "runtimes", "emulated") if k in row)
        click.echo(f"{row['name']:16} {row['url']}{extra}")


@devices_group.command("remove")
@click.argument("name")
def devices_remove(name: str) -> None:
    """Remove device NAME from your inventory."""
    from ..devices.inventory import remove_device

    remove_device(name)
    click.echo(f"removed {name}")


@devices_group.command("check")
@click.argument("name")
@click.option("--trust-new-host", is_flag=True,
              help="Accept the host key of a device never seen before, once, and record it.")
@click.option("--timeout", type=click.IntRange(min=1), default=60, show_default=True,
              help="Seconds to wait for the board.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_obj
def devices_check(state: State, name: str, trust_new_host: bool, timeout: int,
                  as_json: bool) -> None:
    """Reach device NAME and report what it has: arch, OS, Python, runtimes, CPU, memory."""
    from ..devices.remote import check_device

    device = _inventory(state).get(name)
    facts = check_device(device, trust_new_host=trust_new_host, timeout=timeout)
    if as_json:
        _print_json({"device": name, "reachable": True, **facts.to_dict()})
        return
    runtimes = ", ".join(f"{k} {v}" for k, v in facts.packages.items()) or "none"
    lines = [
        ("reachable", f"yes ({device.user}@{device.host}:{device.port})"),
        ("arch", facts.arch), ("os", facts.os), ("python", facts.python),
        ("packages", runtimes), ("cpu", facts.cpu), ("cores", facts.cores),
        ("memory", f"{facts.memory_available_mb} MB available of {facts.memory_total_mb} MB"),
        ("disk", f"{facts.disk_free_mb} MB free in {facts.tmp_dir}"),
        ("throttled", facts.throttled or "not readable"),
        ("temperature", f"{facts.temperature_c} C" if facts.temperature_c is not None
         else "not readable"),
        ("emulated", f"{'YES: timings are not performance' if facts.emulated else 'no'} "
                     f"({facts.emulation})"),
    ]
    for key, value in lines:
        click.echo(f"{key:12} {value}")


def _bench_on_devices(state: State, artifacts: tuple[Path, ...], devices: tuple[str, ...], *,
                      threads: int | None, runs: int | None, warmup: int,
                      inputs: Path | None, samples: int, timeout: int, trust_new_host: bool,
                      as_json: bool, host_only: dict[str, object]) -> None:
    """`bench --device`: every artifact on every device; exit 4 for a device problem, 3 for
    outputs that differ from the host's."""
    from ..errors import EdgepackError, UsageError
    from ..measure.devices import bench_artifacts

    given = [name for name, value in host_only.items() if value is not None]
    if given:
        raise UsageError(f"{', '.join(given)} cannot be used with --device",
                         hint="a device runs the artifact's own runtime on its CPU, one sample "
                              "timed; drop them")
    inventory = _inventory(state)
    resolved = [inventory.get(d) for d in devices]
    done = bench_artifacts(artifacts, resolved, samples=samples, inputs=inputs,
                           runs=runs or 100, warmup=warmup, threads=threads, timeout=timeout,
                           trust_new_host=trust_new_host)
    problems: list[EdgepackError] = []
    rows = []
    for item in done:
        for outcome in item.results:
            if isinstance(outcome, EdgepackError):
                problems.append(outcome)
                rows.append({"artifact": str(item.artifact), "error": str(outcome),
                             "exit_code": outcome.exit_code})
                continue
            rows.append({"artifact": str(item.artifact), **outcome.to_dict()})
            if not as_json:
                _echo_device_result(outcome)
    if as_json:
        _print_json(rows)
    mismatched = [o for item in done for o in item.results
                  if not isinstance(o, EdgepackError) and not o.passed]
    if problems:
        for other in problems[1:]:  # the first one is printed by the CLI's error handler
            click.echo(f"edgepack: error: {other}", err=True)
        raise problems[0]
    if mismatched:
        mismatched[0].raise_for_mismatch()


def _echo_device_result(result: Any) -> None:
    lat = result.latency
    emulated = "  EMULATED: timings are not performance" if result.emulated else ""
    click.echo(f"{result.artifact} on {result.device} ({result.facts.arch}, "
               f"{result.runtime_version}){emulated}")
    for fid, tol in zip(result.fidelity, result.tolerances, strict=True):
        click.echo(f"  fidelity {fid.name}: max_abs_err {fid.max_abs_error:.3g} (tolerance "
                   f"{tol:.3g}), cosine {fid.cosine:.6f} on {fid.samples} samples")
    for failure in result.failures:
        click.echo(f"  MISMATCH {failure}")
    click.echo(f"  latency: p50 {lat.p50_ms:.3f} ms, p90 {lat.p90_ms:.3f} ms, load "
               f"{lat.load_ms:.1f} ms, first {lat.first_inference_ms:.1f} ms, peak "
               f"{lat.peak_rss_mb or 0:.0f} MB ({lat.runs} runs, {lat.threads or 'default'} "
               "threads)")


def main() -> None:
    cli(prog_name="edgepack")


if __name__ == "__main__":
    sys.exit(main())
