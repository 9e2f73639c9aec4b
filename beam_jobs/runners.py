"""What each Beam runner needs on this machine, fetched or built once into a cache, and the flags that point Beam at
it. The Makefile's RUNNER= goes through here; the jobs themselves take any Beam option unchanged.

    python -m beam_jobs.runners flags RUNNER [--cache DIR] [--parallelism N] [--flink-master HOST:PORT]
    python -m beam_jobs.runners prepare RUNNER [--cache DIR]

- DirectRunner (what a plain `make` run uses): Beam's in-process runner, `--runner=FnApiRunner`, in any
  `--direct_running_mode`. Beam 2.77's DirectRunner switches to Prism whenever it finds a Prism zip in
  ~/.apache_beam/cache/prism/bin or can download one from GitHub, and runs this same in-process runner otherwise;
  naming it gives users with and without internet the same runner. (`--runner=DirectRunner` given by hand keeps
  Beam's switching.)
- PrismRunner: Beam's portable local runner, built from source once (`go install …/cmd/prism@v<beam version>`
  through the Go module proxy); SDK workers run as separate processes (PROCESS environment, beam_jobs.sdk_worker).
- FlinkRunner: Beam's Flink job server jar fetched once by its Maven coordinates; `--flink_master=[local]` runs an
  embedded Flink cluster with `--parallelism` 2 and SDK workers as processes, or give a cluster's `host:port`
  (its TaskManagers then start Beam's SDK container unless other --environment_type options are added).
- any other name (DataflowRunner, SparkRunner, …): `--runner=NAME`; every other option comes from the user.

The cache (default ~/.cache/ovd-distill, or $OVD_CACHE_DIR) holds `prism-v<version>/prism`,
`jars/beam-runners-flink-<flink>-job-server-<beam>.jar` and the SDK worker command. Prism is deliberately not put in
Beam's own ~/.apache_beam cache, where every DirectRunner run on the machine would pick it up.
"""
from __future__ import annotations

import argparse
import contextlib
import fcntl
import hashlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
import urllib.error
import urllib.request
from pathlib import Path
from typing import Iterator

import apache_beam
from apache_beam.options.pipeline_options import FlinkRunnerOptions

from featurestore.atomic import publish, temporary_sibling

BEAM_VERSION = apache_beam.__version__
PRISM_PACKAGE = "github.com/apache/beam/sdks/v2/go/cmd/prism"
FLINK_VERSION = FlinkRunnerOptions.PUBLISHED_FLINK_VERSIONS[-1]  # Beam's own default --flink_version
MAVEN_CENTRAL = "https://repo.maven.apache.org/maven2"
IN_PROCESS_RUNNER = "FnApiRunner"  # what the DirectRunner runs when it does not switch to Prism
DEFAULT_PARALLELISM = 2
SETUP_TIMEOUT_SECONDS = 1800  # a first Prism build downloads ~70 Go modules and compiles them


class RunnerSetupError(RuntimeError):
    """A runner's binary or jar could not be built or fetched; the message has the command and its error."""


def default_cache() -> Path:
    return Path(os.environ.get("OVD_CACHE_DIR") or Path.home() / ".cache" / "ovd-distill")


@contextlib.contextmanager
def _locked(cache: Path, name: str) -> Iterator[None]:
    """One process at a time builds or fetches `name` (make and a test session may race for the same cache)."""
    cache.mkdir(parents=True, exist_ok=True)
    with open(cache / f".{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def _run(command: list[str], env: dict | None = None) -> None:
    try:
        done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=SETUP_TIMEOUT_SECONDS)
    except FileNotFoundError as error:
        raise RunnerSetupError(f"`{' '.join(command)}` cannot run: {error}") from error
    if done.returncode != 0:
        raise RunnerSetupError(f"`{' '.join(command)}` failed with exit code {done.returncode}:\n  "
                               + "\n  ".join(_essential_lines(done.stdout + done.stderr)))


def _essential_lines(output: str, keep: int = 6) -> list[str]:
    """The first and last lines of a tool's output, without colour codes, blank lines or Maven's help links
    (Maven states its error first, then pages of advice)."""
    lines = [re.sub(r"\x1b\[[0-9;]*m", "", line).strip() for line in output.splitlines()]
    advice = next((i for i, line in enumerate(lines) if "Try downloading the file manually" in line), len(lines))
    lines = [line for line in lines[:advice] if line.strip("[ERROR] ") and "Help 1" not in line
             and "-X switch" not in line and "-e switch" not in line]
    return lines if len(lines) <= 2 * keep else [*lines[:keep], "…", *lines[-keep:]]


def prism_binary(cache: Path | None = None) -> Path:
    """The Prism binary of this Beam version, built with `go install` the first time (minutes; later calls are
    instant)."""
    cache = cache or default_cache()
    target = cache / f"prism-v{BEAM_VERSION}" / "prism"
    if target.is_file():
        return target
    with _locked(cache, "prism"):
        if target.is_file():  # built by another process while this one waited
            return target
        with tempfile.TemporaryDirectory(dir=cache, prefix=".prism-build-") as staging:
            # -modcacherw: a module cache that plain `rm -rf` can clear, as a cache should be.
            goflags = " ".join(filter(None, [os.environ.get("GOFLAGS", ""), "-modcacherw"]))
            _run(["go", "install", f"{PRISM_PACKAGE}@v{BEAM_VERSION}"],
                 env={**os.environ, "GOBIN": staging, "GOFLAGS": goflags})
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(Path(staging) / "prism", target)
    return target


