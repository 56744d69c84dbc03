"""``edgepack build``: one model for one target, or a project's whole (model, target) matrix."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from .app import State
from .options import (
    device_option,
    eval_option,
    force_option,
    input_shape_option,
    json_option,
    output_option,
    print_json,
    runs_option,
    threads_option,
    trust_new_host_option,
    warmup_option,
)


@click.command()
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
@eval_option("Evaluation data, same forms; labels as y for accuracy.")
@output_option("Output folder (default: build/NAME-TARGET).")
@force_option("Replace a non-empty output folder.")
@threads_option("Threads for host latency (default: the target's core count).")
@runs_option("Timed runs for host latency.", default=100)
@warmup_option
@input_shape_option("Fix an input's dynamic dimensions in every delivered file (needed for "
                    "TorchScript sources).")
@device_option("Also run the deliverables on this board (see `edgepack devices`).")
@trust_new_host_option("Accept an unknown device host key once (a changed key is always "
                       "refused).")
@click.option("--metric", metavar="PKG.MODULE:FUNCTION|ROLE",
              help="Your accuracy metric, called as f(outputs, labels) -> float; or what the "
                   "first output is (classifier, detector, embedding, map, generic), so it is "
                   "judged by the measures that fit it.")
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
@json_option("Print the report as JSON.")
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
    from .render import ConsoleProgress, build_summary

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
    progress = ConsoleProgress(quiet=as_json)
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
        build_summary(report)
    if not report.passed:
        if allow_accuracy_drop:
            click.echo("edgepack: warning: over the accuracy budget, accepted with "
                       "--allow-accuracy-drop", err=True)
        else:
            raise_budget(report)


def _build_matrix(state: State, project: Path, targets: tuple[str, ...],
                  model_names: tuple[str, ...], output: Path | None, profile: str | None,
                  jobs: int, runs: int, warmup: int, threads: int | None, use_cache: bool,
                  as_json: bool, executor: str, address: str | None,
                  structural: Any = None) -> None:
    """Every (model, target) cell of the project; a summary table; exit as the worst cell.
    ``structural`` (the --prune/--distill/... flags) applies to every cell."""
    from ..errors import EdgepackError
    from ..pipeline.matrix import run_matrix
    from .render import matrix_cell, matrix_table

    cells = run_matrix(project, models=model_names, targets=targets,
                       output=output or Path("build"), profile=profile, jobs=jobs, runs=runs,
                       warmup=warmup, threads=threads, use_cache=use_cache,
                       targets_dirs=tuple(state.targets_dirs),
                       profiles_dirs=tuple(state.profiles_dirs), executor=executor,
                       address=address, on_cell=None if as_json else matrix_cell,
                       structural=structural)
    if as_json:
        print_json([c.to_dict() for c in cells])
    else:
        matrix_table(cells)
    worst = max((c.exit_code or (3 if c.status == "over budget" else 0)) for c in cells)
    if worst:
        failed = [f"{c.model}/{c.target}: {c.status}" for c in cells
                  if c.status in ("failed", "over budget")]
        error = EdgepackError(f"{len(failed)} of {len(cells)} cells did not pass: "
                              + "; ".join(failed))
        error.exit_code = worst
        raise error


def raise_budget(report: Any) -> None:
    from ..errors import BudgetError

    failed = [f"{a.file}: " + ", ".join(f"{c.label()} {c.reading()}"
                                        for c in a.budget.failures())
              for a in report.artifacts if a.budget and not a.budget.passed]
    on_device = [f"{a.file} on {d['device']}: " + "; ".join(d["failures"])
                 for a in report.artifacts for d in a.devices if not d["passed"]]
    what = "over the accuracy budget" if failed else "on-device validation failed"
    raise BudgetError(f"{what}: " + "; ".join(failed + on_device),
                      hint="the build folder and report were written for inspection")
