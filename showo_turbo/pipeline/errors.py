"""The project's own errors: raised on purpose, with a message that says what is wrong and where
(a params key, a file). The stage runner and the command lines show them as one line, without a
traceback; any other exception is a bug and keeps its traceback.

    def main(argv=None): ...
    if __name__ == "__main__":
        sys.exit(run_cli(main))
"""

from __future__ import annotations

import sys
from typing import Callable


class ShowoError(Exception):
    """Base of every error whose message is meant for the user (bad params, a corrupt or foreign file)."""


class FileFormatError(ShowoError, ValueError):
    """A project file (JSON record, manifest, card) is not what it should be."""


def project_error_names() -> set[str]:
    """Class names of ShowoError and all its subclasses (what a failed notebook reports as `ename`)."""
    names, todo = set(), [ShowoError]
    while todo:
        cls = todo.pop()
        names.add(cls.__name__)
        todo.extend(cls.__subclasses__())
    return names


def one_line(message: str) -> str:
    """A message on one line (a YAML error or a file listing may span several)."""
    return " ".join(part.strip() for part in str(message).splitlines() if part.strip())


def run_cli(main: Callable[[], int | None], prog: str | None = None) -> int:
    """Run a command line's `main`; a project error becomes `error: <message>` on stderr and exit 1."""
    try:
        return main() or 0
    except ShowoError as e:
        print(f"{prog or 'error'}: {one_line(e)}", file=sys.stderr)
        return 1
