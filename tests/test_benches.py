"""bench/ is code that is kept: every benchmark runs its quickest mode, and imports only public names.

Each bench/*.py (found by glob, so a new one is covered) runs in this process through its
`main(argv)` with the arguments in `QUICK`, writing only under the test's tmp_path, and must print
its result line. Benches that read a trained demo store get the session's `quick_demo` (and share
its xdist group). A bench missing from `QUICK` fails with a message saying to add its quick mode.
"""

from __future__ import annotations

import ast
import importlib
import importlib.util
import inspect
import re
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

BENCH = Path(__file__).parents[1] / "bench"
# modules in bench/ that are not benchmarks: imported by the benches that need them (so run with them)
HELPERS = {"common.py": "the EngineConfig helper every engine bench calls"}


@dataclass(frozen=True)
class Quick:
    """A bench's quickest mode. In `argv`, {tmp} is the test's tmp_path, {demo} the quick demo's store,
    {checkpoint} its clrjit-s0 last checkpoint, {results} bench/results (read only)."""

    argv: tuple[str, ...]
    expect: str  # a regular expression the bench's stdout must match (its result line)
    demo: bool = False  # reads the quick demo's store
    writes: tuple[str, ...] = ()  # files under {tmp} it must write
    slow: bool = False  # tens of seconds on 2 busy cores
    why: str = ""  # where the quick mode is not the bench itself: what runs instead
    parse_only: bool = False  # its quick mode costs 20-40 s: the suite parses its arguments (--help) instead


SMOKE_SITE = ("--runs", "1", "--epochs", "2", "--units", "8", "--steps", "1")

