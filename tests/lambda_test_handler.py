"""The Lambda handler as the tests run it: the real `text_recognizer.serverless.handler`.

It uses the real predictor (`text_recognizer.predictor` with the shipped artifact) whenever that
loads. Until it exists, and only inside the test processes, a small deterministic stand-in takes its
place: `StandInPredictor` describes the image (size and ink fraction) instead of reading it, and
`stand_in_load_image` validates bytes with PIL the way the predictor's `load_image` is specified to.
Tests that depend on the stand-in are PROVISIONAL: they switch to the real model on their own.
Set TEXT_RECOGNIZER_TEST_STAND_IN=1 to force the stand-in.
"""

import io
import os
import time

from PIL import Image

from text_recognizer import serverless

MAX_PIXELS = 50_000_000  # the stand-in's decompression-bomb limit


class StandInBadImageError(ValueError):
    "Bad input for the stand-in, like the predictor's BadImageError."


def stand_in_load_image(data) -> Image.Image:
    "Validate image bytes with PIL into a grayscale image; anything unreadable is a StandInBadImageError."
    if not isinstance(data, (bytes, bytearray)) or not data:
        raise StandInBadImageError("empty or not bytes")
    try:
        with Image.open(io.BytesIO(data)) as image:
            if image.width * image.height > MAX_PIXELS or min(image.size) < 1:
                raise StandInBadImageError(f"absurd size {image.size}")
            image.load()
            return image.convert("L")
    except StandInBadImageError:
        raise
    except Exception as error:  # PIL raises many types on corrupt files
        raise StandInBadImageError(f"not a readable image: {type(error).__name__}") from None


class StandInPredictor:
    "A deterministic stand-in for ParagraphTextRecognizer: describes the image instead of reading it."

    version = "stand-in"

    def predict(self, image) -> str:
        histogram = image.convert("L").histogram()
        ink = sum(histogram[:128]) / max(1, sum(histogram))
        return f"stand-in {image.width}x{image.height} ink {ink:.4f}"

    def predict_with_details(self, image) -> dict:
        start = time.perf_counter()
        text = self.predict(image)
        return {"text": text, "confidence": 1.0, "latency_ms": (time.perf_counter() - start) * 1000,
                "model_version": self.version}


def real_predictor_available() -> bool:
    "True when the real predictor module exists and the shipped model loads."
    if os.environ.get("TEXT_RECOGNIZER_TEST_STAND_IN") == "1":
        return False
    try:
        serverless.get_predictor()
        return True
    except Exception:
        return False


USING_STAND_IN = not real_predictor_available()
if USING_STAND_IN:
    serverless.set_predictor(StandInPredictor(), stand_in_load_image)


def reference():
    "(predictor, load_image) that the handler uses in this process."
    return serverless.get_predictor(), serverless.get_load_image()


handler = serverless.handler
