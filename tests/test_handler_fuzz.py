"""Property-based fuzz of the serving layer: over 20,000 generated inputs, no exception, no status >= 500.

Most inputs go to the Lambda handler in-process (fast): random JSON events, random bytes in every field,
truncated and bit-flipped PNG/JPEG, headers claiming absurd dimensions, wrong JSON types, odd HTTP events,
malformed URL syntax and lone surrogates, large valid images (16- and 32-bit, float, up to 8000 x 8000),
structured pages (rules, boxes, grids, inverted and rotated text). Fewer go through real processes and
servers: dripping, stalled, resetting and misbehaving HTTPS and S3 servers on loopback (with a short
fetch deadline), the handler behind the real awslambdaric client, and the Gradio app's HTTP API.
Every answer must be a well-formed response with a 4xx status (or 200 for a readable image). The
shipped model reads whatever decodes. Hypothesis runs derandomized with a fixed number of examples per
test, so the run is repeatable. Nothing leaves the machine: URLs name refused schemes, private
addresses, loopback servers, and an S3 endpoint on a closed loopback port.

Run: .venv/bin/pytest tests/test_handler_fuzz.py -p no:cacheprovider   (about 90 s of CPU, 2-3 min on 2 cores)
"""

import base64
import contextlib
import functools
import io
import json
import socket
import struct
import threading
import time
import urllib.error
import urllib.request
import zlib

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image, ImageDraw

from text_recognizer import serverless_input
from text_recognizer.serverless import handler, is_http_event

ALLOWED = {200, 400, 405, 413, 415, 422}
CALLS = [0]  # inputs the handler has answered in this process
RAN = {}  # fuzz test: inputs it generated
HEALTH = [HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much, HealthCheck.large_base_example,
          HealthCheck.function_scoped_fixture]
FUZZ = settings(derandomize=True, database=None, deadline=None, max_examples=2500, suppress_health_check=HEALTH)


def fuzz_settings(examples: int):
    "FUZZ with `examples` examples."
    return settings(FUZZ, max_examples=examples)


@pytest.fixture(scope="module", autouse=True)
def offline_aws():
    "boto3 pointed at a closed loopback port with fake credentials: an s3:// URL is a quick 4xx, never a call out."
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed = probe.getsockname()[1]
    with pytest.MonkeyPatch.context() as env:
        for key, value in {"AWS_ENDPOINT_URL": f"http://127.0.0.1:{closed}", "AWS_ACCESS_KEY_ID": "testing",
                           "AWS_SECRET_ACCESS_KEY": "testing", "AWS_REGION": "us-east-1",
                           "AWS_EC2_METADATA_DISABLED": "true"}.items():
            env.setenv(key, value)
        env.delenv("TEXT_RECOGNIZER_MONITORING_S3", raising=False)
        yield


def check(event):
    "Call the handler; it must answer (not raise) with an allowed status and a JSON-serializable body."
    CALLS[0] += 1
    with contextlib.redirect_stdout(io.StringIO()):  # 10,000 JSON log lines are not worth keeping
        answer = handler(event, None)
    assert isinstance(answer, dict)
    json.dumps(answer, allow_nan=False)
    if is_http_event(event):
        status, body = answer["statusCode"], json.loads(answer["body"])
    else:
        status, body = answer.get("statusCode", 200), answer
    assert status in ALLOWED, (status, body)
    assert ("pred" in body) if status == 200 else isinstance(body.get("error"), str) and body["error"]
    return status


def run_fuzz(fuzz, minimum: int = 2000):
    "Run a hypothesis fuzz function and check that it really generated at least `minimum` inputs."
    before = CALLS[0]
    try:
        fuzz()
    finally:  # counted even when an input failed: the total says how much was tried
        RAN[fuzz.__name__] = CALLS[0] - before
    assert CALLS[0] - before >= minimum, CALLS[0] - before


def encoded(image: Image.Image, fmt: str) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt)
    return buffer.getvalue()


SMALL = Image.new("L", (48, 16), 255)
SMALL.paste(0, (10, 4, 30, 12))
VALID = {fmt: encoded(SMALL, fmt) for fmt in ("PNG", "JPEG", "GIF", "BMP", "TIFF")}


