"""The Lambda handler behind the local Lambda Runtime API and the real awslambdaric client.

Good images in every event shape (direct invocation with a data URL or bare base64, a function URL with
raw image bytes or a JSON body, an API Gateway v2 event with a base64-encoded JSON body, an s3://
image_url read from moto's S3) read the text the shipped model gives in-process; every bad-input class
gets its 4xx; faults of the service are a generic 500; logs are JSON lines. A fetch has one deadline
(a dripping HTTPS server, a stalled or resetting S3 endpoint on loopback), and the local runtime
keeps an invocation that a poller which gave up would have taken.

Run: .venv/bin/pytest tests/test_serverless.py -p no:cacheprovider   (about 40 s on 2 cores)
"""

import base64
import io
import json
import os
import socket
import struct
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler

import pytest
from PIL import Image, ImageDraw

from text_recognizer import serverless, serverless_input
from text_recognizer.serverless_local import MAX_REQUEST_BYTES, RUNTIME_PREFIX, LocalLambdaRuntime

BUCKET = "text-recognizer-test-images"


def page_image(text="The quick brown fox\njumps over the lazy dog.", size=(640, 160)) -> Image.Image:
    "A small page of dark text on light paper."
    image = Image.new("L", size, 255)
    draw = ImageDraw.Draw(image)
    for row, line in enumerate(text.splitlines()):
        draw.text((20, 20 + 50 * row), line, fill=0, font_size=32)
    return image


def encode(image: Image.Image, fmt="PNG") -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt)
    return buffer.getvalue()


def expected_text(data: bytes) -> str:
    "What the shipped model, in this process, reads in `data`."
    return serverless.get_predictor().predict_with_details(serverless.decode_image(data))["text"]


@pytest.fixture(scope="module")
def bucket(moto_endpoint, moto_env) -> str:
    "A bucket on moto's S3 holding pages/page.png."
    import boto3

    s3 = boto3.client("s3", endpoint_url=moto_endpoint, region_name="us-east-1", aws_access_key_id="testing",
                      aws_secret_access_key="testing")  # noqa: S106 (moto's fake credentials)
    s3.create_bucket(Bucket=BUCKET)
    s3.put_object(Bucket=BUCKET, Key="pages/page.png", Body=encode(page_image()))
    return BUCKET


@pytest.fixture(scope="module")
def runtime(bucket, moto_env, tmp_path_factory):
    "The real handler behind the local runtime, through real awslambdaric; payloads up to 12 MB reach it."
    log_path = tmp_path_factory.mktemp("lambda") / "function.log"
    with LocalLambdaRuntime(port=0, env=moto_env, log_path=log_path, max_request_bytes=12 * 2**20) as running:
        running.log_file = log_path
        yield running


def post(url: str, data: bytes, content_type: str = "application/json", method: str = "POST"):
    "(status, headers, JSON body) of an HTTP request."
    request = urllib.request.Request(url, data=data, headers={"Content-Type": content_type}, method=method)
    try:
        with urllib.request.urlopen(request, timeout=120) as response:
            return response.status, dict(response.headers), json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), json.loads(error.read())


def direct(runtime, event: dict) -> tuple[int, dict]:
    "Invoke through the RIE-style endpoint; (status the handler chose, its answer)."
    status, headers, answer = post(runtime.invocations_url, json.dumps(event).encode())
    assert status == 200 and "X-Amz-Function-Error" not in headers, answer
    return answer.get("statusCode", 200), answer


# ---------------------------------------------------------------- good images, every event shape

PNG = encode(page_image())
JPEG = encode(page_image("Handwriting, read\nby a machine."), "JPEG")


def test_direct_invocations_read_the_image(runtime):
    data_url = "data:image/png;base64," + base64.b64encode(PNG).decode()
    for event, data in [({"image": data_url}, PNG), ({"image": base64.b64encode(PNG).decode()}, PNG),
                        ({"image": "data:image/jpeg;base64," + base64.b64encode(JPEG).decode()}, JPEG),
                        ({"image": base64.urlsafe_b64encode(JPEG).decode().rstrip("=")}, JPEG)]:
        status, answer = direct(runtime, event)
        assert status == 200 and answer["pred"] == expected_text(data), answer
        assert answer["model_version"]


def test_function_url_with_raw_image_bytes(runtime):
    for data, content_type in [(PNG, "image/png"), (JPEG, "image/jpeg"), (PNG, "application/octet-stream")]:
        status, headers, body = post(runtime.url + "/", data, content_type)
        assert status == 200 and headers["content-type"] == "application/json"
        assert body["pred"] == expected_text(data)


