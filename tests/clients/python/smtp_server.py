"""A real SMTP server (aiosmtpd) for the email exporter's end-to-end test.

Listens on 127.0.0.1 at an OS-chosen port and prints `PORT <n>` once it
accepts connections, then one JSON line per message received:
{"reply": "...", "mail_from": "...", "rcpt_tos": [...], "login": ..., "data": "..."}.
AUTH (PLAIN, LOGIN) is offered without TLS and takes any password.
With `--refuse-first`, the first message is answered `451` (a transient
refusal) and the next ones are taken. Stops when stdin closes.
"""

import asyncio
import json
import sys

from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword


class Handler:
    def __init__(self, refuse_first):
        self.refuse = refuse_first

    async def handle_DATA(self, server, session, envelope):
        if self.refuse:
            self.refuse = False
            reply = "451 4.3.0 Try again later"
        else:
            reply = "250 Message accepted for delivery"
        print(json.dumps({
            "reply": reply,
            "mail_from": envelope.mail_from,
            "rcpt_tos": envelope.rcpt_tos,
            "login": session.auth_data.decode() if isinstance(session.auth_data, bytes) else session.auth_data,
            "data": envelope.content.decode("utf-8", "replace"),
        }), flush=True)
        return reply


def authenticator(server, session, envelope, mechanism, auth_data):
    """Takes any login (AUTH is offered without TLS, for the test only)."""
    if isinstance(auth_data, LoginPassword):
        return AuthResult(success=True, auth_data=auth_data.login)
    return AuthResult(success=False, handled=False)


async def main():
    handler = Handler("--refuse-first" in sys.argv)
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: SMTP(handler, authenticator=authenticator, auth_require_tls=False), "127.0.0.1", 0)
    print(f"PORT {server.sockets[0].getsockname()[1]}", flush=True)
    # Until the test closes stdin (or dies).
    await loop.run_in_executor(None, sys.stdin.read)
    server.close()


asyncio.run(main())
