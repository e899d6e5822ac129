"""The Gradio app as a real server: gradio_client calls, monitoring records, the remote (Lambda) mode, ingress.

The app runs as a subprocess on a free 127.0.0.1 port, exactly as `text-recognizer demo --port N` runs it.
Nothing here leaves the machine: `--share` is pointed at a closed local port, and `--ngrok` at an agent
path that does not exist (the app refuses before pyngrok could download anything).
"""

import socket
import time

import pytest
from PIL import Image


def test_demo_prints_its_address_and_binds_loopback_only(served):
    assert f"Handwriting recognizer running on {served.url}" in served.output()
    assert "Ctrl+C" in served.output()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:  # the outward address; UDP connect sends nothing
        probe.connect(("10.255.255.255", 1))
        outward = probe.getsockname()[0]
    if outward.startswith("127."):
        pytest.skip("this machine has no address besides loopback")
    with pytest.raises(OSError):
        socket.create_connection((outward, served.port), timeout=3).close()


def test_config_has_analytics_off_a_queue_and_an_upload_limit(served):
    import requests

    config = requests.get(served.url + "config", timeout=10).json()
    assert config["analytics_enabled"] is False and config["enable_queue"] is True
    assert config["max_file_size"] == 10 * 2**20, config["max_file_size"]
    assert {d["api_name"] for d in config["dependencies"]} >= {"recognize", "recognize_drawing", "flag"}


def test_gradio_client_reads_what_the_predictor_reads(served, recognizer, page, client_for):
    from gradio_client import handle_file

    text, details = client_for(served.url).predict(handle_file(str(page)), api_name="/recognize")
    assert text == recognizer.predict(str(page))
    assert f"`{recognizer.version}`" in details and "latency" in details


def test_every_reading_is_recorded_and_a_flag_lands_on_it(served, recognizer, page, client_for):
    from gradio_client import handle_file

    from text_recognizer.monitoring import SQLiteStore

    client = client_for(served.url)
    text, _ = client.predict(handle_file(str(page)), api_name="/recognize")
    status = client.predict("incorrect", "the model missed a word", "The quick brown fox", api_name="/flag")
    assert "flagged as **incorrect**" in status
    store = SQLiteStore(served.home / "monitoring" / "monitoring.db")
    deadline = time.monotonic() + 30  # the app's recorder writes in the background
    while store.flagged().empty and time.monotonic() < deadline:
        time.sleep(0.2)
    records = store.records()
    assert len(records) >= 1 and set(records["source"]) == {"app"}
    assert (records["model_version"] == str(recognizer.version)).all()
    flagged = store.flagged()
    row = flagged.iloc[-1]
    assert (row["flag"], row["comment"], row["corrected_text"], row["text"]) == (
        "incorrect", "the model missed a word", "The quick brown fox", text)
    assert store.image_bytes(row["image_sha256"]) == page.read_bytes()  # the very bytes that were uploaded


def test_the_drawing_endpoint_reads_a_drawing(served, recognizer, page, client_for):
    from gradio_client import handle_file

    drawing = {"background": None, "layers": [], "composite": handle_file(str(page))}
    text, details = client_for(served.url).predict(drawing, api_name="/recognize_drawing")
    assert text == recognizer.predict(Image.open(page).convert("RGB"))


def test_bad_input_gets_a_message_and_the_server_keeps_serving(served, recognizer, page, tmp_path, client_for):
    from gradio_client import handle_file
    from gradio_client.exceptions import AppError

    client = client_for(served.url)
    with pytest.raises(AppError, match="No image to read"):
        client.predict(None, api_name="/recognize")
    tiny = tmp_path / "tiny.png"
    Image.new("L", (4, 4), 255).save(tiny)
    with pytest.raises(AppError, match="too small"):
        client.predict(handle_file(str(tiny)), api_name="/recognize")
    notes = tmp_path / "notes.png"
    notes.write_bytes(b"%PDF-1.7 a document, not an image")
    with pytest.raises(AppError, match="not an image"):
        client.predict(handle_file(str(notes)), api_name="/recognize")
    with pytest.raises(AppError, match="recognize an image first"):
        client_for(served.url).predict("other", "", "", api_name="/flag")  # a fresh session has no reading
    assert client.predict(handle_file(str(page)), api_name="/recognize")[0] == recognizer.predict(str(page))