QUICK: dict[str, Quick] = {
    "align_memory.py": Quick(("--units", "64", "--before", "64", "--samples", "500"),
                             r"\n +64 +[\d.]+ GiB +[\d.]+ GiB\n", slow=True, parse_only=True,
                             why="three fresh processes importing torch: about 30 s"),
    "atlas_layout.py": Quick(("--quick", "--store", "{demo}", "--images", "60", "--epochs", "0,2",
                              "--layouts", "joint"),
                             r"\njoint +clrjit-s0@0=\d+ .*\(min \d+, max \d+;", demo=True, slow=True, parse_only=True,
                             why="--layouts joint: UMAP's JIT is most of it, the aligned layout's another ~30 s "
                                 "(tests/analyze/test_atlas_stage.py runs aligned_layout)"),
    "atlas_speed.py": Quick(("--checkpoint", "{checkpoint}", "--width", "0.125", "--images", "200", "--grid", "4",
                             "--cells", "2", "--steps", "2"),
                            r"batched_speedup=[\d.]+ quality_ratio=[\d.]+", demo=True, slow=True),
    "docs_blocks.py": Quick((), r"code blocks run by the tests: \d+ \(\d+ blocks \+ \d+ notebook cells\); "
                                r"marked not runnable: \d+"),
    "compare_stores.py": Quick(("{demo}", "{demo}"), r"differences\(\S+, \S+\): 0\nleftovers\(\S+\): 0", demo=True),
    "engine_ideas.py": Quick(("--layers", "layer1", "--batches", "16", "--repeats", "1", "--units", "2", "--steps", "8",
                              "--rules", "adam,rprop,coarse-to-fine"),
                             r"\nlayer1 \| coarse-to-fine +\| +[\d.]+ \| +[\dinf]+ \| [\d.]+\n"),
    "engine_profile.py": Quick(("--layers", "layer1", "--batches", "16", "--repeats", "1", "--top", "3"),
                               r"\n16 \| [\d.]+ \| \d+ \| \d+ \| \d+ \| \d+\nper-unit step"),
    "engine_settings.py": Quick(("--layers", "layer1", "--budgets", "0,2", "--image-size", "32", "--units", "4",
                                 "--engine", "pool_size=32"),
                                r"\+ patience 8 \(today's defaults\) +[-\d.]+ +[-\d.]+ +[\d.inf]+"),
    "executors.py": Quick(("--out", "{tmp}", "--dry-run"), r"(?s)local:.*processes:.*ray: .*--executor ray",
                          why="--dry-run: arguments, imports and the four commands; running them is four quick demos"),
    "findings.py": Quick(("--store", "{demo}"), r"probe: clrjit final − init ≥ 0\.10", demo=True),
    "isa_stage_times.py": Quick(("--logs", "{results}/demo_log.txt", "{results}/demo_log_avx2.txt"),
                                r"all jobs +\d+ +\d+ +[\d.]+",
                                why="--logs with the committed logs; without it, it runs two quick demos"),
    "kill_resume.py": Quick((), "", why="tests/test_kill_resume.py runs it; here its study is loaded (no subprocess)"),
    "onednn_route.py": Quick(("--counts-only",), r"demo SimCLR net \(resnet18, width [\d.]+\): \d+ of its",
                             why="--counts-only: the timings run fresh processes, and natively crash on AVX2 CPUs"),
    "onednn_sweep.py": Quick(("--short", "--channels", "2", "--threads", "1"),
                             r"1x1 stride 2, channels-last \| ISA AVX2 \| 1 thread\(s\) \| "
                             r"2: (ok|wrong|crash|hang|exit)"),
    "prototype_metrics.py": Quick(("--scales", "0.125", "--runs", "1", "--epochs", "2", "--repeats", "1",
                                   "--size", "16", "--no-warm-up"),
                                  r"\n0\.125 +\d+ +\d+ +[\d.]+ +[\d.]+"),
    "rsa_features.py": Quick(("--quick", "--store", "{demo}", "--out", "{tmp}/flat", "--images", "16"),
                             r"rsa_separation, features: flatten\n", demo=True, writes=("flat/metrics",), slow=True,
                             parse_only=True, why="an rsa stage over the quick demo: about 20 s"),
    "scale_soak.py": Quick(("--out", "{tmp}/soak", "--config", "2:layer1", "--width", "0.0625", "--size", "32",
                            "--stages", "probe,evolve", "--no-browser"),
                           r"failed=0 above_12GiB=0 memory_grows_with_epochs=", slow=True,
                           why="--stages probe,evolve: all nine stages are nine processes importing torch, ~3 min"),
    "scale_model.py": Quick(("--json", "{results}/synth_speed.json"), r"1 machine like the benchmark +\S+"),
    "silent_units.py": Quick(("--quick", "--store", "{demo}"), r"\nclrjit-s0 \| 2 \| layer4 \| 64 \| \d+ \| \d+ \| \d+ \| \d+\n",
                             demo=True),
    "site_scale.py": Quick(("--out", "{tmp}/site", *SMOKE_SITE, "--no-browser"), r"prototypes=32 write_s=[\d.]+",
                           writes=("site/store/site/index.html",),
                           why="--no-browser: tests/report/test_site_browser.py drives the site in Chromium"),
    "stage_times.py": Quick(("--quick", "--store", "{demo}", "--stages", "width"), r"width +[\d.]+ s", demo=True),
    "synth_speed.py": Quick(("--smoke", "--out", "{tmp}"), r"speedup_vs_per_unit=[\d.]+ iso_quality_speedup=[\d.inf]+",
                            writes=("synth_speed.json", "frontier.png")),
    "umap_cache.py": Quick(("--quick",), r"\n +cached +[\d.]+ +[\d.]+\n", slow=True, parse_only=True,
                           why="four fresh processes, two of them compiling umap-learn's kernels: about a minute"),
    "priors.py": Quick(("--quick", "--store", "{demo}", "--layers", "layer2", "--options", "fourier,maco",
                        "--plot", "{tmp}/priors.png"),
                       r"\nlayer2 \| maco \| [\d.]+ \| [-+][\d.]+ \| [\d.]+ \| [\d.]+ \| [-+][\d.]+ \| [\d.]+ \| "
                       r"[\d.]+ \| [\d.]+\n", demo=True, writes=("priors.png",), slow=True),
    "trust_cost.py": Quick(("--quick", "--store", "{demo}", "--epochs", "2"),
                           r"\n2 \| [\d.]+ \| [\d.]+ \| [\d.]+\n", demo=True, slow=True),
    "tuning_cost.py": Quick(("--quick", "--store", "{demo}", "--epochs", "0,2"),
                            r"tuning_over_synthesis_after_the_first=[\d.]+", demo=True),
    "trust_demo.py": Quick(("--quick", "--store", "{demo}"),
                           r"\ntrust stage: 9 \(run, epoch\) jobs, [\d.]+ s median per job", demo=True),
    "watch_beside.py": Quick(("--epochs", "1"), r"slowdown_over_fair_share=[\d.]+", slow=True, parse_only=True,
                             why="trains the quick demo's runs twice: minutes"),
    "watch_equality.py": Quick(("--out", "{tmp}/eq"), r"differences: 0", slow=True, parse_only=True,
                               why="two quick demos, one beside a watch: minutes; tests/test_watch.py runs a smaller one"),
    "watch_cost.py": Quick(("--quick", "--store", "{demo}", "--epoch", "1"), r"checkpoint to page: [\d.]+ s, \d+ %",
                           demo=True, slow=True, parse_only=True,
                           why="about 50 s; tests/test_watch.py runs the same live rounds and refreshes"),
    "train_recipe.py": Quick(("--quick", "--epochs", "1", "--conditions", "clrjit", "--set", "data.epoch_size=64",
                              "--out", "{tmp}/recipe"), r"train seconds per run: \d+", writes=("recipe/runs",)),
    "train_step.py": Quick(("--batches", "2", "--steps", "1", "--warm-up", "0", "--batch-size", "16"),
                           r"model step bf16 channels-last: \d+ ms"),
}

