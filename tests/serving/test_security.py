"""Safe defaults: loopback detection, token loading, refusing an unauthenticated non-loopback bind."""

import os

import pytest

from trl_anchor.serving.config import TOKEN_ENV_VAR, ServeConfig
from trl_anchor.serving.security import check_bind, is_loopback, load_token

TOKEN = "s3cret-token-0123456789abcdef"


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.2", "localhost", "::1", "[::1]"])
def test_loopback_hosts(host):
    assert is_loopback(host)
    check_bind(host, None)  # no token needed


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.168.1.5", "10.0.0.1", "my-host.example", ""])
def test_non_loopback_hosts_need_a_token(host):
    assert not is_loopback(host)
    with pytest.raises(ValueError, match="Refusing to listen .* without authentication"):
        check_bind(host, None)
    check_bind(host, TOKEN)


def test_token_from_file_then_environment(tmp_path):
    path = tmp_path / "token"
    path.write_text(TOKEN + "\n")
    os.chmod(path, 0o600)
    assert load_token(str(path), environ={TOKEN_ENV_VAR: "other-token-that-is-long-enough"}) == TOKEN
    assert load_token(None, environ={TOKEN_ENV_VAR: f"  {TOKEN} "}) == TOKEN
    assert load_token(None, environ={}) is None


@pytest.mark.parametrize(
    "token, message",
    [("short", "at least 16"), ("", "at least 16"), ("has a space inside it!!", "without spaces"),
     ("ünïcödé-token-0123456789", "printable ASCII")],
)
def test_bad_tokens_are_refused(token, message):
    with pytest.raises(ValueError, match=message):
        load_token(None, environ={TOKEN_ENV_VAR: token})


def test_config_rejects_bad_limits():
    with pytest.raises(ValueError, match="over_length"):
        ServeConfig(over_length="drop")
    with pytest.raises(ValueError, match="max_batch_size"):
        ServeConfig(max_batch_size=0)
    with pytest.raises(ValueError, match="request_timeout"):
        ServeConfig(request_timeout=0)
    assert ServeConfig().host == "127.0.0.1"  # the default is loopback
