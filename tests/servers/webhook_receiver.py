#!/usr/bin/env python3
"""A webhook receiver for ontrack's tests: verifies Standard Webhooks signatures with its own
implementation (Python's hmac), records every request as a JSON line, and answers as the URL's
query asks:

    ?status=500&times=2     answer 500 to the first 2 requests to this URL, then 200
    ?status=429&times=1&retry_after=1
    ?status=410             (times defaults to every delivery)
    ?delay_s=20             sleep before answering (timeouts)

Usage: webhook_receiver.py --port PORT --secret whsec_... --log FILE
"""
import argparse
import base64
import hashlib
import hmac
import json
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

args = None
lock = threading.Lock()
seen = Counter()


def verify(secret, msg_id, timestamp, body, header):
    key = base64.b64decode(secret.removeprefix("whsec_"))
    signed = f"{msg_id}.{timestamp}.".encode() + body
    expected = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
    for sig in header.split(" "):
        version, _, value = sig.partition(",")
        if version == "v1" and hmac.compare_digest(value, expected):
            return True
    return False


class Handler(BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("content-length", "0")))
        url = urlsplit(self.path)
        query = {k: v[0] for k, v in parse_qs(url.query).items()}
        msg_id = self.headers.get("webhook-id", "")
        timestamp = self.headers.get("webhook-timestamp", "")
        signature = self.headers.get("webhook-signature", "")
        ok = bool(msg_id and timestamp and signature) and verify(
            args.secret, msg_id, timestamp, body, signature
        )
        fresh = timestamp.isdigit() and abs(time.time() - int(timestamp)) < 300
        with lock:
            seen[self.path] += 1
            delivery = seen[self.path]
        status = 200
        if "status" in query and delivery <= int(query.get("times", "1000000")):
            status = int(query["status"])
        if not ok:
            status = 401
        if "delay_s" in query:
            time.sleep(float(query["delay_s"]))
        try:
            parsed = json.loads(body)
        except ValueError:
            parsed = None
        record = {
            "path": url.path,
            "id": msg_id,
            "delivery": delivery,
            "signature_ok": ok,
            "timestamp_fresh": fresh,
            "status": status,
            "received_at": time.time(),
            "content_type": self.headers.get("content-type", ""),
            "body": parsed,
        }
        with lock, open(args.log, "a") as log:
            log.write(json.dumps(record) + "\n")
        self.send_response(status)
        if status != 200 and "retry_after" in query:
            self.send_header("Retry-After", query["retry_after"])
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, *a):
        pass


def main():
    global args
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--secret", required=True)
    p.add_argument("--log", required=True)
    args = p.parse_args()
    server = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    print("ready", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
