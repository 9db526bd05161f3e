"""The AWS CLI for the job bridge's tests, started once instead of once per call.

The bridge script runs `aws` for every S3 call, and a fresh `aws` spends about 0.7 s of CPU importing and setting
itself up before it sends a request: in the job-bridge test files that was most of their CPU. Here one server
process imports the CLI once; every `aws` the bridge runs is a small client that hands its argv, environment,
working directory, umask and its stdin/stdout/stderr to the server, which forks a child that runs the CLI's own
`main()` on them (the installed awscli's code, as `.venv/bin/aws` runs it) and returns its exit status. botocore's
JSON files and list of services are read in the server too, before the fork (_ParsedData), and two pure checks
botocore makes of every event handler are remembered there (_memoize_handler_checks).

Faithful where the bridge's tests depend on it (tests/test_warm_aws_cli.py compares it with the real `aws`):
output, exit status, pipes, relative paths, umask, and callers whose Python would start differently. A killed client (SIGKILL of the bridge's process group)
kills its child as soon as the connection closes, so a fault test's kill still stops the upload. Only the user
that started the server may use it (its socket is in a 0700 folder, and the peer's uid is checked).
`JOB_BRIDGE_TESTS_REAL_AWS=1` runs the tests with the real `aws` instead."""

from __future__ import annotations

import contextlib
import inspect
import json
import marshal
import os
import signal
import socket
import struct
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Iterator

REAL_AWS = Path(sys.executable).parent / "aws"


# What decides, as a Python program starts or awscli is imported, how the CLI behaves: where its code and data come
# from (awscli/__init__.py extends AWS_DATA_PATH) and its text encodings. The client computes it as Python started it
# from the caller's environment, and goes to the server started with the same value; without one, it runs the real
# CLI.
def startup() -> str:
    import _locale
    import os
    import sys
    return repr(([os.environ.get(k) for k in ("PYTHONPATH", "PYTHONHOME", "AWS_DATA_PATH")],
                 [sys.getfilesystemencoding(), _locale.nl_langinfo(_locale.CODESET), sys.flags.utf8_mode]))


# The client: run with -S (no site), and only modules built into Python or cheap to import (json, socket and locale
# import re and enum: 20 ms more of CPU per call, a quarter of the warm CLI's). SOCKETS (by startup value) and
# REAL_AWS are filled in.
CLIENT = inspect.getsource(startup) + r'''
import _socket, marshal, os, struct, sys
SOCKET = SOCKETS.get(startup())
if SOCKET is None or None in (sys.stdin, sys.stdout, sys.stderr):  # a closed stream too
    os.execv(REAL_AWS, [REAL_AWS, *sys.argv[1:]])
stdio = [[s.encoding, s.errors, s.line_buffering, s.write_through] for s in (sys.stdin, sys.stdout, sys.stderr)]
mask = os.umask(0)
os.umask(mask)
body = marshal.dumps({"argv": sys.argv[1:], "env": dict(os.environ), "cwd": os.getcwd(), "umask": mask,
                      "stdio": stdio})
data = struct.pack("!I", len(body)) + body
conn = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
conn.connect(SOCKET)
sent = conn.sendmsg([data], [(_socket.SOL_SOCKET, _socket.SCM_RIGHTS, struct.pack("3i", 0, 1, 2))])
conn.sendall(data[sent:])
status = b""
while len(status) < 4:
    chunk = conn.recv(4 - len(status))
    if not chunk:  # the child died without a status: as a shell reports a SIGKILLed command
        os._exit(128 + 9)
    status += chunk
os._exit(struct.unpack("!i", status)[0])
'''


def _receive(conn: socket.socket) -> tuple[dict, list[int]]:
    data, fds, _flags, _addr = socket.recv_fds(conn, 1 << 20, 3)
    if len(data) < 4:
        data += _exactly(conn, 4 - len(data))
    (size,) = struct.unpack("!I", data[:4])
    body = data[4:]
    body += _exactly(conn, size - len(body))
    return marshal.loads(body), fds  # from a peer of our own uid (checked before): it could run anything anyway