def test_function_url_with_json_body(runtime):
    body = json.dumps({"image": "data:image/png;base64," + base64.b64encode(PNG).decode()}).encode()
    status, _, answer = post(runtime.url + "/predict", body)
    assert status == 200 and answer["pred"] == expected_text(PNG)


def test_api_gateway_v2_event_with_base64_encoded_json_body(runtime):
    payload = json.dumps({"image": base64.b64encode(JPEG).decode()}).encode()
    event = {"version": "2.0", "rawPath": "/", "headers": {"Content-Type": "application/json"},
             "requestContext": {"http": {"method": "POST", "path": "/"}},
             "body": base64.b64encode(payload).decode(), "isBase64Encoded": True}
    status, headers, answer = post(runtime.invocations_url, json.dumps(event).encode())
    assert status == 200 and answer["statusCode"] == 200
    assert json.loads(answer["body"])["pred"] == expected_text(JPEG)


def test_s3_image_url(runtime, bucket):
    status, answer = direct(runtime, {"image_url": f"s3://{bucket}/pages/page.png"})
    assert status == 200 and answer["pred"] == expected_text(PNG)


def test_model_is_loaded_once_and_logs_are_json_lines(runtime):
    for _ in range(3):
        assert direct(runtime, {"image": base64.b64encode(PNG).decode()})[0] == 200
    assert direct(runtime, {"image": 12})[0] == 400
    time.sleep(0.2)
    lines = [json.loads(line) for line in runtime.log_file.read_text().splitlines() if line.startswith("{")]
    predictions = [line for line in lines if line.get("event") == "prediction"]
    assert len(predictions) >= 4
    ok = [p for p in predictions if p["status"] == 200]
    assert ok and all({"latency_ms", "image_bytes", "width", "height", "confidence", "model_version"} <= set(p) for p in ok)
    assert any(p["status"] == 400 and "must be a string" in p["error"] for p in predictions)
    # one awslambdaric process, one predictor: the module-level cache hands back the same object
    assert serverless.get_predictor() is serverless.get_predictor()


# ---------------------------------------------------------------- bad input, every class

