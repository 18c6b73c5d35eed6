"""The commands around the stages: evolve (which also takes a bare run folder), export, report,
serve, layers and the demo."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import typer

from .. import stages
from ..errors import UserError
from .app import DeviceOpt, ExecutorOpt, RayAddressOpt, RunOpt, StoreOpt, StudyArg, app, load, out, run_stage
from .tables import print_summary


@app.command()
def evolve(
    study: Optional[Path] = typer.Argument(None, dir_okay=False, help="The study YAML file (or use --run-dir)."),
    run: RunOpt = None,
    store: StoreOpt = None,
    device: DeviceOpt = None,
    run_dir: Optional[Path] = typer.Option(None, "--run-dir", help="Without a study: a run folder of checkpoints (epoch_<n>.<ext>, or Lightning's epoch=<k>-step=<s>.ckpt)."),
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
    from ..study import load_study, study_for_run_dir

    synth = {"repeats": repeats, "generator": generator, "image_size": image_size, "pool_size": pool_size,
             "adam_steps": adam_steps, "cma_generations": cma_generations, "adam_lr": adam_lr, "rf": rf,
             "epochs": _ints(epochs, "--epochs")}
    overrides = {"synth": _given(synth) or None, "store": str(store) if store else None, "device": device,
                 "precision": precision}
    overrides = _given(overrides)
    if layers:
        overrides["layers"] = [name.strip() for name in layers.split(",") if name.strip()]
    if study is not None:
        s = load_study(study, overrides)
    elif run_dir is not None:
        s = study_for_run_dir(run_dir, arch, store, overrides)
    else:
        raise UserError("Give a study file, or --run-dir with a folder of checkpoints.")
    jobs = run_stage(stages.evolve, s, executor, ray_address, run)
    out.print(f"{jobs} prototype jobs done; arrays in [bold]{s.store / 'arrays.zarr'}[/]")


def _given(options: dict) -> dict:
    """The options the user gave (not None)."""
    return {key: value for key, value in options.items() if value is not None}


def _ints(text: Optional[str], flag: str) -> Optional[list[int]]:
    if text is None:
        return None
    try:
        return [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise UserError(f"{flag} takes comma-separated integers, got {text!r}") from None


@app.command()
def export(study: StudyArg, run: RunOpt = None, store: StoreOpt = None,
           out_dir: Optional[Path] = typer.Option(None, "--out", help="Default: STORE/prototypes.")) -> None:
    """Write PNG grids of the stored prototypes, one per run, layer, epoch and repeat.

    Example: protoscope export study.yaml --out grids/
    """
    s = load(study, store, None)
    paths = stages.export(s, out_dir, run)
    out.print(f"{len(paths)} grids written" + (f" under [bold]{paths[0].parents[2]}[/]" if paths else ""))


@app.command()
def report(study: StudyArg, store: StoreOpt = None,
           out_dir: Optional[Path] = typer.Option(None, "--out", help="Where the site goes. Default: STORE/site.")) -> None:
    """The figures, and a static site of the whole study: overview, a page per unit with an epoch
    slider, the layer views, the atlases. It opens from disk (index.html); nothing needs a server.

    Example: protoscope report study.yaml
    """
    from ..report.site import write_site
    from ..store.lock import writing

    s = load(study, store, None)
    with writing(s, ("results",)):
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

    s = load(study, store, None)
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
def watch(study: StudyArg, store: StoreOpt = None, device: DeviceOpt = None, executor: ExecutorOpt = None,
          ray_address: RayAddressOpt = None,
          poll: float = typer.Option(5.0, "--poll", min=0.1, help="Seconds between looks at the run folders."),
          site: bool = typer.Option(True, "--site/--no-site", help="Draw the site after each new epoch (the figures at the end).")) -> None:
    """Follow the study's runs while they train: probes, prototypes and activations of each checkpoint
    as soon as it is completely written; what reads the whole series provisionally after each new
    epoch (STORE/provisional, marked on the site), and for good once all runs have finished. Ctrl-C
    stops; the next watch (or run) goes on from there.

    Example: protoscope train study.yaml   (in one shell)   protoscope watch study.yaml   (in another)
    """
    from ..stages.watch import yield_to_training

    s = load(study, store, device)
    yield_to_training()  # half the cores, below the training's priority (bench/watch_beside.py)
    last = [""]

    def said(states, done_now, provisional) -> None:  # a line when something changed, not every poll
        seen = ", ".join(f"{name} {len(st.complete)}/{len(st.planned)}" for name, st in states.items())
        if seen != last[0] or done_now:
            out.print(f"checkpoints complete: {seen}" + (f"; {done_now} jobs done" if done_now else ""), soft_wrap=True)
        if provisional:
            upto = ", ".join(f"{name} {epoch}" for name, epoch in provisional["through"].items())
            out.print(f"provisional results through epoch {upto} ({provisional['seconds']:.1f} s)", soft_wrap=True)
        last[0] = seen

    import functools

    result = run_stage(functools.partial(stages.watch, poll=poll, site=site, on_round=said), s, executor, ray_address,
                       writes=("results",))  # the training beside it holds the checkpoints
    out.print(f"watched {len(result)} runs to the end; store [bold]{s.store}[/]")


@app.command()
def layers(study: StudyArg, run: Optional[str] = typer.Option(None, "--run", "-r", help="Which run's architecture.")) -> None:
    """List the layer addresses of a study's architecture (what `layers:` may name).

    Example: protoscope layers study.yaml
    """
    from ..nets.layers import layer_names, major_layers
    from ..nets.models import run_model

    s = load(study, None, None)
    spec = s.run(run) if run else s.runs[0]
    model = run_model(spec)
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
    from ..demo import STUDIES, demo_study
    from ..study import builtin_study

    if study_name not in STUDIES:
        raise UserError(f"No built-in study {study_name!r}; valid: {', '.join(STUDIES)}.")
    if show_study:
        # plain stdout: rich would wrap long lines and break the YAML a user copies
        sys.stdout.write(builtin_study(study_name).read_text())
        return
    s = demo_study(out_dir, quick, study_name)
    figures = run_stage(stages.run, s, executor or (None if ray_address else "processes"), ray_address,
                        announce=f"{study_name} study ({'quick' if quick else 'full'}): store [bold]{s.store}[/]")
    print_summary(s, figures)
