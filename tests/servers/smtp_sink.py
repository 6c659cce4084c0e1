#!/usr/bin/env python3
"""A real SMTP server (aiosmtpd, no TLS) for ontrack's tests: every message received is written
as a JSON line {mail_from, rcpt_tos, subject, message_id, text, html}.

Usage: smtp_sink.py --port PORT --log FILE
"""
import argparse
import email
import email.policy
import json
import signal
import threading

from aiosmtpd.controller import Controller


class Sink:
    def __init__(self, log):
        self.log = log
        self.lock = threading.Lock()

    async def handle_DATA(self, server, session, envelope):
        msg = email.message_from_bytes(envelope.content, policy=email.policy.default)
        text = msg.get_body(preferencelist=("plain",))
        html = msg.get_body(preferencelist=("html",))
        record = {
            "mail_from": envelope.mail_from,
            "rcpt_tos": envelope.rcpt_tos,
            "subject": str(msg["subject"]),
            "message_id": str(msg["message-id"]),
            "text": text.get_content() if text else None,
            "html": html.get_content() if html else None,
        }
        with self.lock, open(self.log, "a") as log:
            log.write(json.dumps(record) + "\n")
        return "250 Message accepted for delivery"


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--log", required=True)
    args = p.parse_args()
    controller = Controller(Sink(args.log), hostname="127.0.0.1", port=args.port)
    controller.start()
    print("ready", flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    stop.wait()
    controller.stop()


if __name__ == "__main__":
    main()
