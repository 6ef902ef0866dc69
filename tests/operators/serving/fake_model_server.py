#!/usr/bin/env python3
"""A model server for the serving operator tests: stdlib only, starts fast.

The "model" is a JSON file that says how to behave:
  {"answer": 1}        predict 1 for everything
  {"echo": 0}          predict input[0]
  {"never_ready": true}  /healthz answers 503 forever
  {"exit": 3}          exit with this code at start
  {"delay_ms": 50}     sleep before answering /predict
  {"fail": true}       /predict answers 500
Usage: fake_model_server.py --model FILE --port N
"""
import argparse
import json
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", required=True)
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    with open(args.model) as f:
        model = json.load(f)
    if "exit" in model:
        print("fake server: exiting with", model["exit"], flush=True)
        sys.exit(model["exit"])

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True

        def log_message(self, *a):
            pass

        def reply(self, code, body):
            data = json.dumps(body).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self):
            if self.path == "/healthz":
                if model.get("never_ready"):
                    self.reply(503, {"ready": False})
                else:
                    self.reply(200, {"ready": True})
            else:
                self.reply(404, {"error": "not found"})

        def do_POST(self):
            length = int(self.headers.get("Content-Length", 0))
            body = json.loads(self.rfile.read(length) or b"{}")
            if self.path != "/predict":
                self.reply(404, {"error": "not found"})
                return
            if model.get("delay_ms"):
                time.sleep(model["delay_ms"] / 1000.0)
            if model.get("fail"):
                self.reply(500, {"error": "model failed"})
                return
            if "echo" in model:
                prediction = body["input"][model["echo"]]
            else:
                prediction = model.get("answer")
            self.reply(200, {"prediction": prediction, "model": args.model})

    server = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    server.daemon_threads = True
    print("fake server on", args.port, flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
