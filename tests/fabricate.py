"""Test helpers for the real-dataset loaders: a loopback HTTP file server with Range support and
switches that imitate bad networks (cut connections, servers that ignore Range, stalls)."""

import http.server
import threading
import time
from contextlib import contextmanager


class FileServerState:
    "What the server serves and how it misbehaves; the tests change it between requests."

    def __init__(self, files: dict[str, bytes]):
        self.files = dict(files)  # URL path -> body
        self.cut_after = None  # announce the full Content-Length but close after this many body bytes
        self.ignore_range = False  # answer 200 with the whole body even when asked for a range
        self.stall_seconds = 0.0  # wait this long after the headers before sending the body
        self.requests = []  # (path, Range header or None) of every GET


def _handler(state: FileServerState):
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            state.requests.append((self.path, self.headers.get("Range")))
            body = state.files.get(self.path)
            if body is None:
                self.send_error(404, "no such file")
                return
            start, wanted = 0, self.headers.get("Range")
            if wanted and not state.ignore_range:
                assert wanted.startswith("bytes=") and wanted.endswith("-"), wanted
                start = int(wanted[len("bytes="):-1])
                if start >= len(body):
                    self.send_response(416)
                    self.send_header("Content-Range", f"bytes */{len(body)}")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                self.send_response(206)
                self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
            else:
                self.send_response(200)
            self.send_header("Content-Length", str(len(body) - start))
            self.send_header("Accept-Ranges", "bytes")
            self.end_headers()
            if state.stall_seconds:
                time.sleep(state.stall_seconds)
            payload = body[start:] if state.cut_after is None else body[start:][: state.cut_after]
            try:
                self.wfile.write(payload)
                self.wfile.flush()
            except (BrokenPipeError, ConnectionResetError):
                pass
            self.close_connection = True

        def log_message(self, *args):
            pass

    return Handler


@contextmanager
def serve_files(files: dict[str, bytes]):
    "Serve `files` on 127.0.0.1 on a free port; yields (base URL, FileServerState)."
    state = FileServerState(files)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}", state
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
