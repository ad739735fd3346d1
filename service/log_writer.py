"""Log lines to stdout without the event loop ever waiting for stdout.

Every log line of the process (access lines and application logs alike) is
appended to one bounded in-process buffer; a daemon thread writes the buffer
to file descriptor 1 in batches, at least every FLUSH_INTERVAL_SECONDS and as
soon as it is half full. If whatever reads stdout stalls, that thread blocks
in write() (off the event loop), the buffer fills, and further lines are
dropped and counted (linkgate_log_lines_dropped_total) instead of waited for.

Before this, every line went through logging and python-json-logger and
was written, one write() per line, from the event loop: py-spy put 27% of
the server's samples in Logger.info under the hot-code workload (14 µs a
line), which ran at 0.32 of the bare-ASGI ceiling with the access log on
and 0.77 with it off; and a stalled reader of stdout stalled every request.
"""

from __future__ import annotations

import atexit
import collections
import contextlib
import errno
import fcntl
import os
import select
import stat
import termios
import threading

# "Flushed at least every 100 ms."
FLUSH_INTERVAL_SECONDS = 0.1
# The longest a shutdown waits for buffered lines to reach a slow stdout;
# past it they are given up, so a stalled reader cannot hang the exit.
SHUTDOWN_FLUSH_SECONDS = 2.0

# Writes of up to PIPE_BUF bytes to a pipe are atomic: several worker
# processes share the container's stdout pipe, so lines must not be split.
_PIPE_BUF = getattr(select, "PIPE_BUF", 512)
_F_GETPIPE_SZ = getattr(fcntl, "F_GETPIPE_SZ", None)


