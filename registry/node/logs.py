"""Log output of ``registry node``: every line names the node; text or JSON lines.

- ``text`` (default): ``2026-12-05 05:31:02,118 n1 INFO registry.node: node n1 up: …``
- ``json``: one object per line, for log shippers (Loki, Elasticsearch, CloudWatch):
  ``{"time": "2026-12-05T05:31:02.118Z", "level": "INFO", "node": "n1",
  "logger": "registry.node", "message": "…"}`` plus ``"exception"`` (the formatted
  traceback) when there is one. Times are UTC.
"""

from __future__ import annotations

import json
import logging
import time

__all__ = ["FORMATS", "JsonFormatter", "configure"]

FORMATS = ("text", "json")


class JsonFormatter(logging.Formatter):
    """One JSON object per record; see the module docstring."""

    def __init__(self, node: str) -> None:
        super().__init__()
        self.node = node

    def format(self, record: logging.LogRecord) -> str:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
        out: dict[str, object] = {
            "time": f"{stamp}.{int(record.msecs):03d}Z",
            "level": record.levelname,
            "node": self.node,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        return json.dumps(out, ensure_ascii=False)


def configure(level: str, node: str, fmt: str = "text") -> None:
    """Send the root logger's records to stderr in ``fmt``, each naming ``node``."""
    handler = logging.StreamHandler()
    if fmt == "json":
        handler.setFormatter(JsonFormatter(node))
    else:
        # The id is fixed for the process's life, so it is part of the format string.
        safe = node.replace("%", "%%")
        handler.setFormatter(
            logging.Formatter(f"%(asctime)s {safe} %(levelname)s %(name)s: %(message)s")
        )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
