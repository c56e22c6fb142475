"""Find worker classes by ``kind`` in the modules a node is configured with."""

from __future__ import annotations

import importlib
import inspect

from registry.core.errors import ConfigError
from registry.worker import Worker


def load_kinds(modules: tuple[str, ...]) -> dict[str, type[Worker]]:
    kinds: dict[str, type[Worker]] = {}
    for module_name in modules:
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            raise ConfigError(f"cannot import worker module {module_name!r}: {exc}") from exc
        for _, cls in inspect.getmembers(module, inspect.isclass):
            if not issubclass(cls, Worker) or cls is Worker:
                continue
            kind = getattr(cls, "kind", "")
            if not kind:
                continue
            other = kinds.get(kind)
            if other is not None and other is not cls:
                raise ConfigError(
                    f"kind {kind!r} is defined twice: {other.__module__}.{other.__name__} "
                    f"and {cls.__module__}.{cls.__name__}"
                )
            kinds[kind] = cls
    return kinds