def png_claiming(width: int, height: int, rest: bytes = b"") -> bytes:
    "A PNG signature and a valid IHDR claiming width x height, then `rest`."
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + struct.pack(">I", 13) + b"IHDR" + ihdr + struct.pack(">I", zlib.crc32(b"IHDR" + ihdr)) + rest


def jpeg_claiming(width: int, height: int) -> bytes:
    "A JPEG whose SOF0 segment claims width x height (each < 65536), with no scan data."
    sof = b"\xff\xc0" + struct.pack(">HBHHB", 11, 8, height, width, 1) + b"\x01\x11\x00"
    return b"\xff\xd8" + sof + b"\xff\xd9"


def gif_claiming(width: int, height: int) -> bytes:
    return b"GIF89a" + struct.pack("<HH", width, height) + b"\x00\x00\x00;"


def bmp_claiming(width: int, height: int) -> bytes:
    return b"BM" + struct.pack("<IHHI", 54, 0, 0, 54) + struct.pack("<IiiHHIIiiII", 40, width, height, 1, 8, 0, 0, 0, 0, 0, 0)


def _flip(data: bytes, at: int, bit: int) -> bytes:
    "`data` with one bit flipped."
    mutable = bytearray(data)
    mutable[at % len(mutable)] ^= 1 << bit
    return bytes(mutable)


dimensions = st.integers(min_value=0, max_value=2**31 - 1)
formats = st.sampled_from(sorted(VALID))
damaged_images = st.one_of(
    st.builds(lambda fmt, cut: VALID[fmt][:cut], formats, st.integers(0, 400)),  # truncated
    st.builds(lambda fmt, at, bit: _flip(VALID[fmt], at, bit), formats, st.integers(0, 10**6), st.integers(0, 7)),
    st.builds(png_claiming, dimensions, dimensions, st.binary(max_size=64)),  # absurd dimensions
    st.builds(jpeg_claiming, st.integers(0, 65535), st.integers(0, 65535)),
    st.builds(gif_claiming, st.integers(0, 65535), st.integers(0, 65535)),
    st.builds(bmp_claiming, st.integers(-(2**31), 2**31 - 1), st.integers(-(2**31), 2**31 - 1)),
    st.builds(lambda signature, tail: signature + tail,  # an image signature, then noise
              st.sampled_from([b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"GIF89a", b"BM", b"II*\x00", b"MM\x00*",
                               b"RIFF\x00\x00\x00\x00WEBP", b"P5"]), st.binary(max_size=256)),
    st.binary(max_size=512),
)
json_values = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=40),
                           lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
                           max_leaves=6)
image_strings = st.one_of(
    damaged_images.map(lambda b: base64.b64encode(b).decode()),
    st.builds(lambda mime, b: f"data:{mime};base64," + base64.b64encode(b).decode(),
              st.sampled_from(["image/png", "image/jpeg", "text/plain", "", "application/octet-stream", "image/x"]), damaged_images),
    st.builds(lambda mime, t: f"data:{mime},{t}", st.sampled_from(["image/png", "text/plain"]), st.text(max_size=30)),
    st.text(max_size=200),
    st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=-_ \n", max_size=200),
)
offline_urls = st.one_of(
    st.builds("{}://{}/{}".format, st.sampled_from(["file", "http", "ftp", "gopher", "data", "javascript", "HTTP", ""]),
              st.sampled_from(["example.com", "localhost", "169.254.169.254", "", "[::1]"]), st.text(max_size=20)),
    st.builds("https://{}/{}".format, st.sampled_from(["127.0.0.1", "localhost", "10.0.0.7", "192.168.1.1", "169.254.169.254",
                                                       "[::1]", "0.0.0.0", "2130706433", "[fe80::1]", "100.64.1.1", "user:pw@a.b",
                                                       "203.0.113.9:444", "[::ffff:127.0.0.1]"]), st.text(max_size=20)),
    st.builds("s3://{}/{}".format, st.sampled_from(["", "UPPER", "a", "bad_bucket!", "x" * 70]), st.text(max_size=10)),
    st.text(max_size=60),
)
payloads = st.one_of(
    st.fixed_dictionaries({"image": image_strings}),
    st.fixed_dictionaries({"image": json_values}),
    st.fixed_dictionaries({"image_url": offline_urls}),
    st.fixed_dictionaries({"image_url": json_values}),
    st.fixed_dictionaries({"image": image_strings, "image_url": offline_urls}),
    st.dictionaries(st.sampled_from(["image", "image_url", "img", "url", "IMAGE"]), json_values, max_size=3),
)


