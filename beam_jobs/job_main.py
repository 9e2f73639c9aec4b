"""The command-line ending shared by the Beam jobs: logging, exit codes, the summary on stdout."""
from __future__ import annotations

import argparse
import json
import logging
from typing import Callable, TypeVar

from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions

from beam_jobs.runners import IN_PROCESS_RUNNER
from beam_jobs.sharded_stage import FailureRateExceeded
from featurestore.manifest import DamagedStoreError
from featurestore.terminal_text import TerminalSafeFormatter
from featurestore.writer_lock import LockLostError, StoreLockedError
from schemas.config import add_config_arguments, load_config_and_origins, to_dict

C = TypeVar("C")

SETUP_ERROR_EXIT = 2  # input and setup problems: the message names the file or config key
# Store problems every job reports the same way: another writer holds the store, a damaged part of it.
STORE_ERRORS = (StoreLockedError, LockLostError, DamagedStoreError)
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
FAILURE_RATE_EXIT = 3  # everything computed is committed, but too many inputs became failure rows


def parse_job_args(prog: str, description: str | None, store_help: str, argv: list[str] | None
                   ) -> tuple[argparse.Namespace, list[str]]:
    """A job's own flags (--config, --set, --store, --overwrite, --retry-failed); everything else is returned
    untouched for PipelineOptions, so runner options pass through. Without --runner, Beam's in-process runner
    is named."""
    parser = argparse.ArgumentParser(prog=prog, description=description,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_config_arguments(parser)
    parser.add_argument("--store", default="data/store", help=store_help + "; a folder or a URL (s3://…, gs://…)")
    parser.add_argument("--overwrite", action="store_true",
                        help="recompute every shard even when its fingerprint matches a committed one")
    parser.add_argument("--retry-failed", action="store_true",
                        help="also recompute the committed shards that have failure rows (after fixing their inputs); "
                             "shards without failures stay as they are")
    args, beam_args = parser.parse_known_args(argv)
    if PipelineOptions(beam_args).view_as(StandardOptions).runner is None:
        # Beam's default DirectRunner switches to Prism where it finds or can download it; naming the in-process
        # runner it otherwise runs makes a job the same on machines with and without internet.
        beam_args = [*beam_args, f"--runner={IN_PROCESS_RUNNER}"]
    return args, beam_args


def parse_job(argv: list[str] | None, prog: str, description: str | None, store_help: str, config_class: type[C],
              log: logging.Logger) -> tuple[argparse.Namespace, list[str], C, dict[str, str]]:
    """A job's flags (parse_job_args), and its config read from --config and --set with where each key was set (for
    origins_named), logged as one JSON line."""
    args, beam_args = parse_job_args(prog, description, store_help, argv)
    config, origins = load_config_and_origins(config_class, args.config, args.overrides)
    log.info("config: %s", json.dumps(to_dict(config), sort_keys=True))
    return args, beam_args, config, origins


def run_job(run: Callable[[list[str] | None], dict], argv: list[str] | None, log: logging.Logger,
            setup_errors: tuple[type[BaseException], ...]) -> int:
    """Run a job's `run(argv)`; known errors become one log line and an exit code (a traceback adds nothing). Log
    lines quote file names and messages from the inputs: their control characters are escaped."""
    logging.basicConfig(level=logging.INFO, format=LOG_FORMAT, force=True)
    for handler in logging.getLogger().handlers:
        handler.setFormatter(TerminalSafeFormatter(LOG_FORMAT))
    codes = {FailureRateExceeded: FAILURE_RATE_EXIT,
             **{error: SETUP_ERROR_EXIT for error in (*setup_errors, *STORE_ERRORS)}}
    try:
        summary = run(argv)
    except tuple(codes) as error:
        log.error("%s", error)
        return next(code for kind, code in codes.items() if isinstance(error, kind))
    print(json.dumps(summary, indent=2, sort_keys=True))
    return 0
