"""The daemons' logs: plain lines for people (the default), or JSON for log pipelines.

`--log-format json` writes one JSON object a line: `ts` (UTC, ISO 8601), `level`, `logger`,
`message`, the ids the record carries (`job_id`, `shard_id`, `node_id`, passed as `extra=`), and
`exception` with the traceback when there is one. Nothing else is written to the stream: the
daemons print nothing bare beside their logs.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import sys

#: Record attributes copied into a JSON line when a log call passes them (`extra={...}`).
ID_FIELDS = ("job_id", "shard_id", "node_id")


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, object] = {
            "ts": dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(
                timespec="milliseconds"
            ),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for field in ID_FIELDS:
            value = getattr(record, field, None)
            if value is not None:
                line[field] = value
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, ensure_ascii=False, default=str)


def setup_logging(verbose: bool, fmt: str = "text") -> None:
    """Configure the root logger on stderr: `fmt` text (rich on a terminal, plain lines in a
    file) or json."""
    level = logging.DEBUG if verbose else logging.INFO
    handler: logging.Handler
    if fmt == "json":
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(JsonFormatter())
    elif sys.stderr.isatty():
        from rich.console import Console
        from rich.logging import RichHandler

        handler = RichHandler(console=Console(stderr=True), show_path=False, rich_tracebacks=True)
        handler.setFormatter(logging.Formatter("%(name)s: %(message)s", datefmt="[%X]"))
    else:  # a log file: one plain line per record
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=level, handlers=[handler], force=True)
    for noisy in ("sqlalchemy", "aiosqlite", "asyncio"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    # py-libp2p logs a parallel fetch's losing dials and departed peers as errors.
    logging.getLogger("libp2p").setLevel(logging.DEBUG if verbose else logging.CRITICAL)
