"""A KMS emulator that refuses like AWS, for the tests and the bench.

moto's server (``moto[server]``) runs in a subprocess on a free port and keeps the keys,
their state and their key material in its memory, so one emulator serves a whole test
session. moto records key state (DescribeKey says Disabled or PendingDeletion) but does not
enforce it: every cryptographic operation works with a key in any state. So clients talk to
a thin proxy in front of it (a ThreadingHTTPServer in a thread of the process that owns the
emulator), which forwards every request unchanged except:

- Encrypt, Decrypt, ReEncrypt, GenerateDataKey, GenerateDataKeyWithoutPlaintext: each key
  the request names (KeyId, SourceKeyId, DestinationKeyId: ARN, key id or alias) is
  resolved with moto's DescribeKey, and the request is answered with AWS's JSON error
  instead (HTTP 400, ``__type`` and ``x-amzn-ErrorType``) when the key is revoked
  (AccessDeniedException), Disabled (DisabledException) or PendingDeletion
  (KMSInvalidStateException, "... is pending deletion."). Decrypt and ReEncrypt are sent
  without the KeyId / SourceKeyId, so that moto says which key the ciphertext is under:
  a key other than the one named is IncorrectKeyException, as AWS answers (moto would say
  AccessDeniedException, or, for ReEncrypt, ignore SourceKeyId), and that key's state is
  checked too (a Decrypt that names no key).
- DisableKey, EnableKey, ScheduleKeyDeletion, CancelKeyDeletion: a key ARN is sent to moto
  as the bare key id (moto answers a 500 to an ARN there; AWS takes both).

Key state is driven through the real KMS API (DisableKey, ScheduleKeyDeletion, ... with
boto3 against `endpoint_url`); only a revoked grant is emulator-side (`revoke` / `grant`),
and `go_down` / `come_back` close and reopen the proxy's listening socket on the same port
(connections refused meanwhile; the proxy speaks HTTP/1.0, so no kept-alive connection
outlives it).
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import boto3
from botocore.config import Config

from ontrackio.core.keys.aws import parse_key_arn
from ontrackio.devtools.stack import free_port

HOST = "127.0.0.1"
CONTEXT_FIELDS = ("EncryptionContext", "SourceEncryptionContext", "DestinationEncryptionContext")
DUMMY_CREDENTIALS = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}

# The key fields each refusing operation names, and for Decrypt / ReEncrypt the request
# field and the answer field of the key the ciphertext is under.
KEY_FIELDS = {
    "Encrypt": ("KeyId",),
    "GenerateDataKey": ("KeyId",),
    "GenerateDataKeyWithoutPlaintext": ("KeyId",),
    "Decrypt": ("KeyId",),
    "ReEncrypt": ("SourceKeyId", "DestinationKeyId"),
}
SOURCE_FIELD = {"Decrypt": "KeyId", "ReEncrypt": "SourceKeyId"}
STATE_OPERATIONS = {"DisableKey", "EnableKey", "ScheduleKeyDeletion", "CancelKeyDeletion"}
# How AWS's KMSInvalidStateException names a key state ("<arn> is pending deletion.").
STATE_WORDS = {
    "PendingDeletion": "pending deletion",
    "PendingImport": "pending import",
    "PendingReplicaDeletion": "pending replica deletion",
    "Unavailable": "unavailable",
    "Creating": "creating",
    "Updating": "updating",
}
HOP_BY_HOP = {
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "upgrade",
    "transfer-encoding",
    "content-length",
}

# moto's server, ended when its owner's end of stdin closes: also when the owner dies
# without stopping it (a killed test session leaves no moto behind).
MOTO_MAIN = """
import os, sys, threading
def orphaned():
    sys.stdin.buffer.read()
    os._exit(0)
