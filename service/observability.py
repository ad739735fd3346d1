"""JSON logs with request ids, and request metrics for everything but the redirect.

(The redirect gateway counts and logs its own requests: it answers before
this middleware is reached.) Every line, access or application log, goes
through the process's LogWriter, so no log call waits for stdout.
"""

from __future__ import annotations

import contextvars
import logging
import time
from json.encoder import encode_basestring_ascii as _quoted

from pythonjsonlogger.json import JsonFormatter

from . import metrics
from .access_log import TIMESTAMP_FORMAT, AccessLog
from .config import Settings
from .log_writer import LogWriter, stdout_writer
from .redirect import request_id_of

request_id_var: contextvars.ContextVar[str | None] = contextvars.ContextVar("request_id", default=None)


class _RequestIdFilter(logging.Filter):
    """Stamps the current request's id on every record logged while serving it."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "request_id"):
            record.request_id = request_id_var.get()
        return True


class WriterHandler(logging.Handler):
    """Hands each formatted record to a LogWriter: queued, or dropped and counted, never waited for."""

    def __init__(self, writer: LogWriter) -> None:
        super().__init__()
        self.writer = writer

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.writer.write(self.format(record) + "\n")
        except Exception:  # noqa: BLE001 - logging must never raise into the caller
            self.handleError(record)


# What an audit line may carry besides the common fields (service.access.keys, service.links).
AUDIT_FIELDS = ("event", "code", "key_id", "key_name", "role", "by_key_id", "by_key_name")


class AuditFormatter(logging.Formatter):
    """Audit lines as one f-string: the same JSON shape as every other line, plus the audit fields.

    A create writes one; through python-json-logger that was ~6% of a create's
    time in a profile, this is a few microseconds.
    """

    def format(self, record: logging.LogRecord) -> str:
        stamp = time.strftime(TIMESTAMP_FORMAT, time.localtime(record.created))
        extra = "".join(
            f', "{name}": {_quoted(str(value))}'
            for name in AUDIT_FIELDS if (value := getattr(record, name, None)) is not None
        )
        request_id = getattr(record, "request_id", None)
        return (
            f'{{"timestamp": "{stamp}", "level": "{record.levelname}", "logger": "{record.name}", '
            f'"message": {_quoted(record.getMessage())}, '
            f'"request_id": {_quoted(request_id) if request_id else "null"}{extra}}}'
        )


def configure_logging(level: str = "INFO", *, writer: LogWriter | None = None) -> None:
    """One JSON object per line on stdout: timestamp, level, logger, message, request_id.

    `writer`: where lines go (default: this process's stdout writer).
    """
    if writer is None:
        writer = stdout_writer(Settings.model_fields["log_buffer_lines"].default)
    handler = WriterHandler(writer)
    handler.setFormatter(
        JsonFormatter(
            "{asctime}{levelname}{name}{message}{request_id}",
            style="{",
            rename_fields={"asctime": "timestamp", "levelname": "level", "name": "logger"},
            datefmt=TIMESTAMP_FORMAT,
        )
    )
    handler.addFilter(_RequestIdFilter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    audit_handler = WriterHandler(writer)
    audit_handler.setFormatter(AuditFormatter())
    audit_handler.addFilter(_RequestIdFilter())
    audit = logging.getLogger("linkgate.audit")
    audit.handlers[:] = [audit_handler]
    audit.propagate = False
    logging.getLogger("alembic").setLevel(logging.WARNING)  # its plugin chatter on every start
    for name in ("uvicorn", "uvicorn.error"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True
    # linkgate logs requests itself (LINKGATE_ACCESS_LOG); with no handler
    # anywhere for uvicorn's access logger, uvicorn skips formatting a line
    # per response (it checks hasHandlers()).
    uvicorn_access = logging.getLogger("uvicorn.access")
    uvicorn_access.handlers[:] = []
    uvicorn_access.propagate = False


# Scope key the app sets on a HEAD request it serves as GET, so that it is
# still counted and logged as the HEAD it was.
HEAD_AS_GET = "linkgate.head_as_get"


# The status counted and logged for a request whose client closed the connection
# before the answer started (nginx's "499 Client Closed Request"): the answer
# the app made then reached nobody, and its status would blame the wrong side
# (a body that was never read answers 400 "error parsing the body").
CLIENT_CLOSED = 499


class RequestContext:
    """X-Request-ID in and out, latency and count by route template, access log."""

    def __init__(self, app, *, access_log: AccessLog | None = None) -> None:
        self.app = app
        self._access_log = access_log

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        request_id = request_id_of(scope)
        request_id_text = request_id.decode()
        token = request_id_var.set(request_id_text)
        started = time.perf_counter()
        # [status of the answer, whether it started, whether the client left before it did]
        state = [500, False, False]

        async def receive_noting_disconnect():
            message = await receive()
            if message["type"] == "http.disconnect" and not state[1]:
                state[2] = True
            return message

        async def send_with_id(message) -> None:
            if message["type"] == "http.response.start":
                state[0], state[1] = message["status"], True
                message["headers"] = [*message.get("headers", []), (b"x-request-id", request_id)]
            await send(message)

        try:
            await self.app(scope, receive_noting_disconnect, send_with_id)
        finally:
            route = getattr(scope.get("route"), "path", None) or "unmatched"
            status = CLIENT_CLOSED if state[2] else state[0]
            method = "HEAD" if scope.get(HEAD_AS_GET) else scope["method"]
            elapsed = time.perf_counter() - started
            metrics.REQUESTS.labels(method=method, route=route, status=str(status)).inc()
            metrics.LATENCY.labels(method=method, route=route).observe(elapsed)
            if self._access_log is not None:
                self._access_log.record(method, route, scope["path"], status, request_id_text, elapsed)
            request_id_var.reset(token)
