"""Process logging for the control plane and the workers: plain text (default) or one JSON object per line.

This is the operational log (start-up, config applied, targets going unhealthy), written to stderr;
the worker's per-request access log is separate (``data_plane/observe/accesslog.py``, stdout or a file).
"""

from __future__ import annotations

import json
import logging
import time

TEXT = "text"
JSON = "json"
FORMATS = (TEXT, JSON)


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        doc = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            doc["exception"] = self.formatException(record.exc_info)
        return json.dumps(doc, ensure_ascii=False)


def setup(level: str, fmt: str = TEXT) -> None:
    if fmt not in FORMATS:
        raise ValueError(f"log format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    handler = logging.StreamHandler()
    if fmt == JSON:
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=level.upper(), handlers=[handler], force=True)
    # The operator's log holds what an operator acts on.  Libraries' INFO lines are not that: alembic's
    # set-up lines on every start, httpx's line per request (every heartbeat, usage batch and snapshot
    # long-poll of a worker).  They come back with --log-level debug.
    quiet = logging.DEBUG if level.upper() == "DEBUG" else logging.WARNING
    for name in QUIET_LIBRARIES:
        logging.getLogger(name).setLevel(quiet)


QUIET_LIBRARIES = ("alembic", "httpx", "httpcore")
