"""`trl-anchor serve`: serve a (Gaussian) reward model over HTTP for RL frameworks.

```bash
# loopback only, no token needed; OpenRLHF: --reward.remote_url http://127.0.0.1:5000/get_reward
trl-anchor serve --model_name_or_path outputs/gaussian-minilm --transform quantile:0.1
# reachable from other machines: a token is required (file or $TRL_ANCHOR_SERVE_TOKEN)
trl-anchor serve --model_name_or_path outputs/gaussian-minilm --host 0.0.0.0 --token_file ~/.rm-token
```

Endpoints, limits and security: `trl_anchor.serving` and the README's "Reward-model server" section. Needs the
`serve` extra (`pip install "trl-anchor[serve]"`).
"""

from trl_anchor.serving.config import ServeConfig


def main(config: ServeConfig) -> None:
    from trl_anchor.serving import serve

    serve(config)


def make_parser(prog: str | None = None):
    from trl import TrlParser

    return TrlParser((ServeConfig,), prog=prog)


if __name__ == "__main__":
    (parsed,) = make_parser().parse_args_and_config()
    main(parsed)
