"""Helpers of the server tests: a saved tiny Gaussian GPT-2 reward model whose tokenizer pads with its EOS token (as
TRL sets up Llama/GPT-2/Mistral tokenizers), real uvicorn servers on free loopback ports (in a thread or a
subprocess), and nothing that reaches beyond 127.0.0.1."""

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx2 as httpx
import torch
from transformers import AutoTokenizer, GPT2Config

from trl_anchor.models.modeling_gaussian import GaussianRewardModel

REPO = Path(__file__).resolve().parents[2]


def save_reward_model(path: Path, tokenizer_dir: Path, seed: int = 0, **config_overrides) -> Path:
    """A tiny Gaussian GPT-2 with a variance head whose σ really varies across responses, saved as safetensors."""
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    tokenizer.pad_token = tokenizer.eos_token
    torch.manual_seed(seed)
    kwargs = dict(n_layer=2, n_head=2, n_embd=32, n_positions=256, vocab_size=len(tokenizer), num_labels=1,
                  pad_token_id=tokenizer.eos_token_id, eos_token_id=tokenizer.eos_token_id,
                  bos_token_id=tokenizer.bos_token_id)
    config = GPT2Config(**{**kwargs, **config_overrides})
    model = GaussianRewardModel.from_config(config)
    with torch.no_grad():
        model.variance_head.weight.normal_(std=2.0)
    model.save_pretrained(path, safe_serialization=True)
    tokenizer.save_pretrained(path)
    return path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until_healthy(url: str, process: subprocess.Popen | None = None, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"The server exited with code {process.returncode} before it was ready.")
        try:
            if httpx.get(f"{url}/health", timeout=1.0, trust_env=False).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise TimeoutError(f"No healthy server at {url} within {timeout} s.")


class ThreadedServer:
    """uvicorn serving an app in a background thread of the test process (no signal handlers)."""

    def __init__(self, app):
        import uvicorn

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning", lifespan="on")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self):
        self.thread.start()
        wait_until_healthy(self.url, timeout=30)
        return self

    def __exit__(self, *exc):
        self.server.should_exit = True
        self.thread.join(timeout=30)


def start_server_process(model_dir: Path, *args: str, env: dict | None = None, port: int | None = None):
    """`python -m trl_anchor.cli serve` in a subprocess on a free loopback port; returns (process, url)."""
    port = port or free_port()
    command = [sys.executable, "-m", "trl_anchor.cli", "serve", "--model_name_or_path", str(model_dir),
               "--port", str(port), "--log_level", "warning", *args]
    process_env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", **(env or {})}
    process = subprocess.Popen(command, cwd=REPO, env=process_env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               text=True)
    return process, f"http://127.0.0.1:{port}"


def stop_process(process: subprocess.Popen) -> str:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
    try:
        output, _ = process.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        process.kill()
        output, _ = process.communicate()
    return output