def test_model_url_reads_through_the_lambda_function(tmp_path, artifact_dir, recognizer, page, start_app,
                                                      make_app_env, client_for):
    "The app in front of the real handler, behind the local Lambda runtime and its function URL."
    from gradio_client import handle_file
    from gradio_client.exceptions import AppError

    from text_recognizer.serverless_local import LocalLambdaRuntime

    env = {"TEXT_RECOGNIZER_ARTIFACT": str(artifact_dir), "TEXT_RECOGNIZER_HOME": str(tmp_path / "lambda-home")}
    with LocalLambdaRuntime(port=0, env=env, log_path=tmp_path / "lambda.log") as runtime:
        app = start_app(["--model-url", runtime.url + "/", "--timeout", "60"],
                        make_app_env(tmp_path / "home", artifact_dir), tmp_path / "app.log")
        try:
            client = client_for(app.url)
            text, details = client.predict(handle_file(str(page)), api_name="/recognize")
            assert text == recognizer.predict(str(page))
            assert "backend** lambda" in details
            odd = tmp_path / "odd.png"
            odd.write_bytes(b"GIF89a but not really a gif")
            with pytest.raises(AppError, match="refused the image"):
                client.predict(handle_file(str(odd)), api_name="/recognize")
        finally:
            assert app.stop() == 0


@pytest.fixture
def app_main(tmp_path, artifact_dir, monkeypatch, make_app_env):
    "`text-recognizer app ...` in this process (for the commands that stop before serving for long)."
    for name, value in make_app_env(tmp_path, artifact_dir).items():
        monkeypatch.setenv(name, value)
    for name in ("NGROK_AUTHTOKEN", "PYNGROK_NGROK_PATH", "GRADIO_SHARE_SERVER_ADDRESS"):
        monkeypatch.delenv(name, raising=False)
    from text_recognizer.app import main

    return main


def test_share_fails_clearly_without_leaving_the_machine(app_main, tmp_path, capsys, free_port):
    port = free_port()  # closed: bound, then released
    assert app_main(["--port", str(free_port()), "--share", "--share-server", f"127.0.0.1:{port}"]) == 2
    error = capsys.readouterr().err
    assert f"127.0.0.1:{port}" in error and "leave --share off" in error
    assert not (tmp_path / "hf" / "gradio" / "frpc").exists()  # gradio's tunnel binary was never fetched


def test_ngrok_needs_a_token(app_main, capsys, free_port):
    assert app_main(["--port", str(free_port()), "--ngrok"]) == 2
    assert "NGROK_AUTHTOKEN" in capsys.readouterr().err


def test_ngrok_without_the_agent_says_how_to_install_it_and_downloads_nothing(app_main, tmp_path, monkeypatch,
                                                                              capsys, free_port):
    agent = tmp_path / "bin" / "ngrok"
    monkeypatch.setenv("NGROK_AUTHTOKEN", "test-token-not-real")  # a token alone turns the tunnel on
    monkeypatch.setenv("PYNGROK_NGROK_PATH", str(agent))
    port = free_port()
    assert app_main(["--port", str(port)]) == 2
    error = capsys.readouterr().err
    assert str(agent) in error and "install_ngrok" in error
    assert not agent.exists() and not agent.parent.exists()
    with socket.socket() as s:  # the app that was started for the tunnel has been closed again
        s.bind(("127.0.0.1", port))


def test_a_missing_model_is_a_clear_error(app_main, tmp_path, capsys):
    assert app_main(["--artifact-dir", str(tmp_path / "nothing")]) == 2
    assert "cannot load the model" in capsys.readouterr().err


def test_the_page_draws_the_lines_it_found(recognizer, page):
    from text_recognizer.app import draw_line_boxes, make_app, recognize

    text, _, reading = recognize(str(page), recognizer)
    details = recognizer.predict_with_details(str(page))
    assert reading["boxes"] == [list(line["box"]) for line in details["lines"]] and reading["boxes"]
    annotated = draw_line_boxes(str(page), reading)
    assert annotated.mode == "RGB" and annotated.size == Image.open(page).size
    x0, y0, x1, y1 = reading["boxes"][0]
    assert annotated.getpixel((x0, (y0 + y1) // 2)) != Image.open(page).convert("RGB").getpixel((x0, (y0 + y1) // 2))
    config = make_app(recognizer, store=False, examples=[]).config
    shown = next(c["id"] for c in config["components"] if c.get("props", {}).get("elem_id") == "annotated")
    assert any(shown in d["outputs"] for d in config["dependencies"])  # an event fills the annotated image
