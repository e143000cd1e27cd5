import importlib

import pytest

from trl_anchor.cli import COMMANDS, main


def test_help_lists_every_command(capsys):
    assert main([]) == 0
    out = capsys.readouterr().out
    for name in COMMANDS:
        assert name in out


def test_unknown_command(capsys):
    assert main(["trian"]) == 2
    assert "unknown command 'trian'" in capsys.readouterr().err


@pytest.mark.parametrize("name", list(COMMANDS))
def test_every_command_builds_a_trl_parser(name):
    from trl import TrlParser

    script = importlib.import_module(COMMANDS[name][0])
    assert isinstance(script.make_parser(prog=f"trl-anchor {name}"), TrlParser)
    assert callable(script.main)
