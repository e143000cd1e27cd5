"""Fixtures shared by the trainer tests."""

import pytest
from conformance import tiny_model_ids


@pytest.fixture(scope="session")
def model_ids(tmp_path_factory, tokenizer_dir) -> dict[str, str]:
    """The tiny checkpoints of `conformance.tiny_model_ids`, built once for every conformance module."""
    return tiny_model_ids(tmp_path_factory, tokenizer_dir)
