#!/usr/bin/env python3
"""SMTP capture server for opsagent's integration tests (driven by tests/common/smtp.rs).

Listens on 127.0.0.1:PORT with aiosmtpd and stores every accepted message in DIR:

  DIR/N.eml  the raw RFC 5322 message as received (after dot-unstuffing), N = 1, 2, 3 ...
  DIR/N.env  its envelope: first line MAIL FROM, then one RCPT TO per line

Both are written to a temporary name first and renamed, the .env before the .eml, so a reader
that sees N.eml sees complete files. Numbering continues after the highest N already in DIR, so
a restarted server keeps appending. DIR/connections holds the number of TCP connections
accepted so far (the controller's own readiness probe included). Once the server accepts connections the script writes
DIR/ready containing its pid; it then runs until killed.

Options:
  --tls-cert CERT --tls-key KEY   offer STARTTLS and refuse mail before it (require_starttls)
  --auth-user U --auth-password P require AUTH (PLAIN/LOGIN) with exactly these credentials;
                                  with TLS, AUTH is only accepted after STARTTLS
  --implicit-tls                  with --tls-cert/--tls-key: TLS from the first byte (port 465
                                  style) instead of STARTTLS
  --fault SPEC                    misbehave (repeatable); SPEC is one of
      rcpt:ADDR:CODE              answer RCPT TO:<ADDR> with CODE (e.g. 550, 450), always
      data:CODE:N                 answer the end of DATA with CODE the first N times (0: always)
      drop-data:N                 close the connection instead of answering DATA, N times
      slow-data:SECONDS:N         wait SECONDS before answering DATA, the first N times
"""

import argparse
import asyncio
import os
import re
import signal
import socket
import ssl
import sys
import threading

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword


class CountingController(Controller):
    """Writes the number of TCP connections accepted so far to DIR/connections."""

    def __init__(self, handler, directory, **kwargs):
        self.directory = directory
        self.connections = 0
        super().__init__(handler, **kwargs)

    def factory(self):
        controller = self

        class CountingSMTP(SMTP):
            def connection_made(self, transport):
                controller.connections += 1
                tmp = os.path.join(controller.directory, "connections.tmp")
                with open(tmp, "w") as f:
                    f.write(str(controller.connections))
                os.replace(tmp, os.path.join(controller.directory, "connections"))
                super().connection_made(transport)

        return CountingSMTP(self.handler, **self.SMTP_kwargs)


class Fault:
    def __init__(self, spec):
        parts = spec.split(":")
        self.kind = parts[0]
        self.args = parts[1:]
        self.left = None
        if self.kind in ("data", "slow-data"):
            self.left = int(self.args[-1]) or None
        elif self.kind == "drop-data":
            self.left = int(self.args[0]) or None

    def fire(self):
        """Whether it applies this time (counts down the limited ones)."""
        if self.left is None:
            return True
        if self.left <= 0:
            return False
        self.left -= 1
        return True


REPLIES = {
    "450": "450 4.2.1 Mailbox busy, try again later",
    "451": "451 4.3.0 Temporary local problem, try again later",
    "452": "452 4.3.1 Insufficient system storage",
    "550": "550 5.1.1 Recipient address rejected: User unknown",
    "552": "552 5.3.4 Message size exceeds fixed limit",
    "554": "554 5.7.1 Message rejected as spam",
}


class CaptureHandler:
    def __init__(self, directory, faults=()):
        self.directory = directory
        self.faults = list(faults)
        self.lock = threading.Lock()
        highest = 0
        for name in os.listdir(directory):
            m = re.fullmatch(r"(\d+)\.eml", name)
            if m:
                highest = max(highest, int(m.group(1)))
        self.counter = highest

    def _write(self, name, data):
        tmp = os.path.join(self.directory, name + ".tmp")
        with open(tmp, "wb") as f:
            f.write(data)
        os.replace(tmp, os.path.join(self.directory, name))

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        for f in self.faults:
            if f.kind == "rcpt" and f.args[0].lower() == address.lower():
                return REPLIES.get(f.args[1], f.args[1] + " refused")
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        for f in self.faults:
            if f.kind == "slow-data" and f.fire():
                await asyncio.sleep(float(f.args[0]))
            elif f.kind == "drop-data" and f.fire():
                server.transport.abort()
                return "250 never seen"
            elif f.kind == "data" and f.fire():
                return REPLIES.get(f.args[0], f.args[0] + " refused")
        with self.lock:
            self.counter += 1
            n = self.counter
            env = "\n".join([envelope.mail_from or ""] + list(envelope.rcpt_tos)) + "\n"
            self._write(f"{n}.env", env.encode("utf-8", "surrogateescape"))
            self._write(f"{n}.eml", envelope.original_content or envelope.content or b"")
        return "250 Message accepted for delivery"


def make_authenticator(user, password):
    def authenticator(server, session, envelope, mechanism, auth_data):
        ok = (
            isinstance(auth_data, LoginPassword)
            and auth_data.login == user.encode()
            and auth_data.password == password.encode()
        )
        return AuthResult(success=ok, handled=False)

    return authenticator


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--dir", required=True)
    ap.add_argument("--tls-cert")
    ap.add_argument("--tls-key")
    ap.add_argument("--auth-user")
    ap.add_argument("--auth-password")
    ap.add_argument("--implicit-tls", action="store_true")
    ap.add_argument("--fault", action="append", default=[])
    args = ap.parse_args()

    kwargs = {}
    tls = args.tls_cert is not None
    if tls:
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(args.tls_cert, args.tls_key)
        if args.implicit_tls:
            kwargs.update(ssl_context=ctx)
        else:
            kwargs.update(tls_context=ctx, require_starttls=True)
    if args.auth_user is not None:
        kwargs.update(
            authenticator=make_authenticator(args.auth_user, args.auth_password or ""),
            auth_required=True,
            auth_require_tls=tls and not args.implicit_tls,
        )

    # Controller.start() only reports a bind failure after its ready timeout (5 s): fail fast.
    probe = socket.socket()
    probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        probe.bind(("127.0.0.1", args.port))
    except OSError as e:
        print(f"smtp_capture: cannot bind 127.0.0.1:{args.port}: {e}", file=sys.stderr)
        return 1
    finally:
        probe.close()

    controller = CountingController(
        CaptureHandler(args.dir, [Fault(f) for f in args.fault]),
        args.dir,
        hostname="127.0.0.1",
        port=args.port,
        **kwargs,
    )
    controller.start()  # raises (e.g. EADDRINUSE) if it cannot bind
    with open(os.path.join(args.dir, "ready.tmp"), "w") as f:
        f.write(str(os.getpid()))
    os.replace(os.path.join(args.dir, "ready.tmp"), os.path.join(args.dir, "ready"))
    print(f"smtp_capture: listening on 127.0.0.1:{args.port}, tls={tls}", flush=True)

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    stop.wait()
    controller.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
