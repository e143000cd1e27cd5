"""The reward-model server: a FastAPI app over one `RewardScorer` and one `DynamicBatcher`, run by uvicorn.

Endpoints (request and response shapes in `trl_anchor.serving.protocol`):

- `POST /get_reward`: OpenRLHF's remote reward model protocol; rewards are the configured `RewardTransform`.
- `POST /score`: μ, σ and any requested transforms per item and attribute.
- `GET /health`: liveness, without authentication and without details.
- `GET /info`: model, transform, anchor thresholds, limits, batching counters, version.

Example:

```python
>>> from trl_anchor.serving import ServeConfig, serve

>>> serve(ServeConfig(model_name_or_path="outputs/gaussian-minilm", transform="quantile:0.1"))  # doctest: +SKIP
```
"""

import asyncio
import contextlib
import math
from concurrent.futures import ThreadPoolExecutor

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from transformers.utils import logging

from .. import __version__
from ..rewards.transforms import RewardTransform
from .batching import BatcherClosedError, DynamicBatcher, QueueFullError
from .config import ServeConfig
from .protocol import ApiError, build_transforms, parse_get_reward_request, parse_score_request
from .scorer import RewardScorer
from .security import authorize, check_bind, load_token, read_json_body

logger = logging.get_logger(__name__)


class RewardService:
    """What the endpoints share: the scorer, its batcher, the configured transform, the limits and the token."""

    def __init__(self, scorer: RewardScorer, config: ServeConfig, token: str | None = None):
        self.scorer, self.config, self.token = scorer, config, token
        try:
            transforms = build_transforms([config.transform], scorer.model.config, scorer.is_gaussian)
        except ApiError as error:
            raise ValueError(f"--transform: {error.message}") from None
        self.transform: RewardTransform = transforms[config.transform]
        self.batcher = DynamicBatcher(
            scorer.score,
            max_batch_size=config.max_batch_size,
            max_batch_tokens=config.max_batch_tokens,
            max_wait_ms=config.max_wait_ms,
            max_queue_items=config.max_queue_items,
        )
        # Counting runs off the event loop on one thread of its own: fast tokenizers are not safe to share across
        # threads, and the scorer's request-path tokenizer copy is used only here.
        self.tokenizer_executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="trl-anchor-tokenizer")

    async def read(self, request: Request):
        authorize(request, self.token)
        return await read_json_body(request, self.config.max_request_bytes, self.config.body_timeout)

    async def score(self, responses: list, prompts: list) -> tuple[list, list[int], list[bool]]:
        """(μ, σ) per item through the batcher, with token counts and truncation flags."""
        loop = asyncio.get_running_loop()
        counts = await loop.run_in_executor(self.tokenizer_executor, self.scorer.count_tokens, responses, prompts)
        limit = self.scorer.max_tokens_per_item
        too_long = [i for i, n in enumerate(counts) if n > limit]
        if too_long and self.scorer.over_length == "reject":
            raise ApiError(
                413, "too_many_tokens",
                f"Item(s) {too_long[:10]} have {[counts[i] for i in too_long[:10]]} tokens; the limit is {limit}.",
            )
        lengths = [min(n, limit) for n in counts]
        try:
            results = await asyncio.wait_for(
                self.batcher.submit(list(zip(responses, prompts, strict=True)), lengths), self.config.request_timeout
            )
        except QueueFullError as error:
            raise ApiError(503, "overloaded", str(error), headers={"Retry-After": "1"}) from None
        except BatcherClosedError as error:
            raise ApiError(503, "shutting_down", str(error)) from None
        except asyncio.TimeoutError:
            raise ApiError(504, "timeout", f"Scoring took longer than {self.config.request_timeout:g} s.") from None
        bad = [i for i, (mean, std) in enumerate(results) if not _finite(mean, std)]
        if bad:
            raise ApiError(500, "non_finite_score", f"The model returned a non-finite μ or σ for item(s) {bad[:10]}.")
        return results, counts, [n > limit for n in counts]

    def info(self) -> dict:
        config = self.config
        return {
            **self.scorer.info(),
            "transform": str(self.transform),
            "limits": {
                "max_request_bytes": config.max_request_bytes,
                "max_items_per_request": config.max_items_per_request,
                "max_tokens_per_item": self.scorer.max_tokens_per_item,
                "over_length": self.scorer.over_length,
                "request_timeout": config.request_timeout,
            },
            "batching": {
                "max_batch_size": config.max_batch_size,
                "max_batch_tokens": config.max_batch_tokens,
                "max_wait_ms": config.max_wait_ms,
                "queued_items": self.batcher.queued_items,
                **self.batcher.stats,
            },
            "authentication": "bearer" if self.token is not None else "none",
        }


