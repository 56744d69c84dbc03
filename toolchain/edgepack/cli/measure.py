"""``edgepack bench`` (latency here or on a board) and ``edgepack compare`` (artifacts side by
side: size, fidelity, accuracy, speed)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from .app import State
from .options import (
    device_option,
    eval_option,
    json_option,
    print_json,
    runs_option,
    threads_option,
    trust_new_host_option,
    warmup_option,
)


@click.command()
@click.argument("artifacts", nargs=-1, required=True, type=click.Path(path_type=Path))
@threads_option("Threads per runtime (default: the runtime's own, usually all cores).")
@runs_option("Timed runs (default 100).")
@click.option("--duration", type=float, help="Time for S seconds instead of a number of runs.")
@warmup_option
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
@device_option("Run on this device over SSH instead (repeatable; see `edgepack devices`): "
               "on-device latency and fidelity against this host.")
@click.option("--samples", type=click.IntRange(min=1), default=8, show_default=True,
              help="With --device: samples compared with the host's outputs.")
@click.option("--timeout", type=click.IntRange(min=1), default=600, show_default=True,
              help="With --device: seconds one device run may take.")
@trust_new_host_option("With --device: accept an unknown host key once and record it.")
@json_option()
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
    from .render import ConsoleProgress, bench_table

    progress = ConsoleProgress(quiet=as_json)
    results = benchmark.bench(
        artifacts, threads=threads, runs=runs, duration_s=duration, warmup=warmup, batch=batch,
        runtime=runtime, device=device_type, precision_hint=precision_hint, inputs=inputs,
        progress=progress)
    progress.close()
    if as_json:
        print_json([{"artifact": str(p), "format": detect(p).name, "latency": s.to_dict()}
                    for p, s in zip(artifacts, results, strict=True)])
    else:
        bench_table([(str(p), s) for p, s in zip(artifacts, results, strict=True)])


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
    inventory = state.inventory()
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
        print_json(rows)
    mismatched = [o for item in done for o in item.results
                  if not isinstance(o, EdgepackError) and not o.passed]
    if problems:
        for other in problems[1:]:  # the first one is printed by the CLI's error handler
            click.echo(f"edgepack: error: {other}", err=True)
        raise problems[0]
    if mismatched:
        mismatched[0].raise_for_mismatch()


def _echo_device_result(result: Any) -> None:
    """One artifact on one board: fidelity against this host, mismatches, latency."""
    lat = result.latency
    emulated = "  EMULATED: timings are not performance" if result.emulated else ""
    click.echo(f"{result.artifact} on {result.device} ({result.facts.arch}, "
               f"{result.runtime_version}){emulated}")
    for fid, tol in zip(result.fidelity, result.tolerances, strict=True):
        click.echo(f"  fidelity {fid.name}: max_abs_err {fid.max_abs_error:.3g} (tolerance "
                   f"{tol:.3g}), cosine {fid.cosine:.6f} on {fid.samples} samples, against "
                   f"{result.compared_with}")
    for failure in result.failures:
        click.echo(f"  MISMATCH {failure}")
    click.echo(f"  latency: p50 {lat.p50_ms:.3f} ms, p90 {lat.p90_ms:.3f} ms, load "
               f"{lat.load_ms:.1f} ms, first {lat.first_inference_ms:.1f} ms, peak "
               f"{lat.peak_rss_mb or 0:.0f} MB ({lat.runs} runs, {lat.threads or 'default'} "
               "threads)")


@click.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--source", type=click.Path(path_type=Path),
              help="The model the artifacts were made from (not with a build folder).")
@eval_option("Evaluation data (.npz, folder of .npy or images; labels y); default: "
             "seeded random inputs.")
@threads_option("Threads per runtime (default: the runtime's own).")
@runs_option("Timed runs per artifact.", default=100)
@warmup_option
@json_option("Print the comparison as JSON.")
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
    from .render import ConsoleProgress, compare_table

    progress = ConsoleProgress(quiet=as_json)
    comparison = compare_runner.compare(paths, source=source, evaluation=eval_data, threads=threads,
                                        runs=runs, warmup=warmup, progress=progress)
    progress.close()
    written = compare_runner.write_renderings(comparison, markdown=markdown_file,
                                              html=html_file)
    if as_json:
        print_json(comparison.to_dict())
        return
    compare_table(comparison)
    for path in written:
        click.echo(f"wrote {path}")
