"""The root ``edgepack`` group: global options, the State every command gets, one-line errors
with exit codes, and ``main`` (the console script).

Start-up stays instant: the cli modules import only click and edgepack's light modules at module
level; rich, pydantic and every framework are imported inside the command that needs them.
"""

from __future__ import annotations

import traceback
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click

from .. import __version__
from ..errors import EXIT_CODES, EdgepackError, EdgepackWarning


@dataclass
class State:
    """The global options, for the commands (``ctx.obj``)."""

    debug: bool = False
    targets_dirs: list[Path] = field(default_factory=list)
    profiles_dirs: list[Path] = field(default_factory=list)
    project: Path | None = None

    def loaded_project(self) -> Any:
        """The project (--project, else ./edgepack.yaml if present), or None."""
        from ..config.project import find_project, load_project

        return load_project(self.project) if self.project else find_project(Path.cwd())

    def catalog(self) -> Any:
        """Built-in targets and profiles, plus the project's folders and --targets-dir/
        --profiles-dir (the project is --project, else ./edgepack.yaml if present)."""
        from ..config.catalog import load_catalog

        project = self.loaded_project()
        tdirs = [*(project.targets_dirs if project else []), *self.targets_dirs]
        pdirs = [*(project.profiles_dirs if project else []), *self.profiles_dirs]
        return load_catalog(tdirs, pdirs)

    def inventory(self) -> Any:
        """The user's devices plus those of the project file (--project, else ./edgepack.yaml)."""
        from ..config.project import PROJECT_FILE
        from ..devices.inventory import load_inventory

        return load_inventory(project_file=self.project or Path.cwd() / PROJECT_FILE)


class EdgepackGroup(click.Group):
    """Turns EdgepackError into one line on stderr and its exit code (traceback with --debug)."""

    def invoke(self, ctx: click.Context) -> Any:
        """Runs the command; errors end as one line on stderr and an exit code, edgepack's
        warnings (a cache entry discarded, ...) as one line each."""
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("always", EdgepackWarning)  # each one, not once a line
                warnings.showwarning = _ShowWarning(warnings.showwarning)
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


class _ShowWarning:
    """Shows an EdgepackWarning as ``edgepack: warning: ...`` on stderr; hands any other
    warning to whoever showed warnings before (Python, or a test's recorder)."""

    def __init__(self, previous: Any):
        self.previous = previous

    def __call__(self, message: Warning | str, category: type[Warning], filename: str,
                 lineno: int, file: Any = None, line: str | None = None) -> None:
        if issubclass(category, EdgepackWarning):
            click.echo(f"edgepack: warning: {message}", err=True)
        else:
            self.previous(message, category, filename, lineno, file, line)


def _debug(ctx: click.Context) -> bool:
    """Whether --debug was given (the State may not exist yet when parsing fails)."""
    return isinstance(ctx.obj, State) and ctx.obj.debug


def _exit_codes_help() -> str:
    """The exit codes table at the end of ``edgepack --help``."""
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
              help="Load model files that carry code as their frameworks do: Keras Lambda "
                   "layers and custom objects, TorchScript, SavedModels and .pt2 files that "
                   "edgepack's check refuses. Their code RUNS on this machine. Only for files "
                   "you trust like a script (or trust_model_code: true in edgepack.yaml).")
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

    # config.project.PROJECT_FILE, named here so that a folder without one imports no pydantic
    if not trust_model_code and (project or (Path.cwd() / "edgepack.yaml").is_file()):
        loaded = ctx.obj.loaded_project()  # a project that trusts its own model files
        trust_model_code = bool(loaded and loaded.spec.trust_model_code)
    # in the environment, so worker processes inherit them; restored after the command
    ctx.with_resource(environment(
        EDGEPACK_TRUST_MODEL_CODE="1" if trust_model_code else None,
        EDGEPACK_MAX_SECONDS=None if max_seconds is None else repr(max_seconds),
        EDGEPACK_MAX_MEMORY_MB=None if max_memory_mb is None else repr(max_memory_mb)))
    ctx.with_resource(applied(max_seconds, max_memory_mb))  # also EDGEPACK_MAX_* alone


def main() -> None:
    """The ``edgepack`` console script."""
    cli(prog_name="edgepack")