TRUNCATED_PNG = PNG[: len(PNG) // 2]


def png_header(width: int, height: int) -> bytes:
    "A PNG signature and IHDR (with a valid CRC) claiming `width` x `height`, and no pixel data."
    import struct
    import zlib

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + struct.pack(">I", 13) + b"IHDR" + ihdr + struct.pack(">I", zlib.crc32(b"IHDR" + ihdr))


BAD_DIRECT = [  # (event, status, words in the error)
    ({}, 400, "exactly one"),
    ({"image": 42}, 400, "must be a string"),
    ({"image": ["a"]}, 400, "must be a string"),
    ({"image": "@@@ not base64 @@@"}, 400, "base64"),
    ({"image": "data:image/png,rawtext"}, 400, "not base64-encoded"),
    ({"image": "https://example.com/page.png"}, 400, "image_url"),
    ({"image": "data:image/png;base64,", "image_url": "s3://b/k"}, 400, "exactly one"),
    ({"image": base64.b64encode(b"").decode() + "AA=="}, 415, "not an image"),
    ({"image": base64.b64encode(b"%PDF-1.7 a document").decode()}, 415, "not an image"),
    ({"image": "data:text/plain;base64,aGVsbG8="}, 415, "text/plain"),
    ({"image": base64.b64encode(TRUNCATED_PNG).decode()}, 415, "could not be read"),
    ({"image": base64.b64encode(png_header(200_000, 200_000)).decode()}, 415, "could not be read"),
    ({"image": base64.b64encode(b"\x00" * (MAX_REQUEST_BYTES + 10)).decode()}, 413, "limit"),
    ({"image_url": "file:///etc/passwd"}, 400, "https://"),
    ({"image_url": "http://example.com/page.png"}, 400, "https://"),
    ({"image_url": 7}, 400, "non-empty string"),
    ({"image_url": "https://127.0.0.1/page.png"}, 422, "non-public"),
    ({"image_url": "https://localhost/page.png"}, 422, "non-public"),
    ({"image_url": "https://169.254.169.254/latest/meta-data/"}, 422, "non-public"),
    ({"image_url": "https://[::1]:8443/page.png"}, 422, "non-public"),
    ({"image_url": f"s3://{BUCKET}/no/such/key.png"}, 422, "NoSuchKey"),
]


@pytest.mark.parametrize(("event", "status", "words"), BAD_DIRECT, ids=[f"{s}-{w}" for _, s, w in BAD_DIRECT])
def test_bad_direct_invocations_get_their_4xx(runtime, event, status, words):
    got, answer = direct(runtime, event)
    assert got == status and words in answer["error"], answer


BAD_HTTP = [  # (path, body, content type, method, status)
    ("/", b"{not json", "application/json", "POST", 400),
    ("/", b"[1, 2, 3]", "application/json", "POST", 400),
    ("/", b'{"image": 3.5}', "application/json", "POST", 400),
    ("/", b"", "application/json", "POST", 400),
    ("/", b"plain words, not an image", "image/png", "POST", 415),
    ("/", TRUNCATED_PNG, "image/png", "POST", 415),
    ("/", png_header(10**6, 10**6), "image/png", "POST", 415),
    ("/", b"--x\r\nContent-Disposition: form-data\r\n\r\n--x--", "multipart/form-data; boundary=x", "POST", 415),
    ("/", b"\x89PNG\r\n\x1a\n" + b"\x00" * (7 * 2**20), "image/png", "POST", 413),
    ("/", b"", "application/json", "GET", 405),
    ("/", b'{"image_url": "file:///etc/hostname"}', "application/json", "POST", 400),
    ("/", b'{"image_url": "https://10.0.0.1/x.png"}', "application/json", "POST", 422),
]


@pytest.mark.parametrize(("path", "body", "content_type", "method", "status"), BAD_HTTP,
                         ids=[f"{m}-{s}-{c.split(';')[0]}-{len(b)}" for _, b, c, m, s in BAD_HTTP])
def test_bad_function_url_requests_get_their_4xx(runtime, path, body, content_type, method, status):
    got, _, answer = post(runtime.url + path, body or None, content_type, method)
    assert got == status and answer["error"], answer


def test_runtime_refuses_requests_over_lambdas_6_mb_limit(tmp_path):
    with LocalLambdaRuntime(port=0, log_path=tmp_path / "log") as small:
        status, _, answer = post(small.invocations_url, b'{"image": "' + b"A" * MAX_REQUEST_BYTES + b'"}')
        assert status == 413 and answer["errorType"] == "RequestEntityTooLargeException"
        status, _, answer = post(small.url + "/", b"\x89PNG" + b"\x00" * MAX_REQUEST_BYTES, "image/png")
        assert status == 413


# ---------------------------------------------------------------- faults of ours, monitoring, https

class BrokenPredictor:
    def predict_with_details(self, image):
        raise RuntimeError("secret internal detail")


@pytest.fixture
def restore_predictor():
    saved = dict(serverless._cache)
    yield
    serverless._cache.clear()
    serverless._cache.update(saved)


def test_service_fault_is_a_generic_500_with_a_logged_traceback(restore_predictor, capsys):
    serverless.set_predictor(BrokenPredictor())
    answer = serverless.handler({"image": base64.b64encode(PNG).decode()})
    assert answer["statusCode"] == 500 and "secret" not in answer["error"] and "request id" in answer["error"]
    http = serverless.handler({"body": PNG.hex(), "headers": {"content-type": "application/json"}})
    assert http["statusCode"] == 400  # bad input stays 4xx even when the model is broken
    log = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    assert "secret internal detail" in log[0]["error"] and "Traceback" in log[0]["traceback"]


def test_monitoring_failure_never_fails_the_request(restore_predictor, monkeypatch, capsys):
    import types

    broken = types.ModuleType("text_recognizer.monitoring")
    broken.MONITORING_S3_ENV_VAR = "TEXT_RECOGNIZER_MONITORING_S3"
    broken.Recorder = lambda store: store
    broken.open_store = lambda location: (_ for _ in ()).throw(ConnectionError("store down"))
    monkeypatch.setitem(sys.modules, "text_recognizer.monitoring", broken)
    monkeypatch.setattr("text_recognizer.monitoring", broken, raising=False)
    monkeypatch.setenv(broken.MONITORING_S3_ENV_VAR, "s3://monitoring-bucket/records")
    serverless._monitoring.clear()
    answer = serverless.handler({"image": base64.b64encode(PNG).decode()})
    assert answer["pred"] == expected_text(PNG)
    log = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    assert any(line["event"] == "monitoring_failed" and "store down" in line["error"] for line in log), log
    assert [line["monitored"] for line in log if line["event"] == "prediction"] == [False]
    serverless._monitoring.clear()


def test_monitoring_records_reach_s3(restore_predictor, moto_env, monkeypatch):
    from text_recognizer import monitoring

    for key, value in moto_env.items():
        monkeypatch.setenv(key, value)
    import boto3

    boto3.client("s3").create_bucket(Bucket="monitoring-records")
    monkeypatch.setenv(monitoring.MONITORING_S3_ENV_VAR, "s3://monitoring-records/lambda")
    serverless._monitoring.clear()
    answer = serverless.handler({"image": base64.b64encode(PNG).decode()})
    assert answer["pred"] == expected_text(PNG)
    serverless._monitoring["recorder"].close()  # the background writer flushes
    frame = monitoring.open_store("s3://monitoring-records/lambda").records()
    assert list(frame["text"]) == [answer["pred"]] and list(frame["source"]) == ["lambda"]
    serverless._monitoring.clear()


@pytest.fixture(scope="module")
def tls_server(https_server):
    "An HTTPS server on 127.0.0.1 serving /page.png, /drip (one byte every 2 s) and /moved; the client's context."

    class Pages(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_GET(self):
            if self.path == "/page.png":
                self.send_response(200)
                self.send_header("Content-Length", str(len(PNG)))
                self.end_headers()
                self.wfile.write(PNG)
            elif self.path == "/drip":  # a valid start, then one byte every 2 s, for up to 40 s
                self.wfile.write(b"HTTP/1.1 200 OK\r\n")
                self.wfile.flush()
                for _ in range(20):
                    time.sleep(2)
                    try:
                        self.wfile.write(b"X")
                        self.wfile.flush()
                    except OSError:
                        return
            elif self.path == "/slow-body":  # the headers at once, then one byte of the body every 0.5 s
                self.send_response(200)
                self.send_header("Content-Length", "100")
                self.end_headers()
                for _ in range(100):
                    try:
                        self.wfile.write(b"X")
                        self.wfile.flush()
                    except OSError:
                        return
                    time.sleep(0.5)
            elif self.path == "/moved":
                self.send_response(302)
                self.send_header("Location", "https://169.254.169.254/")
                self.send_header("Content-Length", "0")
                self.end_headers()
            else:
                self.send_error(404)

    port, client_context = https_server(Pages)
    return f"https://localhost:{port}", client_context


def test_https_fetch_pins_the_checked_address_and_verifies_tls(tls_server):
    base, context = tls_server
    assert serverless_input.fetch_https(base + "/page.png", ssl_context=context, allow_private=True) == PNG
    for path, words in [("/missing.png", "HTTP 404"), ("/moved", "redirects are not followed")]:
        with pytest.raises(serverless_input.BadInputError) as caught:
            serverless_input.fetch_https(base + path, ssl_context=context, allow_private=True)
        assert caught.value.status == 422 and words in caught.value.message
    with pytest.raises(serverless_input.BadInputError) as caught:  # the system CAs do not trust our certificate
        serverless_input.fetch_https(base + "/page.png", allow_private=True)
    assert caught.value.status == 422 and "SSL" in caught.value.message
    with pytest.raises(serverless_input.BadInputError) as caught:  # and the handler never fetches from loopback
        serverless_input.fetch_image_url(base + "/page.png")
    assert caught.value.status == 422


def test_handler_module_imports_without_the_predictor():
    code = ("import sys; sys.modules['text_recognizer.predictor'] = None\n"
            "from text_recognizer import serverless\n"
            "print(serverless.handler({'image': 'aGVsbG8='})['statusCode'])")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                            env={**os.environ, "AWS_LAMBDA_RUNTIME_API": "127.0.0.1:9"})
    assert result.returncode == 0 and result.stdout.strip().splitlines()[-1] == "415", result.stderr


# ---------------------------------------------------------------- one deadline per fetch, 4xx for client faults

def test_a_dripping_https_server_is_cut_off_at_the_deadline(tls_server):
    base, context = tls_server
    start = time.monotonic()
    with pytest.raises(serverless_input.BadInputError) as caught:
        serverless_input.fetch_https(base + "/drip", ssl_context=context, allow_private=True, deadline_s=3)
    elapsed = time.monotonic() - start
    assert caught.value.status == 422 and "within 3 s" in caught.value.message
    assert elapsed < 4, elapsed  # one deadline for headers and body, though every byte came within 2 s


def test_a_slow_body_is_cut_off_at_the_deadline_too(tls_server):
    base, context = tls_server
    start = time.monotonic()
    with pytest.raises(serverless_input.BadInputError) as caught:
        serverless_input.fetch_https(base + "/slow-body", ssl_context=context, allow_private=True, deadline_s=2)
    assert caught.value.status == 422 and "within 2 s" in caught.value.message
    assert time.monotonic() - start < 3.5  # not the 50 s the body would take


def finishes_within(seconds: float, call):
    "(finished in time, result or exception) of `call()` run in a thread."
    outcome = []

    def run():
        try:
            outcome.append(call())
        except BaseException as error:  # noqa: BLE001 (handed back to the test)
            outcome.append(error)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(seconds)
    return (not thread.is_alive()), (outcome[0] if outcome else None)


@pytest.fixture
def loopback_s3(monkeypatch):
    "Point boto3 at a loopback endpoint served by `behaviour(connection)`; yields a function that starts it."
    servers = []

    def start(behaviour):
        server = socket.create_server(("127.0.0.1", 0))
        servers.append(server)

        def serve():
            while True:
                try:
                    connection, _ = server.accept()
                except OSError:
                    return
                threading.Thread(target=behaviour, args=(connection,), daemon=True).start()

        threading.Thread(target=serve, daemon=True).start()
        endpoint = f"http://127.0.0.1:{server.getsockname()[1]}"
        for key, value in {"AWS_ENDPOINT_URL": endpoint, "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                           "AWS_REGION": "us-east-1", "AWS_EC2_METADATA_DISABLED": "true"}.items():
            monkeypatch.setenv(key, value)
        return endpoint

    yield start
    for server in servers:
        server.close()


def stall(connection):
    "Read the request, then say nothing for a minute."
    connection.recv(65536)
    time.sleep(60)
    connection.close()


def reset(connection):
    "Read the request, then reset the connection (RST, not FIN)."
    connection.recv(65536)
    connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    connection.close()


def test_a_stalled_s3_endpoint_is_cut_off_within_the_deadline(loopback_s3, monkeypatch):
    loopback_s3(stall)
    monkeypatch.setattr(serverless_input, "FETCH_TIMEOUT_S", 3)
    start = time.monotonic()
    finished, outcome = finishes_within(10, lambda: serverless_input.fetch_image_url("s3://bucket/page.png"))
    assert finished and time.monotonic() - start < 3.5, "botocore's timeouts and retries overran the deadline"
    assert isinstance(outcome, serverless_input.BadInputError) and outcome.status == 422, outcome


def test_an_s3_connection_reset_is_a_4xx_with_a_message(loopback_s3):
    loopback_s3(reset)
    finished, outcome = finishes_within(15, lambda: serverless.handler({"image_url": "s3://bucket/page.png"}))
    assert finished and outcome["statusCode"] == 422 and "try again" in outcome["error"].lower(), outcome


@pytest.mark.parametrize("url", ["https://[::1/", "https://example.com:99999/", "s3://bucket/\udc80",
                                 "https://example.com/\udc80", "s3://bucket/" + "k" * 2000])
def test_malformed_urls_are_a_400_not_a_500(url):
    answer = serverless.handler({"image_url": url})
    assert answer["statusCode"] == 400 and "image_url" in answer["error"], answer


def test_a_poller_that_gives_up_does_not_take_the_next_invocation():
    "A runtime client whose `next` request was abandoned must not swallow the invocation that comes after."
    runtime = LocalLambdaRuntime(port=0, timeout_s=5)
    threading.Thread(target=runtime.server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True).start()
    try:
        quitter = socket.create_connection(("127.0.0.1", runtime.port))
        quitter.sendall(f"GET {RUNTIME_PREFIX}/invocation/next HTTP/1.1\r\nHost: local\r\n\r\n".encode())
        time.sleep(0.5)
        quitter.close()  # gave up waiting, as awslambdaric's poller or a proxy does
        time.sleep(0.5)

        def stayer():  # a runtime client that waits, and answers
            with urllib.request.urlopen(runtime.url + f"{RUNTIME_PREFIX}/invocation/next", timeout=20) as response:
                request_id = response.headers["Lambda-Runtime-Aws-Request-Id"]
            post(runtime.url + f"{RUNTIME_PREFIX}/invocation/{request_id}/response", b'{"pred": "kept"}')

        threading.Thread(target=stayer, daemon=True).start()
        assert runtime.invoke({"image": "anything"}) == {"pred": "kept"}
    finally:
        runtime.stop()
