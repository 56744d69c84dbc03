"""``edgepack build``: one model for one target, or a project's whole (model, target) matrix."""

from __future__ import annotations

from pathlib import Path

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
@device_option("Also run the deliverables on this board (see `edgepack devices`); the first "
               "board named, unless emulated, times int8 against fp32 for the speed step.")
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
    from .. import api
    from ..pipeline.source import parse_input_shapes
    from ..request import BuildRequest
    from .render import ConsoleProgress, build_summary, matrix_cell, matrix_table

    request = BuildRequest.create(
        model, targets, profile=profile, calibration=calibration, evaluation=eval_data,
        input_shapes=parse_input_shapes(input_shape) or None, threads=threads, runs=runs,
        warmup=warmup, metric=metric, allow_accuracy_drop=allow_accuracy_drop, devices=devices,
        trust_new_host=trust_new_host, prune=prune, structured=structured, lowrank=lowrank,
        distill=distill, student=student, train=train_data, cache=not no_cache, output=output,
        force=force, models=model_names, jobs=jobs, executor=executor, address=address,
        targets_dirs=state.targets_dirs, profiles_dirs=state.profiles_dirs,
        project=state.project)
    progress = ConsoleProgress(quiet=as_json)
    result = api.build(request, progress=progress, on_cell=None if as_json else matrix_cell)
    progress.close()
    if isinstance(result, api.MatrixResult) and as_json:
        print_json(result.to_list())
    elif isinstance(result, api.MatrixResult):
        matrix_table(result.cells)
    elif as_json:
        click.echo(result.to_json())
    else:
        build_summary(result)
    error, warnings = api.verdict(result, allow_accuracy_drop)
    for warning in warnings:
        click.echo(f"edgepack: warning: {warning}", err=True)
    if error is not None:
        raise error
