"""One exception type for mistakes a user can fix.

The CLI turns a `UserError` into one red line and exit code 2; anything else is
a bug and keeps its traceback.
"""


class UserError(Exception):
    """Bad input: a wrong name, a missing file, a config typo."""


def did_you_mean(name: str, valid) -> str:
    """A short hint listing the valid choices, closest first."""
    import difflib

    valid = list(valid)
    close = difflib.get_close_matches(name, valid, n=3, cutoff=0.5)
    hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
    shown = valid if len(valid) <= 40 else valid[:40] + [f"... ({len(valid) - 40} more)"]
    return f"{hint} Valid choices: {', '.join(shown)}"
