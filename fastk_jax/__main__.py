"""``python -m fastk_jax``: the same as the ``fastk-jax`` command."""

import sys

from .cli import main

sys.exit(main())