@FUZZ
@given(json_values)
def fuzz_random_json_events(event):
    check(event)


@FUZZ
@given(payloads)
def fuzz_direct_invocations_with_bad_payloads(event):
    check(event)


@FUZZ
@given(damaged_images)
def fuzz_damaged_and_absurd_images_as_direct_base64(data):
    check({"image": base64.b64encode(data).decode()})


http_bodies = st.one_of(
    damaged_images.map(lambda b: (base64.b64encode(b).decode(), True)),
    payloads.map(lambda p: (json.dumps(p), False)),
    payloads.map(lambda p: (base64.b64encode(json.dumps(p).encode()).decode(), True)),
    json_values.map(lambda v: (json.dumps(v), False)),
    st.tuples(st.text(max_size=200), st.booleans()),
    st.tuples(json_values, json_values),
)


@FUZZ
@given(body=http_bodies,
       content_type=st.sampled_from(["image/png", "image/jpeg", "application/json", "application/octet-stream", "text/plain",
                                     "multipart/form-data; boundary=x", "", "application/json; charset=utf-8", "IMAGE/PNG"]),
       method=st.sampled_from(["POST", "post", "GET", "PUT", "DELETE", "OPTIONS", None, 7]),
       extra=st.dictionaries(st.sampled_from(["headers", "requestContext", "rawPath", "version", "cookies"]), json_values, max_size=2))
def fuzz_http_events(body, content_type, method, extra):
    text, is_base64 = body
    event = {"version": "2.0", "rawPath": "/", "headers": {"Content-Type": content_type},
             "requestContext": {"http": {"method": method}}, "body": text, "isBase64Encoded": is_base64, **extra}
    check(event)


@FUZZ
@given(st.binary(max_size=2048), st.sampled_from(["image/png", "application/octet-stream", "application/json", "image/webp"]))
def fuzz_random_bytes_as_http_bodies(data, content_type):
    check({"headers": {"content-type": content_type}, "body": base64.b64encode(data).decode(), "isBase64Encoded": True,
           "requestContext": {"http": {"method": "POST"}}})


# the five classes above: 5 x 2,000 or more inputs
def test_random_json_events():
    run_fuzz(fuzz_random_json_events)


def test_direct_invocations_with_bad_payloads():
    run_fuzz(fuzz_direct_invocations_with_bad_payloads)


def test_damaged_and_absurd_images_as_direct_base64():
    run_fuzz(fuzz_damaged_and_absurd_images_as_direct_base64)


def test_http_events():
    run_fuzz(fuzz_http_events)


def test_random_bytes_as_http_bodies():
    run_fuzz(fuzz_random_bytes_as_http_bodies)


# ---------------------------------------------------------------- malformed URL syntax and lone surrogates

SURROGATES = st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF)
url_text = st.text(alphabet=st.one_of(st.characters(), SURROGATES), max_size=30)
offline_hosts = st.sampled_from([  # none of these needs DNS: refused literals, loopback names, broken syntax
    "[::1", "[::1]", "[", "]", "[zz]", "[::ffff:10.0.0.1]", "[fe80::1%25eth0]", "127.0.0.1:99999", "127.0.0.1:-1",
    "127.0.0.1:port", "localhost:80:80", "10.0.0.1", "0", "%zz", "", "user@", "u:p@127.0.0.1", "a b", "\udc80",
    "\ud800.example", "[\udfff]", "127.0.0.1\x00", "localhost\n", "::1"])
