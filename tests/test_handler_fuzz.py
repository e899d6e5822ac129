"""Property-based fuzz of the Lambda handler: over 10,000 generated bad inputs, no exception, no 500.

The handler runs in-process (fast): random JSON events, random bytes in every field, truncated and
bit-flipped PNG/JPEG, headers claiming absurd dimensions, wrong JSON types, odd HTTP events. Every
answer must be a well-formed response with a 4xx status (or 200, when a mutation happens to leave a
readable image). Hypothesis runs derandomized with a fixed number of examples per test, so the run
is repeatable. URLs stay offline: only schemes we refuse, IP literals and localhost.

Run: .venv/bin/pytest tests/test_handler_fuzz.py -p no:cacheprovider   (about 40 s on 2 cores)
"""

import base64
import contextlib
import io
import json
import struct
import zlib

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from text_recognizer.serverless import handler, is_http_event

ALLOWED = {200, 400, 405, 413, 415, 422}
CALLS = [0]  # inputs the handler has answered in this process
FUZZ = settings(derandomize=True, database=None, deadline=None, max_examples=2100,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much])


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
    fuzz()
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


# 5 x 2,000 or more = at least 10,000 generated inputs
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