BENCHES = sorted(p.name for p in BENCH.glob("*.py") if p.name not in HELPERS)


def load(name: str):
    """A bench as a module (the way tests/test_kill_resume.py loads kill_resume)."""
    spec = importlib.util.spec_from_file_location(f"bench_{Path(name).stem}", BENCH / name)
    module = sys.modules[spec.name] = importlib.util.module_from_spec(spec)  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def isolated(tmp_path, monkeypatch):
    """Temporary files under tmp_path; bench/ modules a bench put on sys.path taken off again after."""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    monkeypatch.setattr(sys, "path", list(sys.path))
    before = set(sys.modules)
    yield tmp_path
    for name in set(sys.modules) - before:
        if str(BENCH) in str(getattr(sys.modules[name], "__file__", None) or ""):
            del sys.modules[name]


@pytest.fixture
def demo_store(request, name):
    """The quick demo's store for the benches that read one (in setup, so --durations shows it apart), else None."""
    quick = QUICK.get(name)
    return request.getfixturevalue("quick_demo")[0] if quick is not None and quick.demo and not quick.parse_only else None


def _param(name: str):
    quick = QUICK.get(name)
    marks = []
    if quick is not None and quick.demo and not quick.parse_only:
        marks.append(pytest.mark.xdist_group("quick_demo"))
    if quick is not None and quick.slow:
        marks.append(pytest.mark.slow)
    return pytest.param(name, marks=marks, id=Path(name).stem)


@pytest.mark.parametrize("name", [_param(name) for name in BENCHES])
def test_bench_runs_its_quick_mode(name, demo_store, isolated, capsys):
    assert name in QUICK, (f"bench/{name} has no quick mode in tests/test_benches.py: give it one (a --quick or "
                           f"--smoke flag, or tiny arguments; seconds on 2 cores) and add it to QUICK")
    quick, tmp = QUICK[name], isolated
    module = load(name)
    assert "argv" in inspect.signature(module.main).parameters, f"bench/{name}: def main(argv: list[str] | None = None)"
    if name == "kill_resume.py":  # tests/test_kill_resume.py runs it with 12 kills; its study still loads here
        from protoscope.study import load_study

        path = tmp / "study.yaml"
        path.write_text(yaml.safe_dump(module.small_study(tmp / "store"), sort_keys=False))
        study = load_study(path)
        assert [run.name for run in study.runs] == ["clrjit-s0", "clrjit-s1"] and study.synth.adam_steps == 6
        return
    if quick.parse_only:  # the suite's time budget (15 min on 2 cores): its arguments, imports and main only
        with pytest.raises(SystemExit) as done:
            module.main(["--help"])
        usage = capsys.readouterr().out
        assert done.value.code == 0 and all(a in usage for a in quick.argv if a.startswith("--")), usage
        return
    values = {"tmp": str(tmp), "results": str(BENCH / "results")}
    if demo_store is not None:
        checkpoint = max((demo_store / "runs" / "clrjit-s0").glob("epoch_*.safetensors"))
        values.update(demo=str(demo_store), checkpoint=str(checkpoint))
    argv = [arg.format(**values) for arg in quick.argv]
    assert module.main(argv) in (0, None)
    out = capsys.readouterr().out
    assert re.search(quick.expect, out), f"bench/{name} {' '.join(argv)} did not print /{quick.expect}/:\n{out[-3000:]}"
    for path in quick.writes:
        assert (tmp / path).exists(), f"bench/{name} did not write {path}"