class LogWriter:
    """A bounded buffer of text lines and the thread that writes them to a file descriptor.

    write() is safe from any thread and never blocks: it appends, or drops
    and counts when `capacity` lines are already waiting.
    """

    def __init__(self, fd: int = 1, *, capacity: int, interval: float = FLUSH_INTERVAL_SECONDS) -> None:
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        self.fd = fd
        self.capacity = capacity
        self._interval = interval
        # deque.append and popleft are atomic: producers and the writer need no lock.
        self._lines: collections.deque[str] = collections.deque()
        self._wake = threading.Event()
        self._written = threading.Condition()
        self._busy = False
        self._drop_lock = threading.Lock()
        self._dropped = 0  # every line ever dropped
        self._dropped_taken = 0
        self._thread: threading.Thread | None = None
        self._is_pipe = _is_pipe(fd)
        self.pid = os.getpid()
        # After close(): lines are written as they come, if stdout has room (see close).
        self._direct = False
        self._direct_fd: int | None = None

    # --- producers (any thread, never blocking) -----------------------------

    def write(self, line: str) -> None:
        """Queue one line (ending in a newline); drop and count it if the buffer is full."""
        if self._direct:
            self._write_direct(line)
            return
        lines = self._lines
        waiting = len(lines)
        if waiting >= self.capacity:
            self._drop(1)
            return
        lines.append(line)
        if waiting * 2 >= self.capacity and not self._wake.is_set():
            self._wake.set()  # half full: write now rather than at the next tick

    def _drop(self, count: int) -> None:
        with self._drop_lock:
            self._dropped += count

    @property
    def dropped(self) -> int:
        return self._dropped

    def take_dropped(self) -> int:
        """Lines dropped since the last call (for the metrics flush)."""
        with self._drop_lock:
            new, self._dropped_taken = self._dropped - self._dropped_taken, self._dropped
        return new

    # --- the writer thread --------------------------------------------------

    def start(self) -> LogWriter:
        self._direct = False
        if self._thread is None or not self._thread.is_alive():
            self._thread = threading.Thread(target=self._run, name="linkgate-log-writer", daemon=True)
            self._thread.start()
        return self

    def _run(self) -> None:
        while True:
            self._wake.wait(self._interval)
            self._wake.clear()
            try:
                self._write_waiting()
            except Exception:  # noqa: BLE001 - a bug here must not stop the thread: lines would pile up
                continue

    def _write_waiting(self) -> None:
        lines = self._lines
        with self._written:
            self._busy = True
        count = len(lines)
        try:
            if count:
                batch = [lines.popleft() for _ in range(count)]
                try:
                    self._write_all("".join(batch).encode("utf-8", "backslashreplace"))
                except OSError:  # stdout closed or gone: nothing to wait for
                    self._drop(count)
        finally:
            with self._written:
                self._busy = False
                self._written.notify_all()

    def _write_all(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            size = self._next_write_size(view)
            try:
                written = os.write(self.fd, view[:size])
            except BlockingIOError:  # someone made the descriptor non-blocking
                select.select([], [self.fd], [], self._interval)
                continue
            view = view[written:]

    def _next_write_size(self, view: memoryview) -> int:
        """All of it, unless stdout is a pipe: then whole lines of at most PIPE_BUF bytes.

        Only a write of at most PIPE_BUF bytes to a pipe is atomic (POSIX),
        so only such writes keep every worker's lines whole whatever the
        other workers write at the same moment. (An estimate of the pipe's
        room, used before, let two writers split each other's lines when the
        pipe filled between the estimate and the write.) At ~200 bytes a line
        that is ~20 lines a write.
        """
        if not self._is_pipe or len(view) <= _PIPE_BUF:
            return len(view)
        cut = bytes(view[:_PIPE_BUF]).rfind(b"\n") + 1
        return cut or len(view)  # a single line longer than PIPE_BUF goes as it is

    # --- shutdown -----------------------------------------------------------

    def flush(self, timeout: float = SHUTDOWN_FLUSH_SECONDS) -> bool:
        """Wait up to `timeout` seconds for every queued line to be written; False if some were not.

        Blocks the calling thread: from the event loop, call it through
        asyncio.to_thread.
        """
        if self._thread is None or not self._thread.is_alive():
            self._write_waiting()  # no thread (never started): write here
            return not self._lines
        self._wake.set()
        with self._written:
            return self._written.wait_for(lambda: not self._lines and not self._busy, timeout)


    def close(self, timeout: float = SHUTDOWN_FLUSH_SECONDS) -> bool:
        """Flush (bounded by `timeout`), then write later lines at once, or drop them if stdout is full.

        For the end of a server process: uvicorn logs its last lines after
        the app has shut down, and then dies of the SIGTERM it shut down for
        (it re-raises it), with no chance for a buffer to be written.
        start() goes back to buffering.
        """
        flushed = self.flush(timeout)
        if self._is_pipe and self._direct_fd is None:
            # A non-blocking open of the same pipe of its own: a write either
            # fits or fails at once (making fd 1 itself non-blocking would
            # change it for every process sharing it).
            try:
                self._direct_fd = os.open(f"/proc/self/fd/{self.fd}", os.O_WRONLY | os.O_NONBLOCK)
            except OSError:
                self._direct_fd = None
        self._direct = True
        return flushed

    def _write_direct(self, line: str) -> None:
        data = line.encode("utf-8", "backslashreplace")
        if not self._is_pipe:
            fd = self.fd
        elif self._direct_fd is not None:
            fd = self._direct_fd
        else:
            self._drop(1)  # no way to write without possibly waiting for the reader
            return
        try:
            while data:
                data = data[os.write(fd, data):]
        except OSError:  # BlockingIOError included: the pipe is full
            self._drop(1)


def _is_pipe(fd: int) -> bool:
    try:
        return stat.S_ISFIFO(os.fstat(fd).st_mode)
    except OSError:
        return False


def _pipe_room(fd: int) -> int:
    """Bytes a write to the pipe can take without waiting (a page short, to be safe); 0 if unknown."""
    if _F_GETPIPE_SZ is None:
        return 0
    try:
        size = fcntl.fcntl(fd, _F_GETPIPE_SZ)
        waiting = int.from_bytes(fcntl.ioctl(fd, termios.FIONREAD, b"\0\0\0\0"), "little", signed=True)
    except OSError as exc:
        if exc.errno not in (errno.EINVAL, errno.ENOTTY, errno.EBADF):
            raise
        return 0
    return max(0, size - waiting - 4096)


_process_writer: LogWriter | None = None
_writer_lock = threading.Lock()


def stdout_writer(capacity: int) -> LogWriter:
    """This process's writer to stdout, started on first use; flushed (bounded) at exit.

    One per process, because stdout is: `serve` makes it before uvicorn
    starts, each worker's lifespan asks for it again.
    """
    global _process_writer
    with _writer_lock:
        writer = _process_writer
        # (A forked child makes its own: threads do not survive fork.)
        if writer is None or writer.pid != os.getpid():
            writer = _process_writer = LogWriter(1, capacity=capacity)
            atexit.register(_flush_at_exit, writer)
        writer.capacity = capacity
        return writer.start()


def _flush_at_exit(writer: LogWriter) -> None:
    # uvicorn logs its last lines after the lifespan has flushed.
    with contextlib.suppress(Exception):
        writer.flush(SHUTDOWN_FLUSH_SECONDS)