def _exactly(conn: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = conn.recv(size - len(data))
        if not chunk:
            raise EOFError("the client went away")
        data += chunk
    return data


def _stream(fd: int, mode: str, encoding: str, errors: str, line_buffering: bool, write_through: bool):
    """A standard stream as Python made the client's (PYTHONUNBUFFERED: no buffer below the text layer)."""
    import io

    raw = io.FileIO(fd, mode, closefd=False)
    binary = raw if write_through else io.BufferedReader(raw) if mode == "r" else io.BufferedWriter(raw)
    return io.TextIOWrapper(binary, encoding=encoding, errors=errors, line_buffering=line_buffering,
                            write_through=write_through)


def _run_one(conn: socket.socket, clidriver, data_path: str) -> None:
    """In the forked child: become the client's `aws` process, run the CLI, report its exit status. Never returns."""
    import threading

    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    _pid, peer_uid, _gid = struct.unpack("3i", conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, 12))
    if peer_uid != os.getuid():
        os._exit(1)
    request, fds = _receive(conn)
    for target, fd in zip((0, 1, 2), fds):
        os.dup2(fd, target)
        os.close(fd)

    def die_with_client() -> None:
        with contextlib.suppress(OSError):
            conn.recv(1)  # returns only when the client closes: killed, as a real `aws` in its process group would be
        os.kill(os.getpid(), signal.SIGKILL)

    threading.Thread(target=die_with_client, daemon=True).start()
    os.chdir(request["cwd"])
    os.umask(request["umask"])
    os.environ.clear()
    os.environ.update(request["env"])
    os.environ["AWS_DATA_PATH"] = data_path  # what importing awscli set in the server, from the same startup values
    if os.environ.get("LC_CTYPE", "") == "UTF-8":  # as the aws script does
        os.environ["LC_CTYPE"] = "en_US.UTF-8"
    sys.argv = ["aws", *request["argv"]]
    sys.stdin, sys.stdout, sys.stderr = (_stream(fd, mode, *settings)
                                         for fd, mode, settings in zip((0, 1, 2), "rww", request["stdio"]))
    try:
        status = clidriver.main()
    except SystemExit as exit_:  # as Python ends a program: an int is the status, anything else is printed
        status = exit_.code if isinstance(exit_.code, int) else 0 if exit_.code is None else 1
        if not isinstance(exit_.code, (int, type(None))):
            print(exit_.code, file=sys.stderr)
    except BaseException:  # as Python reports an uncaught exception
        import traceback
        traceback.print_exc()
        status = 1
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):
            stream.flush()
    with contextlib.suppress(OSError):
        conn.sendall(struct.pack("!i", status or 0))
    os._exit(0)


class _ParsedData:
    """botocore's data (service models, endpoints, the CLI's own JSON, the list of services), read in the server
    before the fork instead of in every child: after the CLI itself, most of a child's CPU went to parsing the same
    JSON files and listing the same 400 folders. A child logs what it had to read (a file in the server's folder);
    the server reads those before the next fork. Each parsed file is handed out once per process and a later load of
    it parses it afresh, so a caller that changes what it got changes its own copy, as with a fresh `aws`."""

    def __init__(self, log: str) -> None:
        from botocore import loaders

        self.log, self.log_read = log, 0
        self.files: dict[str, object] = {}
        self.services: dict[tuple, list[str]] = {}
        self.parse, self.list_services = loaders.JSONFileLoader.load_file, loaders.Loader.list_available_services
        self.new_loader, self.file_loader = loaders.Loader, loaders.JSONFileLoader()
        data = self

        def load_file(loader, file_path):
            if file_path in data.files:
                return data.files.pop(file_path)
            data._learn(["file", file_path])
            return data.parse(loader, file_path)

        def list_available_services(loader, type_name):
            key = (tuple(loader.search_paths), type_name)
            if key not in data.services:
                data._learn(["services", *key])
                return data.list_services(loader, type_name)
            return list(data.services[key])

        loaders.JSONFileLoader.load_file = load_file
        loaders.Loader.list_available_services = list_available_services

    def _learn(self, entry: list) -> None:
        fd = os.open(self.log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, (json.dumps(entry) + "\n").encode())  # one short append: whole even beside other children
        finally:
            os.close(fd)

    def refill(self) -> None:
        """In the server, before a fork: read what the children have needed so far."""
        lines = b""
        with contextlib.suppress(FileNotFoundError), open(self.log, "rb") as log:
            log.seek(self.log_read)
            lines = log.read().rpartition(b"\n")[0]
            self.log_read += len(lines) + bool(lines)
        for kind, *args in (json.loads(line) for line in lines.splitlines()):
            if kind == "file" and args[0] not in self.files:
                self.files[args[0]] = self.parse(self.file_loader, args[0])
            elif kind == "services" and (tuple(args[0]), args[1]) not in self.services:
                loader = self.new_loader(extra_search_paths=args[0], include_default_search_paths=False)
                self.services[(tuple(args[0]), args[1])] = self.list_services(loader, args[1])


