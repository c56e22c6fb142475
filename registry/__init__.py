"""quorum-registry: a partition-safe (CP) distributed registry of named workers.

The public API is what ``__all__`` lists; every other module is an implementation detail.
"""

from __future__ import annotations

from registry.core.errors import ConfigError, RegistryError

__version__ = "0.1.0"

__all__ = [
    "ConfigError",
    "RegistryError",
    "__version__",
]
