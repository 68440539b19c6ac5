"""Loopback servers for the object-storage tests and benchmarks: a moto S3 server and a ranged HTTP server.

Both listen on 127.0.0.1 only, on a free port, and stop when their context
ends. :class:`S3Server` runs ``python -m moto.server`` with authentication on:
the first three actions (an IAM user, its access key, a policy allowing
everything) run unauthenticated, every later request must be signed with that
user's key, so a wrong key is refused as on AWS. :func:`gdal_env` is what GDAL
needs to talk to it (``AWS_S3_ENDPOINT``, ``AWS_HTTPS=NO``,
``AWS_VIRTUAL_HOSTING=FALSE`` and the key), as environment variables.

Example:
    >>> with RangeHTTPServer(".") as server:
    ...     server.url("README.md").startswith("http://127.0.0.1:")
    True
"""
from __future__ import annotations

import contextlib
import http.server
import json
import os
import re
import socket
import subprocess
import sys
import threading
import time
from functools import partial
from pathlib import Path

#: Seconds a server may take to start listening.
START_TIMEOUT = 60
#: Environment that keeps GDAL (curl) and boto3 on the loopback: no proxy for 127.0.0.1, no EC2
#: metadata probe for credentials, no user AWS config or credentials file.
HERMETIC_ENV = {"NO_PROXY": "127.0.0.1,localhost", "no_proxy": "127.0.0.1,localhost",
                "CPL_AWS_AUTODETECT_EC2": "NO", "AWS_EC2_METADATA_DISABLED": "true",
                "AWS_CONFIG_FILE": os.devnull, "AWS_SHARED_CREDENTIALS_FILE": os.devnull}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_listening(port: int, process: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"the server on port {port} exited with status {process.returncode}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
            return
        time.sleep(0.1)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port} after {START_TIMEOUT} s")


class S3Server:
    """``python -m moto.server`` on 127.0.0.1 with authentication; ``keys`` are the one valid key pair."""

    def __init__(self):
        self.port = free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen | None = None
        self.keys: dict[str, str] = {}

    def __enter__(self) -> "S3Server":
        env = {**os.environ, **HERMETIC_ENV, "INITIAL_NO_AUTH_ACTION_COUNT": "3", "MOTO_CALL_RESET_API": "false"}
        self.process = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
                                        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            wait_listening(self.port, self.process)
            iam = self._client("iam", "bootstrap", "bootstrap")
            iam.create_user(UserName="ndpatch-test")
            key = iam.create_access_key(UserName="ndpatch-test")["AccessKey"]
            iam.put_user_policy(UserName="ndpatch-test", PolicyName="all", PolicyDocument=json.dumps(
                {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}))
            self.keys = {"AWS_ACCESS_KEY_ID": key["AccessKeyId"], "AWS_SECRET_ACCESS_KEY": key["SecretAccessKey"]}
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def _client(self, service: str, key_id: str, secret: str):
        import boto3
        return boto3.client(service, endpoint_url=self.endpoint, region_name="us-east-1",
                            aws_access_key_id=key_id, aws_secret_access_key=secret)

    def client(self):
        """A boto3 S3 client signed with the valid key."""
        return self._client("s3", self.keys["AWS_ACCESS_KEY_ID"], self.keys["AWS_SECRET_ACCESS_KEY"])

    def gdal_env(self, **keys: str) -> dict[str, str]:
        """Environment variables that point GDAL at this server (``keys`` override the valid key pair)."""
        return {**HERMETIC_ENV, "AWS_S3_ENDPOINT": f"127.0.0.1:{self.port}", "AWS_HTTPS": "NO", "AWS_VIRTUAL_HOSTING": "FALSE",
                "AWS_REGION": "us-east-1", "AWS_NO_SIGN_REQUEST": "NO", **self.keys, **keys}


class RangeRequestHandler(http.server.SimpleHTTPRequestHandler):
    """Serves files with ``Range: bytes=a-b`` support (single ranges), an ETag and Last-Modified; counts bytes sent."""

    RANGE = re.compile(r"bytes=(\d*)-(\d*)$")

    def log_message(self, *args) -> None:  # quiet
        pass

    def send_head(self):
        path = Path(self.translate_path(self.path))
        if not path.is_file():
            self.send_error(404, "not found")
            return None
        stat = path.stat()
        size = stat.st_size
        start, stop = 0, size
        match = self.RANGE.match(self.headers.get("Range", ""))
        if match and (match.group(1) or match.group(2)):
            if match.group(1):
                start = int(match.group(1))
                stop = min(size, int(match.group(2)) + 1) if match.group(2) else size
            else:
                start = max(0, size - int(match.group(2)))
            if start >= size:
                self.send_error(416, "range not satisfiable")
                return None
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{stop - 1}/{size}")
        else:
            self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(stop - start))
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("ETag", f'"{stat.st_ino:x}-{stat.st_mtime_ns:x}-{size:x}"')
        self.send_header("Last-Modified", self.date_time_string(int(stat.st_mtime)))
        self.end_headers()
        self._span = (start, stop)
        return path.open("rb")

    def copyfile(self, source, outputfile) -> None:
        start, stop = self._span
        source.seek(start)
        remaining = stop - start
        while remaining > 0:
            chunk = source.read(min(remaining, 1 << 16))
            if not chunk:
                break
            outputfile.write(chunk)
            remaining -= len(chunk)
            self.server.bytes_sent += len(chunk)


class RangeHTTPServer:
    """A threaded HTTP server over ``root`` on 127.0.0.1 with range requests; ``bytes_sent`` counts body bytes."""

    def __init__(self, root: str | os.PathLike):
        handler = partial(RangeRequestHandler, directory=str(root))
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.server.bytes_sent = 0
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, name="range-http", daemon=True)

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.port}/{name}"

    @property
    def bytes_sent(self) -> int:
        return self.server.bytes_sent

    def __enter__(self) -> "RangeHTTPServer":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join()