def _memoize_handler_checks() -> None:
    """Two pure computations botocore repeats for each of a session's 400 event handlers, 0.03 s of a child's CPU:
    an event name's alias (each session's EventAliaser keeps its own memo; here those with the standard aliases share
    one per process) and whether a handler takes **kwargs (by its function: a bound method's answer is its
    function's). Filled as the server creates the CLI once; every child inherits them."""
    from botocore import hooks

    aliases: dict[str, str] = {}
    create_aliaser = hooks.EventAliaser.__init__

    def aliaser(self, event_emitter, event_aliases=None) -> None:
        create_aliaser(self, event_emitter, event_aliases)
        if self._event_aliases is hooks.EVENT_ALIASES:
            self._alias_name_cache = aliases

    takes_kwargs: dict[object, bool] = {}
    check = hooks.accepts_kwargs

    def accepts_kwargs(func) -> bool:
        key = getattr(func, "__func__", func)
        try:
            return takes_kwargs[key]
        except KeyError:
            takes_kwargs[key] = answer = check(func)  # the dict holds the function: its id is never reused
            return answer
        except TypeError:  # unhashable
            return check(func)

    hooks.EventAliaser.__init__ = aliaser
    hooks.accepts_kwargs = accepts_kwargs


def serve(path: str) -> None:
    before = startup()
    import awscli.clidriver

    data_path = os.environ["AWS_DATA_PATH"]
    parsed = _ParsedData(f"{path}.read")
    _memoize_handler_checks()
    awscli.clidriver.create_clidriver()  # imports what the CLI imports lazily; its session is thrown away
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(128)
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # the kernel reaps the children
    print(before, flush=True)
    while True:
        conn, _ = listener.accept()
        parsed.refill()
        if os.fork() == 0:
            listener.close()
            try:
                _run_one(conn, awscli.clidriver, data_path)
            finally:
                os._exit(1)
        conn.close()


# The environments the bridge's `aws` runs in: the test's (the submitter and sweep, as SSM Run Command starts them) and
# a daemon's, without a locale or PYTHON variables (the epilog, which slurmctld starts; Python then runs in UTF-8 mode).
def _environments() -> list[dict[str, str]]:
    daemon = {k: v for k, v in os.environ.items() if not k.startswith(("LANG", "LC_", "PYTHON"))}
    return [dict(os.environ), daemon]


@contextlib.contextmanager
def warm_aws_cli() -> Iterator[Path]:
    """A folder whose `aws` is the warm CLI (put it first on PATH), or the real CLI's folder when
    JOB_BRIDGE_TESTS_REAL_AWS=1."""
    if os.environ.get("JOB_BRIDGE_TESTS_REAL_AWS") == "1":
        yield REAL_AWS.parent
        return
    folder = Path(tempfile.mkdtemp(prefix="warm-aws-"))  # 0700: only this user reaches the sockets
    servers: list[subprocess.Popen] = []
    try:
        sockets = {}  # one server per startup value
        for number, environ in enumerate(_environments()):
            sock = folder / f"cli-{number}.sock"
            servers.append(subprocess.Popen([sys.executable, __file__, str(sock)], env=environ,
                                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, start_new_session=True))
            ready = servers[-1].stdout.readline()  # type: ignore[union-attr]
            assert ready, "the warm AWS CLI did not start"
            sockets.setdefault(ready.decode().rstrip("\n"), str(sock))
        client = folder / "bin" / "aws"
        client.parent.mkdir()
        client.write_text(f"#!{sys.executable} -S\nSOCKETS = {sockets!r}\nREAL_AWS = {str(REAL_AWS)!r}\n{CLIENT}")
        client.chmod(0o755)
        yield client.parent
    finally:
        for server in servers:
            os.killpg(server.pid, signal.SIGKILL)  # the server and any child still running
            server.wait()


if __name__ == "__main__":
    sys.path[0] = str(REAL_AWS.parent)  # the real `aws` script's folder, not tests/
    serve(sys.argv[1])
