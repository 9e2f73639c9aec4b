"""What every benchmark shares: the machine description, goal checks, and the one result format.

Each `bench/<concern>.py` measures one stage (`python -m bench.<concern>`) and returns a result dict:
    {"bench": name, "command": the exact command line, "machine": {...},
     "metrics": {name: value}, "goals": [{"goal", "target", "measured", "met", "note"}]}
`--json PATH` writes it, so `bench/run_all.py` can collect every figure together with the command behind it.
"""
from __future__ import annotations

import json
import os
import shlex
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Goal:
    """One bar the project holds itself to (issue 8), with what this run measured against it."""

    goal: str  # e.g. "beam job / model-only"
    target: str  # e.g. ">= 0.85"
    threshold: float  # the number in `target`
    measured: float
    met: bool
    note: str = ""  # what the measurement covers, or why it missed

    def shortfall(self) -> float:
        """How far a missed goal is from its bar, as a fraction of the bar (0 when met)."""
        if self.met:
            return 0.0
        if self.target.startswith(">="):
            return 1 - self.measured / self.threshold
        return self.measured / self.threshold - 1

    def shortfall_text(self) -> str:
        percent = 100 * self.shortfall()
        return f"{percent:.1f}%" if percent < 10 else f"{percent:.0f}%"

    def line(self) -> str:
        verdict = "met" if self.met else f"MISSED by {self.shortfall_text()}"
        return f"  goal {self.goal}: {self.measured:.3g} (target {self.target}) -> {verdict}" + \
            (f"  [{self.note}]" if self.note else "")


def at_least(goal: str, measured: float, target: float, note: str = "") -> Goal:
    return Goal(goal, f">= {target:g}", target, measured, measured >= target, note)


def at_most(goal: str, measured: float, target: float, note: str = "") -> Goal:
    return Goal(goal, f"<= {target:g}", target, measured, measured <= target, note)


# The instruction sets that decide how fast a CPU runs matrix products, strongest first (/proc/cpuinfo flag, name).
# Two 2-core machines that both call themselves "AMD EPYC" ran ViT-B-32 in bf16 at 2.1x and at 0.14x its fp32 rate
# (vlm/dtype_probe.py): the model name alone does not say which figures a machine reproduces.
MATRIX_ISA = (("amx_bf16", "AMX-BF16"), ("avx512_bf16", "AVX512-BF16"), ("avx512f", "AVX-512"), ("avx2", "AVX2"))


def strongest_matrix_isa(flags: set[str]) -> str | None:
    """The first MATRIX_ISA name whose flag is among a CPU's `flags`, or None."""
    return next((name for flag, name in MATRIX_ISA if flag in flags), None)


def cpu_description(cpuinfo: str) -> str:
    """'model name (strongest matrix instruction set)' of the first processor in /proc/cpuinfo's text."""
    model, flags = "unknown", set()
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "model name" and model == "unknown":
            model = value.strip()
        elif key.strip() == "flags" and not flags:
            flags = set(value.split())
    isa = strongest_matrix_isa(flags)
    return f"{model} ({isa})" if isa else model


def machine() -> dict:
    """Cores, CPU model (with its strongest matrix instruction set) and torch threads: figures from a shared 2-core
    box mean little without them."""
    import torch

    cpuinfo = Path("/proc/cpuinfo")
    model = cpu_description(cpuinfo.read_text()) if cpuinfo.is_file() else "unknown"
    memory_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2 ** 30
    return {"nproc": os.cpu_count(), "cpu_model": model, "torch_threads": torch.get_num_threads(),
            "memory_gib": round(memory_gib, 1), "gpu": torch.cuda.is_available(), "torch": torch.__version__,
            # Other work on a shared machine: a load above nproc means every figure here ran on a share of it.
            "load_average_1min": round(os.getloadavg()[0], 2)}


def module_command(name: str, args: list[str]) -> str:
    """`python -m bench.<name> ARGS` as run from the repository root: the command that reproduces a run."""
    return " ".join([".venv/bin/python", "-m", f"bench.{name}"] + [shlex.quote(a) for a in args])


def result(bench: str, argv: list[str] | None, metrics: dict, goals: list[Goal], notes: list[str] = ()) -> dict:
    args = sys.argv[1:] if argv is None else argv
    return {"bench": bench, "command": module_command(bench, args), "machine": machine(),
            "metrics": metrics, "goals": [asdict(g) for g in goals], "notes": list(notes)}


def report(outcome: dict, json_path: str | None) -> int:
    """Print the goal lines; write the result when asked. Exit code 0 either way: a missed goal is a finding."""
    for goal in outcome["goals"]:
        print(Goal(**goal).line())
    for note in outcome["notes"]:
        print(f"  note: {note}")
    if json_path:
        Path(json_path).write_text(json.dumps(outcome, indent=2))
    return 0


def add_json_flag(parser) -> None:
    parser.add_argument("--json", default=None, metavar="PATH", help="also write the result as JSON here")
