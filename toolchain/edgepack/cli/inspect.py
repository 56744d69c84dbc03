"""``edgepack inspect``: what a model file takes and gives."""

from __future__ import annotations

from pathlib import Path

import click

from .options import json_option, print_json


@click.command()
@click.argument("model", type=click.Path(path_type=Path))
@json_option()
def inspect(model: Path, as_json: bool) -> None:
    """Show a model's format, inputs and outputs, parameters, size and operators.

    MODEL is a .keras/.h5 file, a SavedModel folder, an .onnx, a .tflite or an OpenVINO .xml.
    """
    from .. import formats
    from .render import model_info

    info = formats.inspect(model)
    if as_json:
        print_json(info.to_dict())
    else:
        model_info(info)
