"""The command line: one thin command per stage, plus the demo.

User mistakes (`UserError`, bad options) print one line and exit 2; `--debug`
shows the traceback instead.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Callable, List, Optional

import typer
from rich.console import Console
from rich.table import Table

from . import stages
from .errors import UserError

app = typer.Typer(
    help="protoscope: how the features of a neural network develop during training.",
    no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)
out = Console()
err = Console(stderr=True)

# The options most commands share, declared once: a command lists the ones it takes as `name: Alias = None`.
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


def _executor(name: Optional[str], address: Optional[str]):
    """The executor a command runs its stages on; the command closes it (`with`) before it returns,
    on success, error or Ctrl-C, so no pool or local Ray is left to the interpreter's exit."""
    from .executors import make_executor

    return make_executor(name, address)


@app.callback()
def _options(debug: bool = typer.Option(False, "--debug", help="Show full tracebacks on errors.")) -> None:
    """protoscope: how the features of a neural network develop during training."""


def _load(study: Path, store: Optional[Path], device: Optional[str]):
    from .study import load_study

    overrides = {"store": None if store is None else str(store), "device": device}
    return load_study(study, {key: value for key, value in overrides.items() if value is not None})


def _stage(verb: Callable, s, executor: Optional[str], ray_address: Optional[str], *args, announce: str = ""):
    """Run a stage verb on a loaded study as `verb(s, *args, progress, executor)`; returns its result.

    Every command that runs on an executor comes through here, so each makes it after the study loaded
    (a study's mistake is reported first) and before printing (so is a bad executor name: `announce`
    prints after it), and each closes it on success, error or Ctrl-C.
    """
    with _executor(executor, ray_address) as chosen:
        if announce:
            out.print(announce)
        with stages.new_progress() as progress:
            return verb(s, *args, progress, chosen)


@app.command()
def train(study: StudyArg, run: RunOpt = None, store: StoreOpt = None, device: DeviceOpt = None,
          executor: ExecutorOpt = None, ray_address: RayAddressOpt = None) -> None:
    """Train the study's runs with SimCLR, one checkpoint per epoch (epoch 0 = init).

    Interrupted runs resume after their last finished epoch.

    Example: protoscope train study.yaml --run clrjit-s0
    """
    s = _load(study, store, device)
    _stage(stages.train, s, executor, ray_address, run)
    out.print(f"checkpoints in [bold]{s.store / 'runs'}[/]")


@app.command()
def probe(study: StudyArg, run: RunOpt = None, store: StoreOpt = None, device: DeviceOpt = None,
          executor: ExecutorOpt = None, ray_address: RayAddressOpt = None) -> None:
    """Fit linear probes on frozen features of every checkpoint; results go to the metrics table.

    Example: protoscope probe study.yaml
    """
    s = _load(study, store, device)
    _stage(stages.probe, s, executor, ray_address, run)
    _print_summary(s)


@app.command()
def rsa(study: StudyArg, run: RunOpt = None, store: StoreOpt = None, device: DeviceOpt = None,
        executor: ExecutorOpt = None, ray_address: RayAddressOpt = None) -> None:
    """RDMs of a fixed probe set at every checkpoint and layer, their change over training, and figures.

    Settings come from the study's `rsa:` section (probe images, layers, distance, comparisons).
    Activations are stored once in STORE/activations.zarr, RDMs in STORE/rsa/, metrics in the table.

    Example: protoscope rsa study.yaml --run clrjit-s0
    """
    from .report.rsa import rsa_figures
    from .store import MetricsTable

    s = _load(study, store, device)
    _stage(stages.rsa, s, executor, ray_address, run)
    _print_paths(rsa_figures(s, MetricsTable(s.store).read(), s.store / "figures"))