def _finite(mean: float | list[float], std: float | list[float] | None) -> bool:
    values = _row(mean) + ([] if std is None else _row(std))
    return all(math.isfinite(value) for value in values)


def _row(value: float | list[float]) -> list[float]:
    # One column per attribute: a multi-attribute model already gives a list.
    return value if isinstance(value, list) else [value]


def _apply(transform: RewardTransform, means: list, stds: list) -> list[float]:
    return transform(means, None if stds[0] is None else stds).tolist()


def create_app(scorer: RewardScorer, config: ServeConfig, token: str | None = None) -> FastAPI:
    """The FastAPI app serving `scorer`; the batcher starts and drains with the app's lifespan."""
    service = RewardService(scorer, config, token)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        service.batcher.start()
        yield
        await service.batcher.close()  # uvicorn stops accepting and finishes in-flight requests before this
        service.tokenizer_executor.shutdown(wait=True)

    app = FastAPI(title="trl-anchor reward model", version=__version__, lifespan=lifespan, docs_url=None,
                  redoc_url=None, openapi_url=None)
    app.state.service = service
    _add_error_handlers(app)

    @app.get("/health")
    async def health():
        return {"status": "ok"}

    @app.get("/info")
    async def info(request: Request):
        authorize(request, service.token)
        return service.info()

    @app.post("/get_reward")
    async def get_reward(request: Request):
        queries = parse_get_reward_request(await service.read(request), config.max_items_per_request)
        results, _, _ = await service.score(queries, [None] * len(queries))
        means, stds = [mean for mean, _ in results], [std for _, std in results]
        rewards = _apply(service.transform, means, stds)
        extra_logs = {"reward_mu": means} | ({} if stds[0] is None else {"reward_sigma": stds})
        return {"rewards": rewards, "scores": rewards, "extra_logs": extra_logs}

    @app.post("/score")
    async def score(request: Request):
        parsed = parse_score_request(await service.read(request), config.max_items_per_request)
        transforms = build_transforms(parsed.transforms, scorer.model.config, scorer.is_gaussian)
        results, counts, truncated = await service.score(parsed.responses, parsed.prompts)
        means, stds = [mean for mean, _ in results], [std for _, std in results]
        return {
            "model": scorer.name,
            "attributes": scorer.attributes,
            "mu": [_row(mean) for mean in means],
            "sigma": None if stds[0] is None else [_row(std) for std in stds],
            "transforms": {spec: [[r] for r in _apply(t, means, stds)] for spec, t in transforms.items()},
            "num_tokens": counts,
            "truncated": truncated,
        }

    return app


def _add_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def api_error(request: Request, error: ApiError):
        return JSONResponse(error.body(), status_code=error.status, headers=error.headers)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, error: StarletteHTTPException):
        kind = {404: "not_found", 405: "method_not_allowed"}.get(error.status_code, "http_error")
        body = {"error": {"type": kind, "message": f"{request.method} {request.url.path}: {error.detail}"}}
        return JSONResponse(body, status_code=error.status_code, headers=getattr(error, "headers", None))

    @app.exception_handler(Exception)
    async def internal_error(request: Request, error: Exception):
        logger.error(f"{request.method} {request.url.path} failed: {error!r}")
        body = {"error": {"type": "internal_error", "message": f"The server failed: {type(error).__name__}."}}
        return JSONResponse(body, status_code=500)


def serve(config: ServeConfig) -> None:
    """Check the bind and the token, load the model, and serve until SIGINT/SIGTERM (in-flight requests finish)."""
    import uvicorn

    if config.model_name_or_path is None:
        raise ValueError("Give the reward model to serve: --model_name_or_path DIR.")
    token = load_token(config.token_file)
    check_bind(config.host, token)
    scorer = RewardScorer.from_pretrained(
        config.model_name_or_path,
        device=config.device,
        dtype=config.dtype,
        max_tokens_per_item=config.max_tokens_per_item,
        over_length=config.over_length,
    )
    app = create_app(scorer, config, token)
    server_config = uvicorn.Config(
        app,
        host=config.host,
        port=config.port,
        log_level=config.log_level,
        limit_concurrency=config.max_concurrency,
        timeout_graceful_shutdown=config.shutdown_timeout,
        server_header=False,
        proxy_headers=False,
    )
    uvicorn.Server(server_config).run()
