"""Serve a (Gaussian) reward model over HTTP for RL frameworks: `trl-anchor serve`, OpenRLHF's `/get_reward`
protocol, `/score` with μ, σ and reward transforms, dynamic batching, and the clients that call it."""

from .client import RemoteRewardFunction, RewardClient, RewardServerError, ScoreResult
from .config import ServeConfig

__all__ = ["RemoteRewardFunction", "RewardClient", "RewardServerError", "ScoreResult", "ServeConfig", "serve"]


def serve(config: ServeConfig) -> None:
    """Run the server (see `trl_anchor.serving.app.serve`); FastAPI and uvicorn load only here."""
    from .app import serve as _serve

    _serve(config)