@app.command()
def align(study: StudyArg, run: RunOpt = None, store: StoreOpt = None, device: DeviceOpt = None,
          executor: ExecutorOpt = None, ray_address: RayAddressOpt = None) -> None:
    """Convergent learning: align the units of paired runs, and of every epoch with a run's last one.

    Settings come from the study's `align:` section (pairs, epochs, tracked runs, thresholds,
    penalties); by default every pair of runs with the same condition is aligned at its last
    common epoch. Results go to STORE/align/ and the metrics table, figures to STORE/figures/.

    Example: protoscope align study.yaml

    Example: protoscope align study.yaml --run clrjit-s0   (only the pairs and tracks with this run)
    """
    from .report.align import align_figures, matching_table
    from .store import MetricsTable

    s = _load(study, store, device)
    _stage(stages.align, s, executor, ray_address, run)
    metrics = MetricsTable(s.store).read()
    rows = matching_table(metrics)
    if not rows.empty:
        _print_table("Matched correlation of units (mean over units; unpaired: below the threshold)", rows.columns,
                     ([f"{v:.3f}" if isinstance(v, float) else str(v) for v in row] for _, row in rows.iterrows()),
                     left={"pair", "epoch", "layer"})
    _print_paths(align_figures(s, metrics, s.store / "figures"))


@app.command()
def atlas(study: StudyArg, run: RunOpt = None, store: StoreOpt = None, device: DeviceOpt = None,
          executor: ExecutorOpt = None, ray_address: RayAddressOpt = None) -> None:
    """Activation atlases over training: one UMAP map per (run, layer) shared by every epoch, a grid of
    whitened mean activations per epoch, and an icon drawn for every cell (all cells in one batched run).

    Settings come from the study's `atlas:` section (defaults: the last studied layer, every epoch,
    2000 images, a 15 x 15 grid). Results go to STORE/atlas.zarr, figures to STORE/figures/ (and one
    PNG per epoch under STORE/figures/atlas/RUN/LAYER/).

    Example: protoscope atlas study.yaml --run clrjit-s0
    """
    from .report.atlas import atlas_figures

    s = _load(study, store, device)
    _stage(stages.atlas, s, executor, ray_address, run)
    _print_paths(path for path in atlas_figures(s, s.store / "figures") if "atlas_" in path.name)


@app.command()
def width(study: StudyArg, store: StoreOpt = None, device: DeviceOpt = None, executor: ExecutorOpt = None,
          ray_address: RayAddressOpt = None) -> None:
    """The width study: nets of several widths (fully connected at a constant parameter count, and
    convolutional) trained on an original task, frozen, and read by a linear classifier on a new task.

    Settings come from the study's `width:` section (default: translated digits, where -> what,
    widths 8-128, 3 seeds). Results go to the metrics table, the figure to STORE/figures/width_study.png.

    Example: protoscope width study.yaml
    """
    from .report.figures import width_study

    s = _load(study, store, device)
    metrics = _stage(stages.width, s, executor, ray_address, None)
    means = metrics.groupby(["layer", "space", "metric"])["value"].mean().unstack()
    rows = ([family, size, f"{row.get('width_original_accuracy', float('nan')):.3f}",
             f"{row.get('width_new_accuracy', float('nan')):.3f}"] for (family, size), row in means.iterrows())
    _print_table("Width study: test accuracy, mean over seeds", ("family", "width", "original task", "new task"),
                 rows, left={"family"})
    _print_paths(width_study(metrics, s.store / "figures" / "width_study"))


@app.command("run")
def run_(study: StudyArg, store: StoreOpt = None, device: DeviceOpt = None, executor: ExecutorOpt = None,
         ray_address: RayAddressOpt = None) -> None:
    """Run every stage of a study that is not yet stored (train, probe, evolve, analyze, rsa, align, report).

    Example: protoscope run study.yaml

    Example: protoscope run study.yaml --executor ray --ray-address 10.0.0.5:6379
    """
    s = _load(study, store, device)
    _print_summary(s, _stage(stages.run, s, executor, ray_address))


