"""``edgepack convert``: one model to one format at fp32, each hop checked against the source."""

from __future__ import annotations

from pathlib import Path

import click

from .options import eval_option, force_option, input_shape_option, output_option


@click.command("convert")
@click.argument("model", type=click.Path(path_type=Path))
@click.option("--to", "to", required=True, type=click.Choice(["tflite", "onnx", "openvino"]),
              help="The format to convert to.")
@output_option("Output file (default: MODEL's name with the format's suffix, here).")
@eval_option("Samples to check each hop on (default: seeded random inputs).")
@input_shape_option("Fix an input's shape (required for TorchScript).")
@force_option("Replace an existing output file.")
def convert_command(model: Path, to: str, output: Path | None, eval_data: Path | None,
                    input_shape: tuple[str, ...], force: bool) -> None:
    """Convert MODEL to one format at fp32, every hop checked against the source."""
    from ..pipeline.convert_file import convert
    from ..pipeline.source import parse_input_shapes
    from .render import ConsoleProgress

    progress = ConsoleProgress()
    result = convert(model, to, output, evaluation=eval_data,
                     input_shapes=parse_input_shapes(input_shape) or None, force=force,
                     progress=progress)
    progress.close()
    click.echo(f"{result.path} ({result.conversion_path})")
    for hop in result.hops:
        click.echo(f"  {hop.src} -> {hop.dst}: {hop.tool_version}, max abs error "
                   f"{hop.check_max_abs_error:.3g} vs source on {hop.check_samples} samples")
