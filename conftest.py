"""Shared by tests/ and the docs: the quick demo's store (a session fixture), and the code blocks of
the docs, the README and bench/README.md, run as tests (Sybil).

Every fenced block declares its language, and each is either run here or marked not runnable with a
reason (`<!-- skip: next "why" -->` above it, reported as a skipped test with that reason):
- `python` blocks run in order, one namespace per page, in a scratch folder where `out/demo` is the
  quick demo's store, so a block that reads the demo's results reads real ones;
- `bash` blocks run in that folder too, with this environment's `protoscope` first on the PATH; a
  command that fails (`set -e`, `pipefail`) fails the test;
- `yaml` blocks are study files or sections of one: each is loaded as a study (a section merged into
  a minimal study), so a key that does not exist or a value out of bounds fails;
- `text` blocks are listings (a file tree, a program's output), not code;
- a block in any other language that is not marked fails, naming the page and line.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml
from sybil import Sybil
from sybil.evaluators.python import PythonEvaluator
from sybil.parsers.markdown import CodeBlockParser, SkipParser

ROOT = Path(__file__).resolve().parent
RUN_HERE = ("python", "yaml", "bash", "text")
# pages whose python blocks read a demo's results (`out/demo`): they run beside the quick demo's other tests
READS_DEMO = {"concepts/store.md", "methods/prototypes.md", "methods/prototype-metrics.md", "methods/rsa.md"}
MINIMAL_STUDY = {"name": "docs-example", "store": "store", "runs": [{"condition": ["clrjit", "keepclr"], "seed": 0}]}


@pytest.fixture(scope="session")
def quick_demo(tmp_path_factory):
    """`protoscope demo --quick` run once per test process with the local executor, as a user runs it
    (a fresh process), on one thread (OMP_NUM_THREADS=1) like a one-CPU Ray task — the thread count
    changes the order of float sums, and `torch.set_num_threads(1)` in a process is not the same as
    the variable for oneDNN's float32 paths: (its store, what it printed). Tests that use it share
    the xdist group "quick_demo"."""
    import subprocess
    import sys

    out = tmp_path_factory.mktemp("quick_demo") / "demo"
    proc = subprocess.run([sys.executable, "-m", "protoscope.cli", "demo", "--quick", "--out", str(out)],
                          capture_output=True, text=True, env=dict(os.environ, OMP_NUM_THREADS="1", COLUMNS="200"))
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    # the process pool is closed before the command ends, not left to the interpreter's exit
    assert "Traceback" not in proc.stderr and "Exception ignored" not in proc.stderr, proc.stderr[-3000:]
    return out, proc.stdout


def check_study_yaml(example) -> None:
    """A study file, or a section of one merged into a minimal study, must load."""
    from protoscope.study import load_study

    block = yaml.safe_load(example.parsed)
    assert isinstance(block, dict), f"{example.path}:{example.line}: a yaml block is a study or a section of one"
    folder = Path(example.namespace["scratch"])
    study = folder / f"block_{example.line}.yaml"
    study.write_text(yaml.safe_dump({**MINIMAL_STUDY, **block}))
    load_study(study)


class UnmarkedBlocks(CodeBlockParser):
    """Blocks in a language the tests do not run: each needs a skip mark, or it fails."""

    def __init__(self):
        super().__init__(language="any")

    def __call__(self, document):
        for region in self.lexers(document):
            if region.lexemes["arguments"] not in RUN_HERE:
                region.parsed = region.lexemes["arguments"]
                region.evaluator = self.evaluate
                yield region

    def evaluate(self, example):
        raise AssertionError(f"{example.path}:{example.line}: this {example.parsed} block is neither run by the tests "
                             'nor marked not runnable: add <!-- skip: next "why" --> above it')


def scratch_folder(namespace) -> None:
    """Each page runs in a scratch folder of its own."""
    import tempfile

    namespace["scratch"] = tempfile.mkdtemp(prefix="docs-")
    namespace["_cwd"] = os.getcwd()
    os.chdir(namespace["scratch"])


def back(namespace) -> None:
    os.chdir(namespace["_cwd"])


def run_python(example) -> None:
    """A python block, run where the page's earlier blocks ran; `out/demo` is the quick demo's store (the
    fixture's value reaches the namespace only with the first block, after the page's setup)."""
    demo = example.namespace.get("quick_demo")
    link = Path(example.namespace["scratch"]) / "out" / "demo"
    if demo is not None and not link.exists():
        link.parent.mkdir(exist_ok=True)
        link.symlink_to(demo[0])
    PythonEvaluator()(example)


def run_bash(example) -> None:
    """A shell block, as a reader would type it, in the page's scratch folder."""
    import subprocess
    import sys

    env = dict(os.environ, PATH=os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]),
               OMP_NUM_THREADS="1")  # one thread, as the tests' own: two workers share two cores
    done = subprocess.run(["bash", "-euo", "pipefail", "-c", example.parsed], cwd=example.namespace["scratch"],
                          env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, f"{example.path}:{example.line}: exit {done.returncode}\n{done.stderr[-2000:]}"


def make_sybil(patterns, path, fixtures=()):
    return Sybil(
        parsers=[SkipParser(), CodeBlockParser("python", run_python), CodeBlockParser("yaml", check_study_yaml),
                 CodeBlockParser("bash", run_bash), UnmarkedBlocks()],
        patterns=list(patterns), path=str(path), setup=scratch_folder, teardown=back, fixtures=list(fixtures))


_docs = ROOT / "docs"
_pages = [str(p.relative_to(_docs)) for p in sorted(_docs.rglob("*.md"))]
_collect_docs = make_sybil([p for p in _pages if p not in READS_DEMO], _docs)
_collect_demo_pages = make_sybil(sorted(READS_DEMO), _docs, fixtures=["quick_demo"])
_collect_readme = make_sybil(["README.md"], ROOT)
_collect_bench_guide = make_sybil(["README.md"], ROOT / "bench")  # the benchmarks page's text


def pytest_collect_file(file_path, parent):
    path = Path(file_path)
    if path in (ROOT / "README.md", ROOT / "bench" / "README.md"):
        return (_collect_readme if path.parent == ROOT else _collect_bench_guide).pytest()(file_path, parent)
    if path.suffix == ".md" and _docs in path.parents:
        rel = str(path.relative_to(_docs))
        return (_collect_demo_pages if rel in READS_DEMO else _collect_docs).pytest()(file_path, parent)
    return None


@pytest.hookimpl(tryfirst=True)  # before xdist's loadgroup reads the groups off the markers
def pytest_collection_modifyitems(items):
    """A page's blocks run on one worker, in order: they share a namespace, and a skip mark acts on the
    next block (spread over two workers, a marked block ran unmarked). Pages that read the quick demo
    join its group."""
    for item in items:
        path = Path(str(getattr(item, "path", "")))
        if path.suffix != ".md":
            continue
        page = str(path.relative_to(ROOT))
        group = "quick_demo" if _docs in path.parents and str(path.relative_to(_docs)) in READS_DEMO else f"page:{page}"
        item.add_marker(pytest.mark.xdist_group(group))