@app.command()
def evolve(
    study: Optional[Path] = typer.Argument(None, dir_okay=False, help="The study YAML file (or use --run-dir)."),
    run: RunOpt = None,
    store: StoreOpt = None,
    device: DeviceOpt = None,
    run_dir: Optional[Path] = typer.Option(None, "--run-dir", help="Without a study: a run folder of checkpoints (epoch_<n>.safetensors|.pt)."),
    arch: Optional[str] = typer.Option(None, "--arch", help="With --run-dir: the architecture, if the folder has no run.yaml."),
    layers: Optional[str] = typer.Option(None, "--layers", help="Comma-separated layer names, e.g. layer1,layer3."),
    epochs: Optional[str] = typer.Option(None, "--epochs", help="Comma-separated epochs. Default: every checkpoint."),
    repeats: Optional[int] = typer.Option(None, "--repeats", help="Independent seeds per unit."),
    generator: Optional[str] = typer.Option(None, "--generator", help="fourier, pixel or deepsim-fc6."),
    image_size: Optional[int] = typer.Option(None, "--image-size", help="Prototype size in pixels."),
    pool_size: Optional[int] = typer.Option(None, "--pool", help="Shared random latents per layer."),
    adam_steps: Optional[int] = typer.Option(None, "--adam-steps"),
    cma_generations: Optional[int] = typer.Option(None, "--cma-generations"),
    adam_lr: Optional[float] = typer.Option(None, "--adam-lr", help="Adam step, in units of the generator's latent scale."),
    rf: Optional[str] = typer.Option(None, "--rf", help="Receptive fields: layer (one map per layer), unit (per channel; costly) or none."),
    precision: Optional[str] = typer.Option(None, "--precision", help="auto (bf16 where native), bf16 or float32."),
    executor: ExecutorOpt = None,
    ray_address: RayAddressOpt = None,
) -> None:
    """Synthesize a prototype for every unit of the chosen layers, at every checkpoint, per repeat.

    Settings come from the study's `synth:` section, or from flags (which override it).
    Finished jobs are skipped, so an interrupted run resumes.

    Example: protoscope evolve study.yaml --device auto

    Example: protoscope evolve --run-dir runs/clrjit-s0 --layers layer1,layer4 --store out/protos
    """
    from .study import load_study, study_for_run_dir

    synth = {k: v for k, v in {"repeats": repeats, "generator": generator, "image_size": image_size,
                               "pool_size": pool_size, "adam_steps": adam_steps, "cma_generations": cma_generations,
                               "adam_lr": adam_lr, "rf": rf, "epochs": _ints(epochs, "--epochs")}.items() if v is not None}
    overrides = {"synth": synth or None, "store": str(store) if store else None, "device": device, "precision": precision}
    overrides = {key: value for key, value in overrides.items() if value is not None}
    if layers:
        overrides["layers"] = [name.strip() for name in layers.split(",") if name.strip()]
    if study is not None:
        s = load_study(study, overrides)
    elif run_dir is not None:
        s = study_for_run_dir(run_dir, arch, store, overrides)
    else:
        raise UserError("Give a study file, or --run-dir with a folder of checkpoints.")
    jobs = _stage(stages.evolve, s, executor, ray_address, run)
    out.print(f"{jobs} prototype jobs done; arrays in [bold]{s.store / 'arrays.zarr'}[/]")