threading.Thread(target=orphaned, daemon=True).start()
from moto.server import main
main(["-H", "127.0.0.1", "-p", sys.argv[1]])
"""

Answer = tuple[int, list[tuple[str, str]], bytes]


def error(code: str, message: str, status: int = 400) -> Answer:
    """An AWS JSON-protocol error, as KMS spells it."""
    headers = [
        ("Content-Type", "application/x-amz-json-1.1"),
        ("x-amzn-ErrorType", f"{code}:"),
        ("x-amzn-RequestId", str(uuid.uuid4())),
    ]
    return status, headers, json.dumps({"__type": code, "message": message}).encode()


class KmsEmulator:
    """moto behind a refusing proxy; a context manager (``with KmsEmulator() as kms``).

    `start` creates a platform key in `region` (`platform_key`); `env()` is what a stack
    process needs to use the emulator as its KMS."""

    def __init__(self, region: str = "eu-central-1"):
        self.region = region
        self.platform_key = ""
        self.port = 0
        self._moto: subprocess.Popen | None = None
        self._moto_port = 0
        self._server: ThreadingHTTPServer | None = None
        self._serving: threading.Thread | None = None
        self._revoked: set[str] = set()
        # key ARN -> encryption context pairs every use of it must carry (a key policy's
        # kms:EncryptionContext:<key> condition, which moto does not evaluate)
        self._conditions: dict[str, dict[str, str]] = {}
        self._clients: dict[str, Any] = {}
        self._lock = threading.Lock()

    # -- lifecycle -----------------------------------------------------------------------------

    def __enter__(self) -> KmsEmulator:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def start(self, timeout: float = 30.0) -> KmsEmulator:
        try:
            return self._start(timeout)
        except BaseException:  # an interrupt too: leave no moto behind
            self.stop()
            raise

    def _start(self, timeout: float) -> KmsEmulator:
        self._moto_port = free_port()
        self.port = free_port()
        while self.port == self._moto_port:
            self.port = free_port()
        log = tempfile.TemporaryFile()  # a file: a pipe nobody reads could fill
        self._moto = subprocess.Popen(
            [sys.executable, "-c", MOTO_MAIN, str(self._moto_port)],
            stdin=subprocess.PIPE,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        while not _accepts(self._moto_port):
            if self._moto.poll() is not None or time.monotonic() > deadline:
                log.seek(0)
                said = log.read().decode(errors="replace").strip().splitlines()[-5:]
                raise RuntimeError(f"moto's server did not start: {' / '.join(said)}")
            time.sleep(0.05)
        log.close()  # moto's request log is not kept
        self.come_back()
        self.platform_key = self.create_key(self.region)
        return self

    def stop(self) -> None:
        """Stop the proxy and moto (idempotent)."""
        self.go_down()
        proc, self._moto = self._moto, None
        if proc is None:
            return
        if proc.poll() is None:
            proc.stdin.close()  # moto's orphan watch ends it
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()

    @property
    def endpoint_url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def env(self) -> dict[str, str]:
        """The environment of a stack process that uses the emulator as its KMS."""
        return {
            "AWS_ACCESS_KEY_ID": DUMMY_CREDENTIALS["aws_access_key_id"],
            "AWS_SECRET_ACCESS_KEY": DUMMY_CREDENTIALS["aws_secret_access_key"],
            "AWS_DEFAULT_REGION": self.region,
            "AWS_EC2_METADATA_DISABLED": "true",  # never look for an instance role
            "ONTRACK_KMS_PROVIDER": "aws",
            "ONTRACK_KMS_ENDPOINT_URL": self.endpoint_url,
            "ONTRACK_KMS_KEY_ID": self.platform_key,
            "ONTRACK_KMS_REGION": self.region,
        }

    # -- the KMS API, through the proxy --------------------------------------------------------

    def client(self, region: str = "eu-central-1") -> Any:
        """A boto3 KMS client of `region` talking to the proxy, with dummy credentials."""
        with self._lock:
            if region not in self._clients:
                self._clients[region] = boto3.session.Session().client(
                    "kms",
                    region_name=region,
                    endpoint_url=self.endpoint_url,
                    config=Config(retries={"mode": "standard", "total_max_attempts": 1}),
                    **DUMMY_CREDENTIALS,
                )
            return self._clients[region]

    def create_key(self, region: str = "eu-central-1") -> str:
        """A new symmetric key in `region`; its ARN."""
        created = self.client(region).create_key(Description="ontrackio test key")
        return created["KeyMetadata"]["Arn"]

    def key_state(self, arn: str) -> str:
        return self._client_of(arn).describe_key(KeyId=arn)["KeyMetadata"]["KeyState"]

    def disable(self, arn: str) -> None:
        self._client_of(arn).disable_key(KeyId=arn)

    def enable(self, arn: str) -> None:
        self._client_of(arn).enable_key(KeyId=arn)

    def schedule_deletion(self, arn: str) -> None:
        self._client_of(arn).schedule_key_deletion(KeyId=arn, PendingWindowInDays=7)

    def cancel_deletion(self, arn: str) -> None:
        """As in AWS, the key is Disabled afterwards: `enable` it to use it again."""
        self._client_of(arn).cancel_key_deletion(KeyId=arn)

    # -- emulator-side faults ------------------------------------------------------------------

    def revoke(self, arn: str) -> None:
        """Cryptographic operations with `arn` are refused as AccessDeniedException (a
        revoked grant or key policy) until `grant`."""
        with self._lock:
            self._revoked.add(str(parse_key_arn(arn)))

    def require_context(self, arn: str, **pairs: str) -> None:
        """Emulate a key policy condition ``kms:EncryptionContext:<key> = <value>``: every
        cryptographic operation with `arn` whose encryption context lacks one of `pairs`
        (keys with ``:`` given as ``__``) is refused as AccessDeniedException."""
        wanted = {k.replace("__", ":"): v for k, v in pairs.items()}
        with self._lock:
            self._conditions[str(parse_key_arn(arn))] = wanted

    def grant(self, arn: str) -> None:
        with self._lock:
            self._revoked.discard(str(parse_key_arn(arn)))

    def go_down(self) -> None:
        """Close the proxy's listening socket: connections are refused until `come_back`."""
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()
            self._serving.join(5)

    def come_back(self) -> None:
        """Listen again, on the same port."""
        if self._server is not None:
            return
        self._server = ThreadingHTTPServer((HOST, self.port), _ProxyHandler)
        self._server.emulator = self  # type: ignore[attr-defined]
        self._serving = threading.Thread(
            target=self._server.serve_forever, name="kms-emulator-proxy", daemon=True
        )
        self._serving.start()

    @contextmanager
    def unreachable(self) -> Iterator[None]:
        self.go_down()
        try:
            yield
        finally:
            self.come_back()

    # -- the proxy -----------------------------------------------------------------------------

    def answer(self, method: str, path: str, headers: dict[str, str], body: bytes) -> Answer:
        """The proxy's answer to one request (`headers`: names in lower case)."""
        operation = headers.get("x-amz-target", "").rpartition(".")[2]
        if operation not in KEY_FIELDS and operation not in STATE_OPERATIONS:
            return self._forward(method, path, headers, body)
        try:
            request = json.loads(body)
        except ValueError:
            return self._forward(method, path, headers, body)
        if not isinstance(request, dict):
            return self._forward(method, path, headers, body)
        if operation in STATE_OPERATIONS:
            key = request.get("KeyId")
            if isinstance(key, str) and key.startswith("arn:") and ":key/" in key:
                request["KeyId"] = key.split(":key/", 1)[1]
            return self._forward(method, path, headers, json.dumps(request).encode())
        named: dict[str, str] = {}
        for field in KEY_FIELDS[operation]:
            if isinstance(request.get(field), str):
                described = self._describe(headers, request[field])
                if described is None:  # moto answers (NotFoundException) as it would
                    return self._forward(method, path, headers, body)
                refused = self._refusal(operation, described, request)
                if refused is not None:
                    return refused
                named[field] = described["Arn"]
        source = SOURCE_FIELD.get(operation)
        if source is None:
            return self._forward(method, path, headers, body)
        request.pop(source, None)
        status, sent, answered = self._forward(method, path, headers, json.dumps(request).encode())
        if status != 200:
            return status, sent, answered
        under = json.loads(answered)[source]
        if source in named and named[source] != under:
            return error(
                "IncorrectKeyException",
                "The request was rejected because the specified KMS key cannot decrypt the "
                "data. The KeyId in a Decrypt request and the SourceKeyId in a ReEncrypt "
                "request must identify the same KMS key that was used to encrypt the ciphertext.",
            )
        if named.get(source) != under:  # the key the ciphertext is under was not checked yet
            described = self._describe(headers, under)
            refused = self._refusal(operation, described, request) if described else None
            if refused is not None:
                return refused
        return status, sent, answered

    def _refusal(
        self, operation: str, key: dict[str, Any], request: dict[str, Any]
    ) -> Answer | None:
        arn, state = key["Arn"], key.get("KeyState")
        with self._lock:
            revoked = arn in self._revoked
            wanted = self._conditions.get(arn, {})
        named = [f for f in CONTEXT_FIELDS if f in request] or ["EncryptionContext"]
        contexts = [request.get(f) or {} for f in named]
        unmet = any(
            not isinstance(c, dict) or any(c.get(k) != v for k, v in wanted.items())
            for c in contexts
        )
        if revoked or (wanted and unmet):
            account = arn.split(":")[4]
            return error(
                "AccessDeniedException",
                f"User: arn:aws:iam::{account}:user/kms-emulator is not authorized to perform: "
                f"kms:{operation} on resource: {arn} because no resource-based policy allows "
                f"the kms:{operation} action",
            )
        if state == "Disabled":
            return error("DisabledException", f"{arn} is disabled.")
        if state != "Enabled":
            return error("KMSInvalidStateException", f"{arn} is {STATE_WORDS.get(state, state)}.")
        return None

    def _describe(self, headers: dict[str, str], key: str) -> dict[str, Any] | None:
        """moto's metadata of `key`, asked as the request's own signer (moto picks the
        region and account from its headers); None if moto knows no such key."""
        asking = dict(headers, **{"x-amz-target": "TrentService.DescribeKey"})
        status, _, answered = self._forward(
            "POST", "/", asking, json.dumps({"KeyId": key}).encode()
        )
        return json.loads(answered)["KeyMetadata"] if status == 200 else None

    def _forward(self, method: str, path: str, headers: dict[str, str], body: bytes) -> Answer:
        conn = http.client.HTTPConnection(HOST, self._moto_port, timeout=30)
        try:
            sending = {k: v for k, v in headers.items() if k.lower() not in HOP_BY_HOP}
            sending["Content-Length"] = str(len(body))
            conn.request(method, path, body=body, headers=sending)
            reply = conn.getresponse()
            data = reply.read()
            kept = [(k, v) for k, v in reply.getheaders() if k.lower() not in HOP_BY_HOP]
            return reply.status, kept, data
        except OSError as exc:
            return error("KMSInternalException", f"the emulator's moto is gone: {exc}", 500)
        finally:
            conn.close()

    def _client_of(self, arn: str) -> Any:
        return self.client(parse_key_arn(arn).region)


class _ProxyHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.0"  # a connection per request: `go_down` refuses the next one

    def _relay(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        emulator: KmsEmulator = self.server.emulator  # type: ignore[attr-defined]
        status, headers, answer = emulator.answer(
            self.command, self.path, {k.lower(): v for k, v in self.headers.items()}, body
        )
        self.send_response(status)
        for name, value in headers:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = _relay

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - the base's name
        pass


def _accepts(port: int) -> bool:
    try:
        with socket.create_connection((HOST, port), timeout=0.5):
            return True
    except OSError:
        return False


def main() -> None:
    """``python -m ontrackio.devtools.kmsemulator``: run an emulator until interrupted
    (Ctrl-C or SIGTERM), printing the environment that points a process at it (JSON)."""
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # leave through `stop`
    with KmsEmulator() as kms:
        print(json.dumps(kms.env(), indent=2), flush=True)
        try:
            threading.Event().wait()
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    main()
