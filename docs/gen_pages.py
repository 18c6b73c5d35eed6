"""Pages made from the code at build time (mkdocs-gen-files): the study-file reference and the benchmarks.

The study file's reference is read from the pydantic models themselves — every key, its type, default,
bounds and description — so it cannot drift from what `load_study` accepts. The benchmarks page lists
every committed bench script with its docstring and the committed outputs it wrote.
"""

from __future__ import annotations

import ast
import types
import typing
from pathlib import Path

import mkdocs_gen_files
from pydantic import BaseModel
from pydantic_core import PydanticUndefined

from protoscope.study import Study

ROOT = Path(__file__).resolve().parents[1]


def type_name(annotation) -> str:
    """A field's type as a reader of a YAML file thinks of it."""
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if annotation is type(None):
        return "null"
    if origin is typing.Literal:
        return " \\| ".join(f"`{a}`" for a in args)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(type_name(a) for a in args)
    if origin in (list, tuple):
        inner = ", ".join(type_name(a) for a in args if a is not Ellipsis)
        return f"list of {inner}" if origin is list else f"pair of {inner}"
    if origin is dict:
        return f"mapping of {type_name(args[0])} to {type_name(args[1])}"
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return f"[{annotation.__name__}](#{annotation.__name__.lower()})"
    return {"str": "text", "int": "integer", "float": "number", "bool": "true/false", "Path": "path",
            "Any": "any"}.get(getattr(annotation, "__name__", str(annotation)), str(annotation))


def default_text(field) -> str:
    if field.default is PydanticUndefined and field.default_factory is None:
        return "**required**"
    value = field.default_factory() if field.default_factory is not None else field.default
    if isinstance(value, BaseModel):
        return "its defaults"
    return f"`{value!r}`".replace("|", "\\|")


def bounds(field) -> str:
    marks = {"ge": "≥", "gt": ">", "le": "≤", "lt": "<", "min_length": "at least", "max_length": "at most"}
    out = []
    for meta in field.metadata:
        for attr, sign in marks.items():
            value = getattr(meta, attr, None)
            if value is not None:
                out.append(f"{sign} {value}" + (" items" if "length" in attr else ""))
    return ", ".join(out)


def models_of(model: type[BaseModel], seen: list) -> list:
    """The model and every section model it holds, depth first, each once."""
    if model in seen:
        return seen
    seen.append(model)
    for field in model.model_fields.values():
        for sub in _models_in(field.annotation):
            models_of(sub, seen)
    return seen


def _models_in(annotation):
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        yield annotation
    for arg in typing.get_args(annotation):
        yield from _models_in(arg)


def model_table(model: type[BaseModel]) -> str:
    doc = " ".join((model.__doc__ or "").split())
    rows = ["| key | type | default | bounds | what it is |", "|---|---|---|---|---|"]
    for key, field in model.model_fields.items():
        description = " ".join((field.description or "").split()).replace("|", "\\|")
        rows.append(f"| `{key}` | {type_name(field.annotation)} | {default_text(field)} | {bounds(field)} | {description} |")
    return f"## {model.__name__}\n\n{doc}\n\n" + "\n".join(rows) + "\n"


def study_reference() -> str:
    intro = (
        "# The study file\n\n"
        "Generated from the pydantic models `load_study` validates with (`protoscope.specs` and "
        "`protoscope.study`), so it lists exactly the keys a study may hold. "
        "Unknown keys are errors that name the file and the field. `defaults:` holds any "
        "[RunSpec](#runspec) key, shared by every run; a run entry overrides it, and a list under "
        "`condition` or `seed` expands to one run per value. A walk-through with an example is "
        "[Your own data](../getting-started/your-data.md).\n\n")
    return intro + "\n".join(model_table(m) for m in models_of(Study, []))


def output_note(result: Path) -> str:
    """A committed output, folded (a Material admonition), cut at 6,000 characters."""
    text = result.read_text()
    if len(text) > 6000:
        text = text[:6000] + "\n… (cut here; the whole file is in the repository)\n"
    return (f'??? note "`bench/results/{result.name}`"\n\n    ```text\n'
            + "".join(f"    {line}\n" for line in text.splitlines()) + "    ```\n\n")


def bench_reference() -> str:
    """bench/README.md (what each bench measures, its commands, its results), then every script with its
    committed outputs, then the outputs no script is named for (the demo's logs, the suite's times)."""
    results = sorted((ROOT / "bench" / "results").glob("*.txt"))
    guide = (ROOT / "bench" / "README.md").read_text().split("\n", 1)[1]  # its own title is this page's
    parts = ["# Benchmarks\n\n",
             "Every number in these pages comes from a committed script in `bench/` and its committed output "
             "in `bench/results/`, made on the machine each output names. This page is generated from those "
             "files: `bench/README.md` first (what each bench measures and the commands that made the "
             "outputs), then every script with its outputs.\n", guide, "\n## Every script and its outputs\n\n"]
    shown = set()
    for script in sorted((ROOT / "bench").glob("*.py")):
        if script.name == "common.py":
            continue
        title = (ast.get_docstring(ast.parse(script.read_text())) or "").split("\n")[0]
        outputs = [r for r in results if r.stem == script.stem or r.stem.startswith(script.stem + "_")]
        shown.update(outputs)
        parts.append(f"### `{script.name}`\n\n{title} Its options: `python bench/{script.name} --help`.\n\n")
        parts.extend(output_note(result) for result in outputs)
    parts.append("## Other outputs\n\nRun logs and times that no single script writes (their commands are in "
                 "the notes above and in the files themselves).\n\n")
    parts.extend(output_note(result) for result in results if result not in shown)
    return "".join(parts)


def write_pages() -> None:
    with mkdocs_gen_files.open("reference/study-file.md", "w") as page:
        page.write(study_reference())
    with mkdocs_gen_files.open("benchmarks.md", "w") as page:
        page.write(bench_reference())


# mkdocs-gen-files runs this file (runpy: not as "gen_pages"); imported for its functions, it writes nothing
# (outside a build, mkdocs_gen_files.open writes real files into docs/)
if __name__ != "gen_pages":
    write_pages()
