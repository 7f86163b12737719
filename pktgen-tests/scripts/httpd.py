#!/usr/bin/env python3
"""Real server for the Pylon end-to-end tests (Python 3 stdlib only).

Answers every GET/HEAD with its server name as the body ("rs1\\n"), so a
client can tell which real server the load balancer picked. The status code
is read from --status-file on every request when that file exists (a health
check test can flip a server to 503 without restarting it); otherwise it is
--status. Once the socket is bound, --ready-file is written so the harness
knows the server accepts connections.
"""

import argparse
import http.server
import pathlib
import sys


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--name", required=True, help="server name sent as the body")
    parser.add_argument("--bind", default="0.0.0.0")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--status", type=int, default=200, help="default status")
    parser.add_argument("--status-file", type=pathlib.Path)
    parser.add_argument("--ready-file", type=pathlib.Path)
    parser.add_argument("--verbose", action="store_true", help="log every request")
    return parser.parse_args()


def make_handler(args):
    class Handler(http.server.BaseHTTPRequestHandler):
        server_version = "pylon-test-httpd"
        protocol_version = "HTTP/1.1"

        def current_status(self):
            if args.status_file is not None:
                try:
                    return int(args.status_file.read_text().strip())
                except (OSError, ValueError):
                    pass
            return args.status

        def answer(self, with_body):
            body = f"{args.name}\n".encode()
            self.send_response(self.current_status())
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(body)))
            self.send_header("X-Real-Server", args.name)
            self.end_headers()
            if with_body:
                self.wfile.write(body)

        def do_GET(self):  # noqa: N802 (http.server naming)
            self.answer(True)

        def do_HEAD(self):  # noqa: N802
            self.answer(False)

        def log_message(self, format, *log_args):  # noqa: A002
            if args.verbose:
                sys.stderr.write(f"{args.name}: {format % log_args}\n")

    return Handler


class Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128


def main():
    args = parse_args()
    server = Server((args.bind, args.port), make_handler(args))
    if args.ready_file is not None:
        args.ready_file.write_text(f"{args.name} {args.bind}:{args.port}\n")
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


if __name__ == "__main__":
    main()
