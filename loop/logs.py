"""How the CLI logs: readable lines for people, or one JSON object per line for scripts.

Stage lines carry their figures as record fields (round, stage, seconds, summary), so a JSON
reader needs no parsing of the message text.
"""

from __future__ import annotations

import json
import logging
import sys
import time

# fields that loop.round attaches to a stage line with `extra=`
STAGE_FIELDS = ("round", "stage", "summary", "seconds")
# Ray's logger writes plain text through a handler of its own; this one warns about token
# authentication whenever a local Ray starts.
RAY_AUTH_LOGGER = "ray._private.authentication.authentication_token_setup"


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(record.created))
            + f".{int(record.msecs):03d}",
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        out |= {f: getattr(record, f) for f in STAGE_FIELDS if hasattr(record, f)}
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str)


def configure(verbose: bool = False, quiet: bool = False, as_json: bool = False) -> None:
    """Root logging on stderr: DEBUG with `verbose`, warnings only with `quiet`, else INFO."""
    level = logging.DEBUG if verbose else logging.WARNING if quiet else logging.INFO
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        JsonFormatter()
        if as_json
        else logging.Formatter("%(asctime)s %(levelname)-7s %(message)s", datefmt="%H:%M:%S")
    )
    logging.basicConfig(level=level, handlers=[handler], force=True)
    # Under --json every stderr line must parse: Ray's notice goes out as one of ours instead.
    ray_auth = logging.getLogger(RAY_AUTH_LOGGER)
    ray_auth.handlers = [handler] if as_json else []
    ray_auth.propagate = not as_json