def _ints(text: Optional[str], flag: str) -> Optional[list[int]]:
    if text is None:
        return None
    try:
        return [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise UserError(f"{flag} takes comma-separated integers, got {text!r}") from None


@app.command()
def analyze(study: StudyArg, run: RunOpt = None, store: StoreOpt = None, device: DeviceOpt = None,
            executor: ExecutorOpt = None, ray_address: RayAddressOpt = None) -> None:
    """Prototype metrics and their figures: diversity, rate of change and re-evolution consistency.

    Every stored prototype is masked by its receptive field and compared in each space of the study's
    `analyze:` section (pixels, a pretrained CNN, a checkpoint of the study) with each distance (mse,
    cosine). Only what is missing is computed; embeddings are stored in STORE/embeddings.zarr, per-unit
    values in STORE/unit_metrics.zarr, the rest in the metrics table. Then the figures are drawn.

    Example: protoscope analyze study.yaml
    """
    from .report.prototype_metrics import prototype_metric_figures
    from .report.prototypes import prototype_figures
    from .store import MetricsTable

    s = _load(study, store, device)
    count = _stage(stages.analyze, s, executor, ray_address, run)
    out.print(f"{count} (run, layer, space) results computed now; metrics in [bold]{s.store / 'metrics' / 'analyze'}[/]")
    figures = s.store / "figures"
    paths = prototype_metric_figures(MetricsTable(s.store).read("analyze"), figures, s.layers)
    _print_paths(paths + prototype_figures(s, figures))


@app.command()
def export(study: StudyArg, run: RunOpt = None, store: StoreOpt = None,
           out_dir: Optional[Path] = typer.Option(None, "--out", help="Default: STORE/prototypes.")) -> None:
    """Write PNG grids of the stored prototypes, one per run, layer, epoch and repeat.

    Example: protoscope export study.yaml --out grids/
    """
    s = _load(study, store, None)
    paths = stages.export(s, out_dir, run)
    out.print(f"{len(paths)} grids written" + (f" under [bold]{paths[0].parents[2]}[/]" if paths else ""))


@app.command()
def report(study: StudyArg, store: StoreOpt = None,
           out_dir: Optional[Path] = typer.Option(None, "--out", help="Where the site goes. Default: STORE/site.")) -> None:
    """The figures, and a static site of the whole study: overview, a page per unit with an epoch
    slider, the layer views, the atlases. It opens from disk (index.html); nothing needs a server.

    Example: protoscope report study.yaml
    """
    from .report.site import write_site

    s = _load(study, store, None)
    stages.report(s, site=False)
    result = write_site(s, out_dir)
    out.print(f"site: [bold]{result.path / 'index.html'}[/] ({result.written} files written in {result.seconds:.1f} s)",
              soft_wrap=True)


@app.command()
def serve(study: StudyArg, store: StoreOpt = None,
          port: int = typer.Option(8000, "--port", help="Port on localhost."),
          site_dir: Optional[Path] = typer.Option(None, "--site", help="Default: STORE/site.")) -> None:
    """Serve the study's site on http://localhost:PORT (the site also opens from disk without it).

    Example: protoscope serve study.yaml --port 8080
    """
    import functools
    import http.server

    s = _load(study, store, None)
    root = site_dir or s.store / "site"
    if not (root / "index.html").is_file():
        raise UserError(f"No site in {root}: run `protoscope report {study}` first.")
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    try:
        server = http.server.ThreadingHTTPServer(("127.0.0.1", port), handler)
    except OSError as exc:
        raise UserError(f"Cannot serve on port {port}: {exc.strerror}; choose another with --port.") from None
    out.print(f"serving [bold]{root}[/] on http://localhost:{port}/ (Ctrl-C stops)", soft_wrap=True)
    with server:
        server.serve_forever()


@app.command()
def layers(study: StudyArg, run: Optional[str] = typer.Option(None, "--run", "-r", help="Which run's architecture.")) -> None:
    """List the layer addresses of a study's architecture (what `layers:` may name).

    Example: protoscope layers study.yaml
    """
    from .nets.layers import layer_names, major_layers
    from .nets.models import build_model

    s = _load(study, None, None)
    spec = s.run(run) if run else s.runs[0]
    model = build_model(spec.arch, spec.width, spec.small_input)
    out.print("[bold]major:[/] " + " ".join(major_layers(model)))
    out.print("[bold]all:[/] " + " ".join(layer_names(model)))


@app.command()
def demo(quick: bool = typer.Option(False, "--quick", help="A small version in under two minutes."),
         out_dir: Optional[Path] = typer.Option(None, "--out", help="Where the demo's store goes. Default: out/STUDY."),
         study_name: str = typer.Option("demo", "--study", help="Which built-in study: demo (the shapes) or digits "
                                                                  "(real handwriting in colour)."),
         show_study: bool = typer.Option(False, "--show-study", help="Print the study's YAML and exit."),
         executor: ExecutorOpt = None, ray_address: RayAddressOpt = None) -> None:
    """Train clrjit and keepclr on the built-in shapes (or digits), run every stage, and print the
    seed's findings with their margins.

    Example: protoscope demo --quick
    """
    from .demo import STUDIES, demo_study
    from .study import builtin_study

    if study_name not in STUDIES:
        raise UserError(f"No built-in study {study_name!r}; valid: {', '.join(STUDIES)}.")
    if show_study:
        # plain stdout: rich would wrap long lines and break the YAML a user copies
        sys.stdout.write(builtin_study(study_name).read_text())
        return
    s = demo_study(out_dir, quick, study_name)
    figures = _stage(stages.run, s, executor or (None if ray_address else "processes"), ray_address,
                     announce=f"{study_name} study ({'quick' if quick else 'full'}): store [bold]{s.store}[/]")
    _print_summary(s, figures)


def _print_table(title: str, columns, rows, left=frozenset()) -> None:
    """A rich table of string cells; the `left` columns are left-justified, the others right."""
    table = Table(title=title)
    for column in columns:
        table.add_column(str(column), justify="left" if column in left else "right")
    for row in rows:
        table.add_row(*row)
    out.print(table)


def _print_paths(paths) -> None:
    """One line per figure (PNG) a stage drew, and one for the site's index.html where it wrote one."""
    for path in paths:
        if path.suffix == ".png":
            out.print(f"figure: {path}", soft_wrap=True)
        elif path.name == "index.html":
            out.print(f"report: {path} (open it in a browser)", soft_wrap=True)


def _print_summary(s, figures=None) -> None:
    wide = stages.final_table(s)
    if wide.empty:
        out.print("no probe results yet")
        return
    classifiers = sorted({c for c, _ in wide.columns})
    rows = []
    for (condition, run), row in wide.iterrows():
        cells = []
        for c in classifiers:
            init, final = row.get((c, "init")), row.get((c, "final"))
            cells.append(f"{init:.3f} -> {final:.3f}" if init == init and final == final else "-")
        rows.append([condition, run, *cells])
    _print_table("Linear probe test accuracy (init -> final epoch)", ["condition", "run", *classifiers], rows,
                 left={"condition", "run"})
    _print_findings(s)
    _print_paths(figures or [])


def _print_findings(s) -> None:
    """The seed's findings on this study, each with its margin (> 0: it holds); see report/findings.py."""
    from .report.findings import findings
    from .store import MetricsTable

    table = findings(MetricsTable(s.store).read(), list(s.layers))
    if table.empty:
        return
    rows = ([row.finding, row.value, "" if row.margin is None or row.margin != row.margin else f"{row.margin:+.3f}",
             "—" if row.holds is None else ("yes" if row.holds else "[red]no[/]")] for row in table.itertuples(index=False))
    _print_table("The seed's findings on this study (margin > 0: it holds)", ("finding", "value", "margin", "holds"),
                 rows, left={"finding", "value", "holds"})


def _error_line(message: str) -> None:
    """The one line a user error prints (a library's multi-line message is joined)."""
    from rich.markup import escape

    err.print(f"[red]error:[/] {escape(' '.join(message.split()))}", highlight=False, markup=True, soft_wrap=True)


def _interrupted() -> None:
    err.print("interrupted: finished work is stored; run the same command again to resume.", soft_wrap=True)


def main(argv: list[str] | None = None) -> int:
    """Entry point: returns the exit code (2 for user errors).

    Typer itself reports bad options and arguments (exit 2); we turn our own
    `UserError` into one line the same way.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    try:
        app(args=argv, prog_name="protoscope")
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        if code == 130:  # typer turns Ctrl-C into exit 130
            _interrupted()
        return code
    except UserError as exc:
        if debug:
            raise
        _error_line(str(exc))
        return 2
    except OSError as exc:  # permissions or a full disk, where no UserError named the file (zarr, figures)
        from .atomic import WRITE_ERRNOS, write_error

        if debug or exc.errno not in WRITE_ERRNOS:
            raise
        _error_line(str(write_error(exc.filename or "the store", exc, "write" if exc.filename is None else "access")))
        return 2
    except KeyboardInterrupt:
        _interrupted()
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
