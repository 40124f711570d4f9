"""Running kubectl-mce in-process as from a shell: argv and stdin in; exit code, stdout and stderr out."""

from __future__ import annotations

import contextlib
import io
from dataclasses import dataclass

from mce_operator import kubectl_plugin


@dataclass(frozen=True)
class Run:
    code: int
    out: str
    err: str


def kubectl_mce(*argv: str, stdin: str = "") -> Run:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
        try:
            code = kubectl_plugin.main(list(argv), out=out, stdin=io.StringIO(stdin))
        except SystemExit as exit_:  # argparse: --help, bad usage
            code = int(exit_.code or 0)
    return Run(code, out.getvalue(), err.getvalue())