def test_every_quick_mode_names_a_bench():
    assert sorted(set(QUICK) - set(BENCHES)) == [], "QUICK names files that are not benches in bench/ (renamed?)"


def protoscope_imports(path: Path) -> list[tuple[int, str, str | None]]:
    """(line, module, name or None) of every protoscope import in a file, at any depth."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name, None) for a in node.names if a.name.split(".")[0] == "protoscope"]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").split(".")[0] == "protoscope":
            found += [(node.lineno, node.module, a.name) for a in node.names]
    return found


def import_problems(path: Path) -> list[str]:
    """What is wrong with a file's protoscope imports: private names or modules, and ones that do not exist."""
    problems = []
    for line, module, name in protoscope_imports(path):
        where = f"{path.name}:{line}"
        dotted = module if name is None else f"{module}.{name}"
        if any(part.startswith("_") for part in dotted.split(".")):
            problems.append(f"{where} imports the private {dotted}: use a public name")
            continue
        if not exists(module):
            problems.append(f"{where} imports {module}, which does not exist (grep src/ for the name's new home)")
        elif name not in (None, "*") and not hasattr(importlib.import_module(module), name) and not exists(dotted):
            problems.append(f"{where}: {module} has no {name}")
    return problems


def exists(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:  # a parent is missing, or is a module, not a package
        return False


def test_benches_import_only_public_protoscope_names_that_exist():
    files = sorted(BENCH.glob("*.py"))
    assert len(files) >= len(QUICK)
    problems = [problem for path in files for problem in import_problems(path)]
    assert problems == [], "\n".join(problems)


def test_the_import_check_sees_private_and_missing_names(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("def main(argv=None):\n"
                   "    from protoscope.stages.atlases import _files, chain_order\n"
                   "    from protoscope.analyze.atlas_jobs import atlas_spec\n"
                   "    import protoscope._nothing\n"
                   "    from protoscope.stages.prototypes import no_such_name\n")
    problems = import_problems(bad)
    assert len(problems) == 4, problems
    assert "private protoscope.stages.atlases._files" in problems[0]
    assert "atlas_jobs, which does not exist" in problems[1]
    assert "private protoscope._nothing" in problems[2]
    assert "has no no_such_name" in problems[3]


def test_the_gpu_run_is_one_command_that_waits_for_the_gpu(isolated, monkeypatch, capsys):
    """`make bench-gpu` is `synth_speed.py --gpu`: refused in one line where there is no GPU, and, run
    against a fake CUDA device (here on the CPU), every clock read waits for the GPU's queue and the
    table the README quotes is written, the seed paper's rate beside it."""
    import torch

    module = load("synth_speed.py")
    args = module.parse_args(["--gpu"])
    assert args.device == "cuda" and args.quick
    if not torch.cuda.is_available():
        assert module.main(["--gpu", "--smoke"]) == 2
        assert "no CUDA GPU" in capsys.readouterr().err
    waits = []
    monkeypatch.setattr(torch.cuda, "is_initialized", lambda: True)
    monkeypatch.setattr(torch.cuda, "synchronize", lambda *device: waits.append(device))
    assert module.main(["--gpu", "--smoke", "--device", "cpu", "--out", str(isolated)]) == 0
    out = capsys.readouterr().out
    assert re.search(r"\nall +[\d.inf-]+ +[\d.]+ +[\d.]+\n", out), out[-2000:]
    assert "the seed paper: 3.4 prototypes/s" in out
    assert len(waits) >= 6  # per-unit: a start and a read per budget; engine: a start and its snapshots
