"""What the commands print after a stage: rich tables, figure paths, the probe summary and the findings."""

from __future__ import annotations

from rich.table import Table

from .. import stages
from .app import out


def print_table(title: str, columns, rows, left=frozenset()) -> None:
    """A rich table of string cells; the `left` columns are left-justified, the others right."""
    table = Table(title=title)
    for column in columns:
        table.add_column(str(column), justify="left" if column in left else "right")
    for row in rows:
        table.add_row(*row)
    out.print(table)


def print_frame(title: str, frame, digits: int, left=frozenset()) -> None:
    """A DataFrame as `print_table` prints it: floats with `digits` decimals, everything else as text."""
    print_table(title, frame.columns, ([f"{v:.{digits}f}" if isinstance(v, float) else str(v) for v in row]
                                       for _, row in frame.iterrows()), left=left)


def print_paths(paths) -> None:
    """One line per figure (PNG) a stage drew, and one for the site's index.html where it wrote one."""
    for path in paths:
        if path.suffix == ".png":
            out.print(f"figure: {path}", soft_wrap=True)
        elif path.name == "index.html":
            out.print(f"report: {path} (open it in a browser)", soft_wrap=True)


def print_summary(s, figures=None) -> None:
    """The probes' accuracy at the initialization and the last epoch, the findings, then the figures."""
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
            cells.append(f"{_number(init)} -> {_number(final)}" if _present(final) else "-")  # no epoch 0: "-"
        rows.append([condition, run, *cells])
    print_table("Linear probe test accuracy (init -> final epoch)", ["condition", "run", *classifiers], rows,
                left={"condition", "run"})
    print_findings(s)
    print_paths(figures or [])


def _present(value) -> bool:
    return value is not None and value == value  # neither missing nor NaN


def _number(value) -> str:
    return f"{value:.3f}" if _present(value) else "-"


def print_findings(s) -> None:
    """The seed's findings on this study, each with its margin (> 0: it holds); see report/findings.py."""
    from ..report.findings import findings
    from ..store import MetricsTable

    table = findings(MetricsTable(s.store).read(), list(s.layers))
    if table.empty:
        return
    rows = ([row.finding, row.value, "" if row.margin is None or row.margin != row.margin else f"{row.margin:+.3f}",
             "—" if row.holds is None else ("yes" if row.holds else "[red]no[/]")] for row in table.itertuples(index=False))
    print_table("The seed's findings on this study (margin > 0: it holds)", ("finding", "value", "margin", "holds"),
                rows, left={"finding", "value", "holds"})