malformed_urls = st.one_of(
    st.builds("{}://{}/{}".format, st.sampled_from(["https", "HTTPS", "s3", "http", "", "https:", "ftp"]), offline_hosts, url_text),
    st.builds("https://{}/{}?{}#{}".format, offline_hosts, url_text, url_text, url_text),
    st.builds("s3://{}/{}".format, st.sampled_from(["bucket", "Bad_Bucket", "a", "", "b" * 64, "[::1"]),
              st.builds("{}\udc80{}".format, url_text, url_text)),  # a lone surrogate in the key: refused before any call
    st.builds("s3://bucket/{}".format, st.text(min_size=1025, max_size=1100)),  # a key over S3's 1,024 bytes
    url_text,
)


@fuzz_settings(7000)
@given(malformed_urls, st.booleans())
def fuzz_malformed_urls(url, over_http):
    if over_http:
        check({"headers": {"content-type": "application/json"}, "requestContext": {"http": {"method": "POST"}},
               "body": json.dumps({"image_url": url}), "isBase64Encoded": False})
    else:
        check({"image_url": url})


def test_malformed_urls_and_surrogates():
    run_fuzz(fuzz_malformed_urls, 7000)


@fuzz_settings(5)
@given(st.sampled_from(["pages/page.png", "a", "k" * 1024, "dir/../x.png", "%F0%9F%98%80.png"]))
def fuzz_s3_keys_against_a_closed_endpoint(key):
    assert check({"image_url": f"s3://bucket/{key}"}) == 422


def test_s3_urls_when_s3_cannot_be_reached():
    run_fuzz(fuzz_s3_keys_against_a_closed_endpoint, 5)


# ---------------------------------------------------------------- large valid images


