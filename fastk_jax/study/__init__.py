"""Studies: the typed study model, its TOML reader and the named studies."""

from .tables import *  # noqa: F401,F403  (replaced by the typed model)
from .tables import _no_extra, _string, number, tomllib  # noqa: F401
