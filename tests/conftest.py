"""Loaded by pytest before any test module: the one place the tests switch the Hugging Face libraries offline and
give them a cache of their own.

Tests build tiny models in temporary folders and must never reach the hub; huggingface_hub and transformers read
these variables once, when first imported, so they are set here, before any test imports them. HF_HOME is a fresh
folder for the session: models named by hub name are put there in the hub's own layout (tests/hub_cache.py), and
the developer's own cache can neither make a test pass nor be written to.
"""
import os
import shutil
import tempfile

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
HF_HOME = tempfile.mkdtemp(prefix="ovd-distill-hf-home-")
os.environ["HF_HOME"] = HF_HOME
for variable in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE"):  # would take precedence over HF_HOME
    os.environ.pop(variable, None)


def pytest_unconfigure(config):
    shutil.rmtree(HF_HOME, ignore_errors=True)


import pytest  # noqa: E402  (after the variables above, which must be set before anything imports the hub)

from tests.object_store import start_s3_server  # noqa: E402


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory):
    """moto's S3 server on a free loopback port for the whole session; AWS_ENDPOINT_URL and test credentials are
    set in this process's environment (and so in every process a test starts) while it runs."""
    server = start_s3_server(tmp_path_factory.mktemp("s3") / "moto.log")
    saved = {key: os.environ.get(key) for key in server.env}
    os.environ.update(server.env)
    yield server
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
    server.stop()


@pytest.fixture()
def s3_bucket(s3_server) -> str:
    """The s3:// URL of a fresh bucket on the session's server."""
    return s3_server.new_bucket()


# -- Beam runners that must be built or fetched first (beam_jobs.runners) -------------------------------------------
_RUNNER_SETUP: dict = {}  # runner name → Future of its flags, started when the session is collected


def pytest_configure(config):
    config.addinivalue_line("markers", "needs_runner(name): needs a Beam runner built or fetched first (Prism, the "
                                       "Flink job server jar); runs at the end of the session")
    config.addinivalue_line("markers", "slow: starts a server, a runner, a browser or other processes; `make test` "
                                       "runs it, `make test-fast` (-m 'not slow') does not")


# Fixtures that start a server or a runner: a test that uses one is slow without saying so itself.
SLOW_FIXTURES = {"s3_server", "s3_bucket", "runner_flags"}


def pytest_collection_modifyitems(session, config, items):
    """Tests that use a server or a runner are marked slow. Tests that need a runner go last, and the runner's set-up
    (minutes for a first Prism build) starts now in the background, so it overlaps the rest of the suite."""
    from concurrent.futures import ThreadPoolExecutor

    from beam_jobs.runners import runner_flags

    for item in items:
        if SLOW_FIXTURES & set(getattr(item, "fixturenames", ())) or item.get_closest_marker("needs_runner"):
            item.add_marker(pytest.mark.slow)
    needed = sorted({mark.args[0] for item in items for mark in item.iter_markers("needs_runner")})
    if not needed:
        return
    items[:] = sorted(items, key=lambda item: item.get_closest_marker("needs_runner") is not None)
    pool = ThreadPoolExecutor(max_workers=len(needed), thread_name_prefix="runner-setup")
    for name in needed:
        _RUNNER_SETUP[name] = pool.submit(runner_flags, name)
    pool.shutdown(wait=False)


@pytest.fixture(scope="session")
def runner_flags():
    """flags(name) → the Beam options that run a job on `name` here. A Flink job server jar that cannot be fetched
    skips the test with the fetch's exact error; any other set-up failure fails it."""
    from beam_jobs.runners import RunnerSetupError, runner_flags as flags_of

    def flags(name: str) -> list[str]:
        try:
            return _RUNNER_SETUP[name].result() if name in _RUNNER_SETUP else flags_of(name)
        except RunnerSetupError as error:
            if name == "FlinkRunner":
                pytest.skip(f"FlinkRunner unavailable here: {error}")
            raise
    yield flags
    # Beam keeps one Prism job server per process and stops it at exit, when pytest has closed the streams its
    # log line goes to ("--- Logging error ---"); stopped here, it stops quietly.
    from apache_beam.runners.portability.prism_runner import PrismRunner

    server = PrismRunner.shared_handle.acquire(lambda: None)
    if server is not None:
        server.stop()