def pixels(mode: str, size: tuple[int, int], strokes: bool) -> Image.Image:
    "A light page of `mode` and `size` (numpy-built for 16/32-bit and float), with a few dark strokes."
    width, height = size
    if mode in ("I;16", "I", "F"):
        dtype, light = {"I;16": (np.uint16, 60000), "I": (np.int32, 2**20), "F": (np.float32, 0.9)}[mode]
        array = np.full((height, width), light, dtype=dtype)
        if strokes:
            for row in range(height // 4, height, max(1, height // 4)):
                array[row: row + max(1, height // 60), width // 10: width - width // 10] = 0
        return Image.fromarray(array)
    image = Image.new(mode, size, "white" if mode != "1" else 1)
    if strokes:
        draw = ImageDraw.Draw(image)
        for row in range(height // 4, height, max(1, height // 4)):
            draw.rectangle((width // 10, row, width - width // 10, row + max(1, height // 60)), fill="black" if mode != "1" else 0)
    return image


def large_image_bytes(mode: str, size: tuple[int, int], fmt: str, strokes: bool) -> bytes:
    buffer = io.BytesIO()
    image = pixels(mode, size, strokes)
    image.save(buffer, format=fmt, **({"compression": "tiff_deflate"} if fmt == "TIFF" else {}))
    return buffer.getvalue()


LARGE = [  # (mode, size, format, strokes): inside the limits (6 MB of bytes, 8000 pixels a side)
    ("F", (8000, 8000), "TIFF", False), ("F", (8000, 8000), "TIFF", True), ("I", (8000, 8000), "TIFF", True),
    ("I;16", (8000, 8000), "PNG", True), ("I;16", (8000, 8000), "TIFF", False), ("L", (8000, 8000), "PNG", True),
    ("RGB", (8000, 8000), "PNG", False), ("RGBA", (4000, 4000), "PNG", True), ("1", (8000, 8000), "PNG", True),
    ("F", (8000, 16), "TIFF", True), ("I;16", (16, 8000), "PNG", True), ("CMYK", (3000, 3000), "JPEG", True),
    ("P", (8000, 8000), "GIF", True), ("LA", (6000, 6000), "PNG", True),
]


@pytest.mark.parametrize(("mode", "size", "fmt", "strokes"), LARGE, ids=[f"{m}-{s[0]}x{s[1]}-{f}" for m, s, f, _ in LARGE])
def test_large_valid_images_get_a_200_or_a_4xx(mode, size, fmt, strokes):
    data = large_image_bytes(mode, size, fmt, strokes)
    status = check({"image": base64.b64encode(data).decode()})
    RAN[f"large {mode} {size} {fmt} {strokes}"] = 1
    assert status in (200, 413, 415), status


# ---------------------------------------------------------------- structured pages


def structured_page(width, height, inverted, rules, boxes, grid, words, angle, fmt) -> bytes:
    "A page of printed lines, rules, boxes and a grid, perhaps inverted and turned."
    ink, paper = (255, 0) if inverted else (0, 255)
    image = Image.new("L", (width, height), paper)
    draw = ImageDraw.Draw(image)
    for i in range(rules):
        y = (i + 1) * height // (rules + 1)
        draw.line((0, y, width, y), fill=ink, width=1 + i % 3)
    for i in range(boxes):
        x, y = (i * 37) % max(1, width - 20), (i * 53) % max(1, height - 20)
        draw.rectangle((x, y, x + 15 + i % 40, y + 10 + i % 30), outline=ink)
    if grid:
        for x in range(0, width, grid):
            draw.line((x, 0, x, height), fill=ink)
        for y in range(0, height, grid):
            draw.line((0, y, width, y), fill=ink)
    for i, word in enumerate(words):
        draw.text((5 + (i * 29) % max(1, width - 5), 5 + (i * 41) % max(1, height - 5)), word, fill=ink,
                  font_size=8 + (i * 7) % 60)
    buffer = io.BytesIO()
    image.rotate(angle, expand=True, fillcolor=paper).save(buffer, format=fmt)
    return buffer.getvalue()


pages = st.builds(structured_page, st.integers(8, 1200), st.integers(8, 900), st.booleans(), st.integers(0, 40),
                  st.integers(0, 60), st.sampled_from([0, 0, 0, 8, 25, 100]),
                  st.lists(st.text(alphabet="abcdefghijklmnopqrstuvwxyz ABC0123456789.,;!?", min_size=1, max_size=25),
                           max_size=12),
                  st.sampled_from([0, 0, 90, 180, 7, -13, 45]), st.sampled_from(["PNG", "JPEG", "GIF", "BMP", "WEBP"]))


@fuzz_settings(100)
@given(pages)
def fuzz_structured_pages(data):
    check({"image": base64.b64encode(data).decode()})


def test_structured_pages():
    run_fuzz(fuzz_structured_pages, 100)


@fuzz_settings(30)
@given(st.lists(st.text(alphabet="abcdefghijklmnopqrstuvwxyz ,.'0123456789", min_size=1, max_size=40), min_size=1,
                max_size=8), st.integers(0, 10**6), st.booleans())
def fuzz_handwritten_paragraphs(lines, seed, inverted):
    from text_recognizer.data.synthetic import render_paragraph

    image = render_paragraph(lines, seed=seed)
    buffer = io.BytesIO()
    (Image.eval(image, lambda v: 255 - v) if inverted else image).save(buffer, format="PNG")
    assert check({"image": base64.b64encode(buffer.getvalue()).decode()}) == 200


def test_handwritten_paragraphs_read():
    run_fuzz(fuzz_handwritten_paragraphs, 30)


# ---------------------------------------------------------------- slow, stalled and misbehaving servers on loopback

PNG_PAGE = VALID["PNG"]


def respond(handler_, status: int, body: bytes, headers: dict | None = None, gap_s: float = 0, pieces: int = 1):
    "Send a response, perhaps in `pieces` with `gap_s` between them."
    handler_.send_response(status)
    for key, value in ({"Content-Length": str(len(body))} | (headers or {})).items():
        handler_.send_header(key, value)
    handler_.end_headers()
    step = max(1, len(body) // pieces)
    for start in range(0, len(body), step):
        handler_.wfile.write(body[start: start + step])
        handler_.wfile.flush()
        time.sleep(gap_s)


def drip(handler_):
    "One byte of headers every 0.3 s, for up to 20 s."
    handler_.wfile.write(b"HTTP/1.1 200 OK\r\n")
    for _ in range(60):
        time.sleep(0.3)
        handler_.wfile.write(b"X")
        handler_.wfile.flush()


BEHAVIOURS = {
    "/good": lambda h: respond(h, 200, PNG_PAGE),
    "/slow-good": lambda h: respond(h, 200, PNG_PAGE, gap_s=0.1, pieces=3),
    "/slow-body": lambda h: respond(h, 200, PNG_PAGE * 50, gap_s=0.3, pieces=20),
    "/drip": drip,
    "/huge-length": lambda h: respond(h, 200, b"", {"Content-Length": str(10**12)}),
    "/short-body": lambda h: respond(h, 200, PNG_PAGE[:10], {"Content-Length": "5000"}),
    "/not-image": lambda h: respond(h, 200, b"<html>hello</html>", {"Content-Type": "text/html"}),
    "/error": lambda h: respond(h, 500, b"oops"),
    "/redirect": lambda h: respond(h, 302, b"", {"Location": "https://169.254.169.254/"}),
    "/too-big": lambda h: respond(h, 200, b"\x89PNG\r\n\x1a\n" + b"\0" * (7 * 2**20)),
}


@pytest.fixture(scope="module")
def loopback_https(https_server):
    "An HTTPS server on 127.0.0.1 behaving as BEHAVIOURS says, a TCP server that never speaks; the client's context."
    from http.server import BaseHTTPRequestHandler

    class Misbehaving(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_GET(self):
            with contextlib.suppress(OSError):
                BEHAVIOURS.get(self.path.split("?")[0], lambda h: respond(h, 404, b"no"))(self)

    port, client_context = https_server(Misbehaving)
    silent = socket.create_server(("127.0.0.1", 0))  # accepts (the kernel does), never says a word
    yield port, silent.getsockname()[1], client_context
    silent.close()


@pytest.fixture
def fetch_from_loopback(loopback_https, monkeypatch):
    "Let the handler fetch from the loopback servers, with a 1 s deadline (tests only)."
    _, _, client_context = loopback_https
    fetch = functools.partial(serverless_input.fetch_https, ssl_context=client_context, allow_private=True, deadline_s=1)
    monkeypatch.setattr(serverless_input, "fetch_https", fetch)
    return loopback_https


def test_slow_stalled_and_misbehaving_https_servers(fetch_from_loopback):
    port, silent_port, _ = fetch_from_loopback

    @fuzz_settings(30)
    @given(st.sampled_from([*BEHAVIOURS, "/missing", "SILENT"]), url_text.filter(lambda t: "\n" not in t))
    def fuzz(path, junk):
        url = f"https://localhost:{silent_port}/x" if path == "SILENT" else f"https://localhost:{port}{path}?q={junk}"
        start = time.monotonic()
        status = check({"image_url": url})
        assert time.monotonic() - start < 3, (path, "the deadline of 1 s was overrun")
        if path in ("/good", "/slow-good") and not any(0xD800 <= ord(c) <= 0xDFFF for c in junk):
            assert status == 200, (path, junk)

    fuzz.__name__ = "loopback https"
    run_fuzz(fuzz, 30)


def s3_stall(connection):
    connection.recv(65536)
    time.sleep(30)


def s3_reset(connection):
    connection.recv(65536)
    connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    connection.close()


def s3_garbage(connection):
    connection.recv(65536)
    connection.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 99999\r\n\r\nnot an image and not that long")
    connection.close()


def s3_error(connection):
    connection.recv(65536)
    connection.sendall(b"HTTP/1.1 503 Slow Down\r\nContent-Length: 0\r\n\r\n")
    connection.close()


def test_stalled_resetting_and_misbehaving_s3_endpoints(monkeypatch):
    monkeypatch.setattr(serverless_input, "FETCH_TIMEOUT_S", 1)
    for behaviour in (s3_stall, s3_reset, s3_garbage, s3_error):
        server = socket.create_server(("127.0.0.1", 0))

        def serve(server=server, behaviour=behaviour):
            with contextlib.suppress(OSError):
                while True:
                    threading.Thread(target=behaviour, args=(server.accept()[0],), daemon=True).start()

        threading.Thread(target=serve, daemon=True).start()
        monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{server.getsockname()[1]}")
        for key in ("pages/page.png", "other.png"):
            start = time.monotonic()
            assert check({"image_url": f"s3://bucket/{key}"}) == 422, behaviour.__name__
            assert time.monotonic() - start < 3, (behaviour.__name__, "botocore overran the deadline")
        server.close()
    RAN["loopback s3"] = 8


# ---------------------------------------------------------------- through the real processes


def http_status(url: str, data: bytes, content_type: str = "application/json") -> tuple[int, bytes]:
    request = urllib.request.Request(url, data=data, headers={"Content-Type": content_type}, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=120) as response:  # noqa: S310 (our own loopback server)
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


@pytest.fixture(scope="module")
def lambda_runtime(tmp_path_factory):
    "The shipped handler behind the local runtime and the real awslambdaric client."
    from text_recognizer.serverless_local import LocalLambdaRuntime

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed = probe.getsockname()[1]
    env = {"AWS_ENDPOINT_URL": f"http://127.0.0.1:{closed}", "AWS_ACCESS_KEY_ID": "testing",
           "AWS_SECRET_ACCESS_KEY": "testing", "AWS_EC2_METADATA_DISABLED": "true"}
    with LocalLambdaRuntime(port=0, env=env, log_path=tmp_path_factory.mktemp("lambda") / "log") as runtime:
        yield runtime


def test_the_awslambdaric_path(lambda_runtime):
    @fuzz_settings(400)
    @given(st.one_of(payloads, damaged_images.map(lambda b: {"image": base64.b64encode(b).decode()}),
                     malformed_urls.map(lambda u: {"image_url": u})), st.booleans())
    def fuzz(event, function_url):
        CALLS[0] += 1
        if function_url:
            status, body = http_status(lambda_runtime.url + "/", json.dumps(event).encode())
            assert status < 500 and status in ALLOWED, (status, body[:300])
        else:
            status, body = http_status(lambda_runtime.invocations_url, json.dumps(event).encode())
            answer = json.loads(body)
            assert status == 200 and answer.get("statusCode", 200) in ALLOWED, answer

    fuzz.__name__ = "awslambdaric"
    run_fuzz(fuzz, 400)


@pytest.fixture(scope="module")
def app_url():
    "The Gradio app (shipped model, no monitoring) served on a free 127.0.0.1 port in this process."
    from text_recognizer.app import launch_app, make_app

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    app = make_app(store=False)
    urls = launch_app(app, port=port)
    yield urls["local_url"]
    app.close()


def call_app(base: str, data: bytes) -> tuple[int, str]:
    "Upload `data` and call /recognize over the app's HTTP API: (worst HTTP status, the event stream)."
    import requests

    upload = requests.post(base + "gradio_api/upload", files={"files": ("upload.png", data)}, timeout=60)
    if upload.status_code != 200:
        return upload.status_code, upload.text
    path = upload.json()[0]
    call = requests.post(base + "gradio_api/call/recognize", timeout=60,
                         json={"data": [{"path": path, "meta": {"_type": "gradio.FileData"}}]})
    if call.status_code != 200:
        return call.status_code, call.text
    stream = requests.get(base + f"gradio_api/call/recognize/{call.json()['event_id']}", timeout=120)
    return stream.status_code, stream.text


def test_the_apps_http_api(app_url):
    @fuzz_settings(80)
    @given(st.one_of(damaged_images, pages, st.just(VALID["PNG"])))
    def fuzz(data):
        CALLS[0] += 1
        status, stream = call_app(app_url, data)
        assert status < 500, (status, stream[:300])
        assert "event: complete" in stream or "event: error" in stream, stream[:300]
        assert "Internal error" not in stream and "Something went wrong" not in stream, stream[:300]

    fuzz.__name__ = "app HTTP API"
    run_fuzz(fuzz, 80)


def test_the_whole_run_made_20000_inputs_or_more():
    "Meaningful only when the whole file runs (as `make test` does)."
    if len(RAN) < 25:
        pytest.skip(f"only part of the fuzz ran: {RAN}")
    print(RAN)
    assert sum(RAN.values()) >= 20_000, RAN
