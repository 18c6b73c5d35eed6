"""The Typer app, the options commands share (declared once), and the one way a command runs a stage."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Callable, List, Optional

import typer
from rich.console import Console

from .. import stages

app = typer.Typer(
    help="protoscope: how the features of a neural network develop during training.",
    no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)
out = Console()
err = Console(stderr=True)

# A command lists the shared options it takes as `name: Alias = None`.
StudyArg = Annotated[Path, typer.Argument(exists=False, dir_okay=False, help="The study YAML file.")]
RunOpt = Annotated[Optional[List[str]], typer.Option("--run", "-r", help="Only this run (repeatable). Default: every run.")]
StoreOpt = Annotated[Optional[Path], typer.Option("--store", help="Override the study's store folder.")]
DeviceOpt = Annotated[Optional[str], typer.Option(
    "--device", help="auto (GPU when present), cpu, cuda, cuda:N. Default: the study's.")]
ExecutorOpt = Annotated[Optional[str], typer.Option(
    "--executor", help="local (this process, the default; the demo's: processes), "
    "processes (one per core of this machine) or ray (one task per job).")]
RayAddressOpt = Annotated[Optional[str], typer.Option(
    "--ray-address", help="A running Ray cluster, host:port (implies --executor ray). "
    "Default with ray: $RAY_ADDRESS, else a local cluster started here.")]


@app.callback()
def _options(debug: bool = typer.Option(False, "--debug", help="Show full tracebacks on errors.")) -> None:
    """protoscope: how the features of a neural network develop during training."""


def load(study: Path, store: Optional[Path], device: Optional[str]):
    """The study file with the command's --store and --device applied."""
    from ..study import load_study

    overrides = {"store": None if store is None else str(store), "device": device}
    return load_study(study, {key: value for key, value in overrides.items() if value is not None})


def run_stage(verb: Callable, s, executor: Optional[str], ray_address: Optional[str], *args, announce: str = "",
              writes: tuple[str, ...] | None = None):
    """Run a stage verb on a loaded study as `verb(s, *args, progress=…, executor=…)`; returns its result.

    Every command that runs on an executor comes through here, so each makes it after the study loaded
    (a study's mistake is reported first) and before printing (so is a bad executor name: `announce`
    prints after it), and each closes it on success, error or Ctrl-C: no pool or local Ray is left to
    the interpreter's exit. Each holds the write locks of the parts of the store it `writes` (default:
    all) meanwhile: a second command on those refuses in one line naming this one (`store.lock`).
    """
    from ..executors import make_executor
    from ..store.lock import writing

    with make_executor(executor, ray_address) as chosen, writing(s, writes):
        if announce:
            out.print(announce)
        with stages.new_progress() as progress:
            return verb(s, *args, progress=progress, executor=chosen)


def stage_command(name: str, verb: Callable, show: Callable, doc: str, per_run: bool = True,
                  writes: tuple[str, ...] | None = None) -> None:
    """Register `protoscope NAME`: load the study, run `verb` on the chosen executor, then `show(study,
    result)`. With `per_run`, the command takes --run and passes the names on to the verb."""
    if per_run:
        def command(study: StudyArg, run: RunOpt = None, store: StoreOpt = None, device: DeviceOpt = None,
                    executor: ExecutorOpt = None, ray_address: RayAddressOpt = None) -> None:
            s = load(study, store, device)
            show(s, run_stage(verb, s, executor, ray_address, run, writes=writes))
    else:
        def command(study: StudyArg, store: StoreOpt = None, device: DeviceOpt = None,
                    executor: ExecutorOpt = None, ray_address: RayAddressOpt = None) -> None:
            s = load(study, store, device)
            show(s, run_stage(verb, s, executor, ray_address, writes=writes))
    command.__doc__ = doc
    command.__name__ = name
    app.command(name)(command)
