"""What a result was made with: the versions that can change its numbers, and its provenance."""

from __future__ import annotations

import datetime
import platform as _platform
import sys


def versions() -> dict[str, str]:
    """The package and library versions recorded with results and checkpoints (every one of
    them can change a simulation's numbers)."""
    import jax
    import jaxlib
    import numpy as np
    import optax

    from . import __version__

    return {
        "fastk_jax": __version__,
        "jax": jax.__version__,
        "jaxlib": jaxlib.__version__,
        "optax": optax.__version__,
        "numpy": np.__version__,
        "python": _platform.python_version(),
    }


def provenance(argv: list[str] | None = None) -> dict[str, object]:
    """Where and when a result was made: the versions, the JAX platform and device kind, how
    many devices and processes, the command line and the date (UTC, ISO 8601)."""
    import jax

    device = jax.devices()[0]
    return {
        "versions": versions(),
        "platform": device.platform,
        "device_kind": device.device_kind,
        "devices": jax.device_count(),
        "processes": jax.process_count(),
        "command": list(sys.argv if argv is None else argv),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "machine": _platform.machine(),
    }
