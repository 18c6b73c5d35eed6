"""The command line: one thin command per stage, plus the demo and the tools around a study.

`app.py` holds the Typer app and the options every command shares; `stage_commands.py` the
commands that run a stage on an executor; `study_commands.py` the rest; `tables.py` what they
print. User mistakes (`UserError`, bad options) print one line and exit 2; `--debug` shows the
traceback instead.
"""

from __future__ import annotations

import sys

from ..errors import UserError
from . import stage_commands, study_commands  # noqa: F401  (registers the commands on `app`)
from .app import app, err


def __getattr__(name: str):
    """`click_app`: the same commands as a Click group, for tools that read Click (the docs' CLI page)."""
    if name == "click_app":
        import typer.main

        return typer.main.get_command(app)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


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
        from ..atomic import WRITE_ERRNOS, write_error

        if debug or exc.errno not in WRITE_ERRNOS:
            raise
        _error_line(str(write_error(exc.filename or "the store", exc, "write" if exc.filename is None else "access")))
        return 2
    except KeyboardInterrupt:
        _interrupted()
        return 130
    return 0
