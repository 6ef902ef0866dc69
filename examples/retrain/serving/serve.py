#!/usr/bin/env python3
"""A small model server for examples/retrain: loads a joblib model artifact and
serves it over HTTP (stdlib http.server; scikit-learn and joblib to load it).

  GET  /healthz   200 {"ready": true, "model": PATH, "digest": ...} once loaded
  POST /predict   {"input": [f1, f2, ...]}           -> {"prediction": 0|1}
                  {"input": [[...], [...]]}           -> {"prediction": [..]}

Usage (the deploy operator fills in the placeholders):
  serve.py --model {{model}} --port {{port}} [--host 127.0.0.1]
"""
import argparse
import json
import os
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="path of the model artifact (joblib)")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--host", default="127.0.0.1")
    args = parser.parse_args()
    if not os.path.isfile(args.model):
        print(f"serve: error: --model {args.model}: no such file", file=sys.stderr)
        sys.exit(2)

    import joblib
    import numpy as np
    model = joblib.load(args.model)
    n_features = getattr(model, "n_features_in_", None)
    digest = os.environ.get("SLUICE_MODEL_DIGEST", "")
    print(f"serve: loaded {type(model).__name__} from {args.model} "
          f"({n_features} features) on {args.host}:{args.port}", flush=True)

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
                self.reply(200, {"ready": True, "model": args.model, "digest": digest})
            else:
                self.reply(404, {"error": f"no route {self.path}; use /healthz or POST /predict"})

        def do_POST(self):
            if self.path != "/predict":
                self.reply(404, {"error": f"no route {self.path}; use POST /predict"})
                return
            try:
                length = int(self.headers.get("Content-Length", 0))
                body = json.loads(self.rfile.read(length))
                rows = np.asarray(body["input"], dtype=float)
                single = rows.ndim == 1
                if single:
                    rows = rows.reshape(1, -1)
                if n_features is not None and rows.shape[1] != n_features:
                    raise ValueError(f"want {n_features} features, got {rows.shape[1]}")
                predictions = [int(p) for p in model.predict(rows)]
            except (KeyError, ValueError, TypeError, json.JSONDecodeError) as e:
                self.reply(400, {"error": f"bad request: {e}; send {{\"input\": [features]}}"})
                return
            self.reply(200, {"prediction": predictions[0] if single else predictions})

    server = ThreadingHTTPServer((args.host, args.port), Handler)
    server.daemon_threads = True
    server.serve_forever()


if __name__ == "__main__":
    main()
