"""The command-line ending shared by the Beam jobs: logging, exit codes, the summary on stdout."""
from __future__ import annotations

import json
import logging
from typing import Callable

SETUP_ERROR_EXIT = 2  # input and setup problems: the message names the file or config key


def run_job(run: Callable[[list[str] | None], dict], argv: list[str] | None, log: logging.Logger,
            setup_errors: tuple[type[BaseException], ...],
            exit_codes: dict[type[BaseException], int] | None = None) -> int:
    """Run a job's `run(argv)`; known errors become one log line and an exit code (a traceback adds nothing)."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", force=True)
    codes = {**(exit_codes or {}), **{error: SETUP_ERROR_EXIT for error in setup_errors}}
    try:
        summary = run(argv)
    except tuple(codes) as error:
        log.error("%s", error)
        return next(code for kind, code in codes.items() if isinstance(error, kind))
    print(json.dumps(summary, indent=2, sort_keys=True))
    return 0
