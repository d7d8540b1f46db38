"""``python -m fastk_jax``: the same as the ``fastk-jax`` command."""

from .cli import console

console()