def flink_coordinates(flink_version: str = FLINK_VERSION) -> str:
    return f"org.apache.beam:beam-runners-flink-{flink_version}-job-server:{BEAM_VERSION}"


def _fetch_with_maven(coordinates: str, target: Path) -> None:
    """`mvn dependency:get` (the user's Maven settings, mirrors and proxies apply), then copy from ~/.m2."""
    # -U: ask the repository again instead of repeating a cached "not found".
    _run(["mvn", "-q", "-B", "-U", "dependency:get", f"-Dartifact={coordinates}", "-Dtransitive=false"])
    group, artifact, version = coordinates.split(":")
    local = (Path.home() / ".m2" / "repository" / group.replace(".", "/") / artifact / version
             / f"{artifact}-{version}.jar")
    if not local.is_file():
        raise RunnerSetupError(f"mvn fetched {coordinates} but {local} is not there (a custom localRepository?)")
    shutil.copyfile(local, target)


def _fetch_over_http(coordinates: str, target: Path) -> None:
    group, artifact, version = coordinates.split(":")
    url = f"{MAVEN_CENTRAL}/{group.replace('.', '/')}/{artifact}/{version}/{artifact}-{version}.jar"
    try:
        with urllib.request.urlopen(url, timeout=120) as response, open(target, "wb") as out:
            shutil.copyfileobj(response, out)
    except (urllib.error.URLError, OSError) as error:
        raise RunnerSetupError(f"GET {url} failed: {error}") from error


def flink_job_server_jar(cache: Path | None = None, flink_version: str = FLINK_VERSION) -> Path:
    """Beam's Flink job server jar for this Beam version, fetched by its Maven coordinates the first time."""
    cache = cache or default_cache()
    coordinates = flink_coordinates(flink_version)
    target = cache / "jars" / f"beam-runners-flink-{flink_version}-job-server-{BEAM_VERSION}.jar"
    if target.is_file():
        return target
    with _locked(cache, "flink-jar"):
        if target.is_file():
            return target
        fetch = _fetch_with_maven if shutil.which("mvn") else _fetch_over_http
        with temporary_sibling(target) as partial:  # removed when the fetch fails
            fetch(coordinates, partial)
            publish(partial, target)
    return target


def sdk_worker_command(cache: Path | None = None) -> Path:
    """An executable that starts `python -m beam_jobs.sdk_worker` with this interpreter and this checkout on the
    import path: a PROCESS environment's command must be one file that runners start without a shell."""
    cache = cache or default_cache()
    project = Path(__file__).resolve().parents[1]
    key = hashlib.sha256(f"{sys.executable}\n{project}".encode()).hexdigest()[:12]
    target = cache / f"sdk-worker-{key}"
    script = (f"#!/bin/sh\n# Beam SDK worker for {project} (beam_jobs.runners)\n"
              f"PYTHONPATH='{project}'${{PYTHONPATH:+:$PYTHONPATH}} exec '{sys.executable}' -m beam_jobs.sdk_worker \"$@\"\n")
    if not target.is_file() or target.read_text() != script:
        # A partial file of its own per call (runners are set up from several threads of one process at once),
        # executable before it takes the final name.
        with temporary_sibling(target) as partial:
            partial.write_text(script)
            partial.chmod(0o755)
            publish(partial, target)
    return target


def process_environment_flags(cache: Path) -> list[str]:
    return ["--environment_type=PROCESS", f"--environment_options=process_command={sdk_worker_command(cache)}"]


def runner_flags(runner: str, cache: Path | None = None, parallelism: int = DEFAULT_PARALLELISM,
                 flink_master: str = "[local]") -> list[str]:
    """The Beam options that run a job on `runner` here (building or fetching what it needs first)."""
    cache = cache or default_cache()
    if runner in ("", "DirectRunner", IN_PROCESS_RUNNER):
        return [f"--runner={IN_PROCESS_RUNNER}"]
    if runner == "PrismRunner":
        return ["--runner=PrismRunner", f"--prism_location={prism_binary(cache)}", *process_environment_flags(cache)]
    if runner == "FlinkRunner":
        # Workers of an embedded cluster run beside this process; a real cluster's TaskManagers start Beam's SDK
        # container (Beam's default there) or whatever --environment_type the user adds.
        workers = process_environment_flags(cache) if flink_master == "[local]" else []
        return ["--runner=FlinkRunner", f"--flink_master={flink_master}", f"--flink_version={FLINK_VERSION}",
                f"--flink_job_server_jar={flink_job_server_jar(cache)}", f"--parallelism={parallelism}", *workers]
    return [f"--runner={runner}"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m beam_jobs.runners", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("action", choices=("flags", "prepare"))
    parser.add_argument("runner")
    parser.add_argument("--cache", type=Path, default=None, help="cache folder (default ~/.cache/ovd-distill)")
    parser.add_argument("--parallelism", type=int, default=DEFAULT_PARALLELISM)
    parser.add_argument("--flink-master", default="[local]", help="[local] or a Flink cluster's host:port")
    args = parser.parse_args(argv)
    try:
        flags = runner_flags(args.runner, args.cache, args.parallelism, args.flink_master)
    except RunnerSetupError as error:
        print(f"error: {args.runner} cannot be set up: {error}", file=sys.stderr)
        return 2
    print("\n".join(flags) if args.action == "flags" else f"{args.runner} is ready: " + " ".join(flags))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
