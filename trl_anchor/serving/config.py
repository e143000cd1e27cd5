"""Settings of the reward-model server (`trl-anchor serve`): what to load, where to listen, how to batch, which limits
to enforce. Every default is the safe one: loopback only, bounded requests, safetensors weights, no remote code."""

from dataclasses import dataclass, field

TOKEN_ENV_VAR = "TRL_ANCHOR_SERVE_TOKEN"
OVER_LENGTH_POLICIES = ("truncate", "reject")


@dataclass
class ServeConfig:
    """Arguments of `trl-anchor serve`.

    Example:

    ```python
    >>> from trl_anchor.serving import ServeConfig

    >>> config = ServeConfig(model_name_or_path="outputs/gaussian-minilm", transform="quantile:0.1")
    >>> config.host, config.port
    ('127.0.0.1', 5000)
    ```
    """

    model_name_or_path: str | None = field(
        default=None, metadata={"help": "The reward model to serve: a local directory (safetensors weights)."}
    )
    transform: str = field(
        default="mean",
        metadata={
            "help": "RewardTransform spec of the scalar `/get_reward` returns (e.g. `mean`, `quantile:0.1`, "
            "`lcb:1.0,normalize`); `/score` requests may name others."
        },
    )
    host: str = field(
        default="127.0.0.1",
        metadata={"help": "Address to bind. Anything but a loopback address requires a token (see `token_file`)."},
    )
    port: int = field(default=5000, metadata={"help": "Port to bind (0 picks a free one and logs it)."})
    token_file: str | None = field(
        default=None,
        metadata={
            "help": f"File holding the bearer token clients must send. Without it the token is read from the "
            f"{TOKEN_ENV_VAR} environment variable; with neither, the server only starts on a loopback address and "
            "accepts unauthenticated requests."
        },
    )
    device: str | None = field(default=None, metadata={"help": "Device to score on (default: cuda if available)."})
    dtype: str = field(
        default="auto",
        metadata={"help": "Weights dtype: `auto` (bfloat16 on GPU, float32 on CPU), `bfloat16`, `float16`, `float32`"},
    )
    max_batch_size: int = field(
        default=32, metadata={"help": "Most sequences in one forward pass (1 disables batching across requests)."}
    )
    max_batch_tokens: int = field(
        default=65536,
        metadata={"help": "Most padded positions (rows × longest row) in one forward pass; bounds activation memory."},
    )
    max_wait_ms: float = field(
        default=5.0,
        metadata={"help": "How long the oldest queued sequence waits for a batch to fill before it is scored anyway."},
    )
    max_queue_items: int = field(
        default=8192, metadata={"help": "Queued sequences beyond which new requests get 503 (back pressure)."}
    )
    max_request_bytes: int = field(default=4 * 1024 * 1024, metadata={"help": "Largest request body accepted (413)."})
    max_items_per_request: int = field(default=256, metadata={"help": "Most sequences in one request (413)."})
    max_tokens_per_item: int | None = field(
        default=None,
        metadata={
            "help": "Longest sequence in tokens (default: the model's position limit). Longer ones are handled by "
            "`over_length`."
        },
    )
    over_length: str = field(
        default="truncate",
        metadata={
            "help": "`truncate`: score over-long sequences by the scoring rule (`score_responses(max_length=...)`) "
            "and flag them in the response; `reject`: answer 413."
        },
    )
    request_timeout: float = field(
        default=120.0, metadata={"help": "Seconds a request may wait for its scores (queue + forward) before 504."}
    )
    body_timeout: float = field(default=30.0, metadata={"help": "Seconds a client may take to send its body (408)."})
    max_concurrency: int = field(
        default=1024, metadata={"help": "Open connections and in-flight requests beyond which uvicorn answers 503."}
    )
    shutdown_timeout: float = field(
        default=60.0,
        metadata={"help": "On SIGTERM/SIGINT, seconds to let in-flight requests finish before they are cancelled."},
    )
    log_level: str = field(default="info", metadata={"help": "uvicorn log level."})

    def __post_init__(self):
        if self.over_length not in OVER_LENGTH_POLICIES:
            raise ValueError(f"`over_length` must be one of {OVER_LENGTH_POLICIES}, got {self.over_length!r}.")
        positive = {
            "max_batch_size": self.max_batch_size,
            "max_batch_tokens": self.max_batch_tokens,
            "max_queue_items": self.max_queue_items,
            "max_request_bytes": self.max_request_bytes,
            "max_items_per_request": self.max_items_per_request,
            "max_concurrency": self.max_concurrency,
        }
        if self.max_tokens_per_item is not None:
            positive["max_tokens_per_item"] = self.max_tokens_per_item
        for name, value in positive.items():
            if value < 1:
                raise ValueError(f"`{name}` must be a positive integer, got {value}.")
        if self.max_wait_ms < 0:
            raise ValueError(f"`max_wait_ms` must be ≥ 0, got {self.max_wait_ms}.")
        for name in ("request_timeout", "body_timeout", "shutdown_timeout"):
            if not getattr(self, name) > 0:
                raise ValueError(f"`{name}` must be > 0 seconds, got {getattr(self, name)}.")
        if not 0 <= self.port <= 65535:
            raise ValueError(f"`port` must be in 0..65535, got {self.port}.")
