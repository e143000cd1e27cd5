"""Shared helpers of the benchmark scripts: machine description, interleaved timing, step timers and table printing.

Every benchmark alternates its variants (A B A B ...) so slow drifts of a shared machine (other jobs, thermal state)
hit all variants alike, and reports medians.
"""

import datetime
import os
import platform
import statistics
import time
from collections.abc import Callable

import torch
from transformers import TrainerCallback
from transformers.trainer_callback import PrinterCallback


def add_common_arguments(parser) -> None:
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds (A B A B ...)")
    parser.add_argument(
        "--threads", type=int, default=1,
        help="torch intra-op threads. 1 by default: on a shared machine, threads that spin against other jobs make "
        "timings several times slower and noisier than the work itself.",
    )


def apply_common_arguments(args) -> None:
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)


def quiet(trainer):
    """Keep the Trainer's per-run log dictionaries (printed when tqdm is off) out of the benchmark's table output."""
    trainer.remove_callback(PrinterCallback)
    return trainer


def machine_info() -> dict[str, str]:
    """What the numbers were measured on, including how busy the machine was."""
    import accelerate
    import transformers
    import trl

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    info = {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": f"{cpu}, {os.cpu_count()} logical CPUs, torch threads {torch.get_num_threads()}",
        "accelerator": torch.cuda.get_device_name() if torch.cuda.is_available() else "none (CPU only)",
        "versions": (
            f"python {platform.python_version()}, torch {torch.__version__}, transformers {transformers.__version__}, "
            f"trl {trl.__version__}, accelerate {accelerate.__version__}"
        ),
    }
    if hasattr(os, "getloadavg"):
        info["load average at start"] = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    return info


def print_header(title: str) -> None:
    print(f"## {title}\n")
    for key, value in machine_info().items():
        print(f"- {key}: {value}")
    print()


def print_table(header: list[str], rows: list[list[object]]) -> None:
    print("| " + " | ".join(header) + " |")
    print("|" + "|".join("---" for _ in header) + "|")
    for row in rows:
        print("| " + " | ".join(_fmt(v) for v in row) + " |")
    print()


def _fmt(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.3g}" if abs(value) < 1000 else f"{value:,.0f}"
    return str(value)


def interleave(variants: dict[str, Callable[[], list[float]]], rounds: int) -> dict[str, list[float]]:
    """Run each variant once per round, in a fixed alternating order, and pool the measurements it returns."""
    results: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(rounds):
        for name, run in variants.items():
            results[name].extend(run())
    return results


def median(values: list[float]) -> float:
    return statistics.median(values)


def medians(pairs: list[tuple[float, ...]]) -> tuple[float, ...]:
    """Column-wise medians of (wall, cpu, ...) tuples."""
    return tuple(statistics.median(column) for column in zip(*pairs, strict=True))


class StepTimer(TrainerCallback):
    """Wall and CPU time between consecutive optimizer-step ends, i.e. everything one step costs (data loading and
    collation, forward, backward, optimizer, logging). The first step of every `train()` call is skipped (warm-up).

    CPU time (`time.process_time`, all threads of this process) is reported next to wall time because on a shared
    machine wall time also measures the other jobs; with one intra-op thread it is the work of the step itself.
    """

    def __init__(self):
        self.durations: list[tuple[float, float]] = []
        self._last: tuple[float, float] | None = None

    def on_train_begin(self, args, state, control, **kwargs):
        self._last = None

    def on_step_end(self, args, state, control, **kwargs):
        now = (time.perf_counter(), time.process_time())
        if self._last is not None:
            self.durations.append((now[0] - self._last[0], now[1] - self._last[1]))
        self._last = now

    def take(self) -> list[tuple[float, float]]:
        """(wall, cpu) seconds of the steps timed since the last call."""
        durations, self.durations = self.durations, []
        return durations
