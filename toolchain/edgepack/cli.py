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

from . import __version__
from .errors import EXIT_CODES, EdgepackError


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
    return "\b\nExit codes:\n" + "\n".join(f"  {k}  {v}" for k, v in EXIT_CODES.items())


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
@click.pass_context
def cli(ctx: click.Context, debug: bool, targets_dir: tuple[Path, ...],
        profiles_dir: tuple[Path, ...], project: Path | None) -> None:
    """Ship trained neural networks to edge and mobile devices.

    \b
    edgepack targets                      the devices edgepack builds for
    edgepack inspect model.onnx           what a model file takes and gives
    edgepack build model.keras --target raspberrypi --calibration calib.npz --eval eval.npz
    """
    ctx.obj = State(debug=debug, targets_dirs=list(targets_dir), profiles_dirs=list(profiles_dir),
                    project=project)


def _catalog(state: State) -> Any:
    from .catalog import load_catalog
    from .project import find_project, load_project

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
    from . import formats, render

    info = formats.inspect(model)
    if as_json:
        _print_json(info.to_dict())
    else:
        render.model_info(info)


# ------------------------------------------------------------------------------------ build

@cli.command()
@click.argument("model", type=click.Path(path_type=Path))
@click.option("--target", "-t", help="Target device (see `edgepack targets`); default: the "
              "project's target.")
@click.option("--profile", "-p", help="Compression profile; default: the target's.")
@click.option("--calibration", type=click.Path(path_type=Path),
              help="Calibration data: .npz (arrays named after the inputs, or x) or a folder "
                   "of .npy files.")
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
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.pass_obj
def build(state: State, model: Path, target: str | None, profile: str | None,
          calibration: Path | None, eval_data: Path | None, output: Path | None, force: bool,
          threads: int | None, runs: int, warmup: int, as_json: bool) -> None:
    """Build MODEL for a target: convert, compress, validate, report.

    MODEL is a Keras file, a SavedModel folder, or a project folder with an edgepack.yaml.
    """
    from . import pipeline, render
    from .errors import UsageError
    from .project import find_project

    if target is None:
        project = find_project(model) if model.is_dir() else None
        listed = project.spec.targets if project else []
        if len(listed) != 1:
            raise UsageError("which target? pass --target NAME",
                             hint=f"the project lists {', '.join(listed)}" if listed else
                             "see `edgepack targets`")
        target = listed[0]
    progress = render.ConsoleProgress(quiet=as_json)
    report = pipeline.build(
        model, target, profile=profile, calibration=calibration, eval=eval_data, output=output,
        force=force, threads=threads, runs=runs, warmup=warmup,
        targets_dirs=tuple(state.targets_dirs), profiles_dirs=tuple(state.profiles_dirs),
        progress=progress)
    progress.close()
    if as_json:
        click.echo(report.to_json())
    else:
        render.build_summary(report)
    if not report.passed:
        raise_budget(report)


def raise_budget(report: Any) -> None:
    from .errors import BudgetError

    failed = [f"{a.file}: " + ", ".join(f"{c.name} {c.value:.4f} (limit {c.limit})"
                                        for c in a.budget.failures())
              for a in report.artifacts if a.budget and not a.budget.passed]
    raise BudgetError("over the accuracy budget: " + "; ".join(failed),
                      hint="the build folder and report were written for inspection")


def main() -> None:
    cli(prog_name="edgepack")


if __name__ == "__main__":
    sys.exit(main())
