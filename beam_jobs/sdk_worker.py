"""The SDK worker process of a portable runner's PROCESS environment (Prism, Flink): the local counterpart of the
boot program in Beam's Python SDK container.

    <runner> starts:  <command> --id=ID --provision_endpoint=HOST:PORT [--control_endpoint=… --logging_endpoint=…]

where <command> is the small script `beam_jobs.runners` writes (it runs `python -m beam_jobs.sdk_worker` in the
interpreter and on the import path that launched the job). This asks the runner's provision service for the job's
pipeline options and endpoints, then becomes Beam's own `apache_beam.runners.worker.sdk_worker_main`, with the
environment variables that program reads (the ones the container's boot sets). Unlike that boot it installs
nothing: the worker runs in the environment that launched the job, so staged artifacts (requirements,
--setup_file) are already there and are not fetched.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile

import grpc
from apache_beam.portability.api import beam_provision_api_pb2, beam_provision_api_pb2_grpc, endpoints_pb2
from google.protobuf import json_format, text_format

PROVISION_TIMEOUT_SECONDS = 60


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m beam_jobs.sdk_worker", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--id", required=True, help="worker id the runner registered")
    parser.add_argument("--provision_endpoint", required=True)
    # Flink passes these too; Prism only the two above. The provision info names them either way.
    parser.add_argument("--control_endpoint", default="")
    parser.add_argument("--logging_endpoint", default="")
    parser.add_argument("--semi_persist_dir", default="")
    args, _ = parser.parse_known_args(argv)
    args.id = args.id.strip("'\"")  # Prism passes --id='ID' quoted as for a shell, and no shell unquotes it
    return args


def provision_info(endpoint: str, worker_id: str) -> beam_provision_api_pb2.ProvisionInfo:
    with grpc.insecure_channel(endpoint) as channel:
        grpc.channel_ready_future(channel).result(timeout=PROVISION_TIMEOUT_SECONDS)
        stub = beam_provision_api_pb2_grpc.ProvisionServiceStub(channel)
        response = stub.GetProvisionInfo(beam_provision_api_pb2.GetProvisionInfoRequest(),
                                         metadata=[("worker_id", worker_id)], timeout=PROVISION_TIMEOUT_SECONDS)
    return response.info


def _descriptor(url: str) -> str:
    return text_format.MessageToString(endpoints_pb2.ApiServiceDescriptor(url=url))


def worker_environment(args: argparse.Namespace, info: beam_provision_api_pb2.ProvisionInfo) -> dict[str, str]:
    """The environment `sdk_worker_main` reads, as Beam's container boot sets it."""
    env = dict(os.environ)
    env.update({
        "WORKER_ID": args.id,
        "PIPELINE_OPTIONS": json_format.MessageToJson(info.pipeline_options),
        "CONTROL_API_SERVICE_DESCRIPTOR": _descriptor(info.control_endpoint.url or args.control_endpoint),
        "LOGGING_API_SERVICE_DESCRIPTOR": _descriptor(info.logging_endpoint.url or args.logging_endpoint),
        "RUNNER_CAPABILITIES": " ".join(info.runner_capabilities),
        "SEMI_PERSISTENT_DIRECTORY": args.semi_persist_dir or tempfile.mkdtemp(prefix="beam-sdk-worker-"),
    })
    if info.HasField("status_endpoint"):
        env["STATUS_API_SERVICE_DESCRIPTOR"] = text_format.MessageToString(info.status_endpoint)
    return env


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    env = worker_environment(args, provision_info(args.provision_endpoint, args.id))
    # The worker replaces this process, so the runner that started it watches (and stops) the worker itself.
    os.execve(sys.executable, [sys.executable, "-m", "apache_beam.runners.worker.sdk_worker_main"], env)


if __name__ == "__main__":
    main()
