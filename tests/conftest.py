"""Fixtures the tests share: free ports, moto's AWS emulator, the shipped model, a page, the app as a process.

One way to do each: a port is found by `free_port()`; moto always runs as `python -m moto.server` on
127.0.0.1 (`moto_server`), with fake credentials from `aws_env`; an HTTPS server on loopback uses one
self-signed certificate (`https_server`); the app always runs as `text-recognizer demo --port N` in a
subprocess (`AppProcess`), and a browser is Debian's Chromium driven by Playwright (`browser`).
"""

import os
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from http.server import ThreadingHTTPServer
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
APP_STARTUP_TIMEOUT_S = 180  # importing gradio and torch on 2 busy cores takes a while
CLI = [sys.executable, "-c", "import sys; from text_recognizer.cli import main; sys.exit(main())"]


def find_free_port() -> int:
    "A port on 127.0.0.1 that nobody listens on (bound, then released)."
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def free_port():
    "`find_free_port`, for tests that need one or more free ports."
    return find_free_port


def wait_for_port(port: int, timeout_s: float = 30):
    "Return once something accepts connections on 127.0.0.1:`port`; TimeoutError after `timeout_s`."
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port} after {timeout_s} s")


def aws_env(endpoint: str, region: str = "us-east-1") -> dict:
    "The environment that points boto3 at `endpoint` with moto's fake credentials."
    return {"AWS_ENDPOINT_URL": endpoint, "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_REGION": region, "AWS_DEFAULT_REGION": region, "AWS_EC2_METADATA_DISABLED": "true"}


@contextmanager
def moto_server():
    "moto's AWS emulator on a free 127.0.0.1 port (image URIs checked against its ECR, managed policies loaded)."
    port = find_free_port()
    env = {**os.environ, "MOTO_LAMBDA_STUB_ECR": "false", "MOTO_IAM_LOAD_MANAGED_POLICIES": "true"}
    process = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    try:
        wait_for_port(port)
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(10)


@pytest.fixture(scope="module")
def moto_endpoint():
    "The URL of a moto server for this test module."
    with moto_server() as endpoint:
        yield endpoint


# ---------------------------------------------------------------- the model and a page


@pytest.fixture(scope="session")
def artifact_dir() -> Path:
    "The shipped model (or $TEXT_RECOGNIZER_ARTIFACT)."
    from text_recognizer.predictor import ParagraphTextRecognizer

    return Path(ParagraphTextRecognizer().artifact_dir)


@pytest.fixture(scope="session")
def recognizer(artifact_dir):
    from text_recognizer.predictor import ParagraphTextRecognizer

    return ParagraphTextRecognizer(artifact_dir)


@pytest.fixture(scope="session")
def page(tmp_path_factory) -> Path:
    "A rendered paragraph of synthetic handwriting, as a PNG file."
    from text_recognizer.data.synthetic import render_paragraph

    path = tmp_path_factory.mktemp("pages") / "page.png"
    render_paragraph(["The quick brown fox", "jumps over 12 lazy dogs."], seed=7).save(path)
    return path


# ---------------------------------------------------------------- the app as a process


def app_env(home: Path, artifact_dir: Path, **extra) -> dict:
    "The app's environment: its own home and model, no tunnel, no S3."
    env = {**os.environ, "TEXT_RECOGNIZER_HOME": str(home), "TEXT_RECOGNIZER_ARTIFACT": str(artifact_dir),
           "GRADIO_ANALYTICS_ENABLED": "False", "PYTHONUNBUFFERED": "1", "HF_HOME": str(home / "hf")}
    from text_recognizer.ingress import NGROK_TOKEN_ENV_VAR
    from text_recognizer.monitoring import MONITORING_DB_ENV_VAR, MONITORING_S3_ENV_VAR

    for name in (NGROK_TOKEN_ENV_VAR, MONITORING_S3_ENV_VAR, MONITORING_DB_ENV_VAR):
        env.pop(name, None)
    env.update(extra)
    return env


class AppProcess:
    "`text-recognizer demo --port PORT ...` in a subprocess; `url` once it says it is serving."

    def __init__(self, args: list[str], env: dict, log: Path):
        self.port, self.log = find_free_port(), log
        self.process = subprocess.Popen([*CLI, "demo", "--port", str(self.port), *args], cwd=ROOT, env=env,
                                        stdout=open(log, "wb"), stderr=subprocess.STDOUT)
        self.url = f"http://127.0.0.1:{self.port}/"
        deadline = time.monotonic() + APP_STARTUP_TIMEOUT_S
        while f"running on {self.url}" not in self.output():
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"the app did not start:\n{self.output()}")
            time.sleep(0.5)

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self) -> int:
        "Ctrl+C, as a person would; the exit code."
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode


@pytest.fixture(scope="session")
def start_app():
    "`AppProcess`, for tests that start an app of their own."
    return AppProcess


@pytest.fixture(scope="module")
def served(tmp_path_factory, artifact_dir):
    "The demo app serving the shipped model, with its own home folder (`served.home`)."
    home = tmp_path_factory.mktemp("home")
    app = AppProcess([], app_env(home, artifact_dir), home / "app.log")
    app.home = home
    yield app
    assert app.stop() == 0, app.output()


def gradio_client_for(url: str):
    "A gradio_client for the app at `url`."
    from gradio_client import Client

    return Client(url, verbose=False, download_files=False)


@pytest.fixture(scope="session")
def client_for():
    "`gradio_client_for(url)`: a gradio_client for an app."
    return gradio_client_for


@pytest.fixture(scope="session")
def make_app_env():
    "`app_env(home, artifact_dir, **extra)`."
    return app_env


@pytest.fixture(scope="module")
def moto_env(moto_endpoint) -> dict:
    "`aws_env` for this module's moto server."
    return aws_env(moto_endpoint)


# ---------------------------------------------------------------- HTTPS on loopback, a browser


@pytest.fixture(scope="session")
def https_server(tmp_path_factory):
    "`serve(handler_class) -> (port, client SSL context)`: HTTPS on 127.0.0.1 with a self-signed certificate for 'localhost'."
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=localhost",
                    "-addext", "subjectAltName=DNS:localhost", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True)
    servers = []

    def serve(handler_class) -> tuple[int, ssl.SSLContext]:
        server = ThreadingHTTPServer(("127.0.0.1", 0), handler_class)
        server.daemon_threads = True
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(cert, key)  # the handshake happens in the request's thread, not in accept()
        server.socket = context.wrap_socket(server.socket, server_side=True, do_handshake_on_connect=False)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return server.server_address[1], ssl.create_default_context(cafile=str(cert))

    yield serve
    for server in servers:
        server.shutdown()


CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]


@pytest.fixture(scope="module")
def browser():
    "Debian's Chromium (never a downloaded browser), driven by Playwright."
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: run `make system-packages` (installs Debian's chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()
