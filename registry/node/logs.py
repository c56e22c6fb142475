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

__all__ = ["FORMATS", "JsonFormatter", "configure", "configured_format"]

FORMATS = ("text", "json")
_format = "text"


class JsonFormatter(logging.Formatter):
    """One JSON object per record; see the module docstring."""

    def __init__(self, node: str, process: str = "") -> None:
        super().__init__()
        self.node = node
        self.process = process

    def format(self, record: logging.LogRecord) -> str:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
        out: dict[str, object] = {
            "time": f"{stamp}.{int(record.msecs):03d}Z",
            "level": record.levelname,
            "node": self.node,
            **({"process": self.process} if self.process else {}),
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        return json.dumps(out, ensure_ascii=False)


def configure(level: str, node: str, fmt: str = "text", process: str = "") -> None:
    """Send the root logger's records to stderr in ``fmt``, each naming ``node`` (and,
    for a worker host, its ``process``, e.g. ``host 0``)."""
    global _format
    _format = fmt
    handler = logging.StreamHandler()
    if fmt == "json":
        handler.setFormatter(JsonFormatter(node, process))
    else:
        # The id is fixed for the process's life, so it is part of the format string.
        safe = node.replace("%", "%%")
        where = f"[{process}]" if process else ""
        handler.setFormatter(
            logging.Formatter(f"%(asctime)s {safe} %(levelname)s %(name)s{where}: %(message)s")
        )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())


def configured_format() -> str:
    """The format ``configure`` last set (worker hosts log the way their node does)."""
    return _format
