"""The CVAT interactor function, driven the way CVAT and nuclio drive it.

CVAT's server payload (``cvat/apps/lambda_manager/views.py``) is serialised to JSON bytes, turned
into an event by nuclio-sdk's own deserializer (as the nuclio Python wrapper does), run through
nuclio-sdk's test platform (``init_context`` once, then ``handler``), serialised back by nuclio-sdk,
and the reply is read by Python ports of CVAT's UI code (:mod:`tests.backend.cvat_rules`). Masks are
compared with :class:`fcanet_core.Predictor` on the same clicks. The bundled model serves, as in a
deployment; the queued tests use the tiny model on a real Redis and ``python -m backend worker``.
"""
from __future__ import annotations

import base64
import importlib.util
import io
import json
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import ModuleType
from typing import Any, Callable, Iterator

import numpy as np
import pytest
import requests
import yaml
from nuclio_sdk import Event, EventDeserializerKinds, Response
from nuclio_sdk.test import Platform
from PIL import Image
from redis import Redis
from rq.job import Job
from rq.registry import FinishedJobRegistry

from backend.config import get_settings
from backend.cvat.interactor import mask_json
from backend.inference.jobs import SEGMENT_FRAME_JOB
from backend.inference.queueing import QUEUE_INFERENCE
from fcanet_core import Click, Predictor, load_model, next_click
from fcanet_core.data.datasets import load_samples
from fcanet_core.evaluation.robot import iou
from fcanet_core.inference.transforms import zoom_crop
from tests.support.cvat_rules import (MIN_SUPPORTED_INTERACTOR_VERSION, SAM_PLUGIN_ID, lambda_function,
                                      nuclio_annotations, rle2mask, ui_2024_interaction, ui_native_interaction)

REPO_ROOT = Path(__file__).resolve().parents[3]
FUNCTION_DIR = REPO_ROOT / "docker" / "cvat"
FUNCTION_FILES = {"cpu": FUNCTION_DIR / "function.yaml", "gpu": FUNCTION_DIR / "function-gpu.yaml"}
DOCKERFILES = {"cpu": REPO_ROOT / "docker" / "Dockerfile.cpu", "gpu": REPO_ROOT / "docker" / "Dockerfile.cuda"}
#: Keys CVAT's ``to_dict()`` sends the UI for an interactor (views.py @e4c12a27).
INTERACTOR_KEYS = {"id", "kind", "labels_v2", "description", "name", "version", "min_pos_points",
                   "min_neg_points", "startswith_box", "startswith_box_optional", "help_message", "animated_gif"}
MIN_IOU = 0.99


# --------------------------------------------------------------------------- harness
def load_function() -> ModuleType:
    """``docker/cvat/main.py`` as nuclio loads it (a module of its own name)."""
    spec = importlib.util.spec_from_file_location("cvat_function_main", FUNCTION_DIR / "main.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def nuclio_event(body: bytes, content_type: str = "application/json") -> Event:
    """The event nuclio-sdk 0.6.3's wrapper builds from a processor message (``Event.deserialize``
    with ``EventDeserializerKinds.msgpack``, which JSON-decodes ``application/json`` bodies)."""
    message = {"body": body, "content_type": content_type, "trigger": {"kind": "http", "name": "myHttpTrigger"},
               "fields": {}, "headers": {"Content-Type": content_type}, "id": "event-1", "method": "POST",
               "path": "/", "size": len(body), "timestamp": time.time(), "url": "", "shard_id": 0,
               "num_shards": 0, "type": "", "type_version": "", "version": ""}
    return Event.deserialize(message, kind=EventDeserializerKinds.msgpack)


class Function:
    """One deployed function: nuclio-sdk's test platform around ``main.handler``."""

    def __init__(self, module: ModuleType) -> None:
        get_settings.cache_clear()  # a new function process reads its environment afresh
        self.module = module
        self.platform = Platform()

    def call_raw(self, body: bytes, content_type: str = "application/json") -> dict:
        """The processor-side response (``Response.from_entrypoint_output``) for raw body bytes."""
        output = self.platform.call_handler(self.module.handler, nuclio_event(body, content_type))
        assert isinstance(output, Response)
        return Response.from_entrypoint_output(json.dumps, output)

    def call(self, payload: dict) -> tuple[int, dict]:
        """``(status, parsed JSON body)`` for a CVAT payload."""
        response = self.call_raw(json.dumps(payload).encode())
        assert response["content_type"] == "application/json"
        return response["status_code"], json.loads(response["body"])


@pytest.fixture(scope="module")
def function_module() -> ModuleType:
    return load_function()


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("cvat-model-data")


@pytest.fixture
def make_function(function_module: ModuleType, model_dir: Path,
                  monkeypatch: pytest.MonkeyPatch) -> Callable[..., Function]:
    """``make_function(**env)``: a fresh function (bundled model, in-process unless REDIS_URL is given)."""
    def make(**env: str) -> Function:
        base = {"MODEL_DIR": str(model_dir), "FCANET_CHECKPOINT": "default", "DEVICE": "cpu", "TORCH_THREADS": "1",
                "LOG_FORMAT": "text"}
        monkeypatch.delenv("REDIS_URL", raising=False)
        for key, value in {**base, **env}.items():
            monkeypatch.setenv(key, value)
        return Function(function_module)
    return make


@pytest.fixture(scope="module")
def predictor() -> Predictor:
    """The library's predictor with the backend's defaults (SIS on)."""
    return Predictor(load_model("default", "cpu"), device="cpu", sis=True)


@pytest.fixture(scope="module")
def samples(shared_dir: Path) -> list:
    return load_samples(shared_dir / "data" / "grabcut")


def image_file(rgb: np.ndarray, kind: str) -> bytes:
    """The file a frame is stored as: ``png``, ``jpeg``, ``grey`` (PNG, mode L), ``rgba`` (PNG)."""
    image = Image.fromarray(rgb)
    if kind == "grey":
        image = image.convert("L")
    elif kind == "rgba":
        image = image.convert("RGBA")
        image.putalpha(200)
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG" if kind == "jpeg" else "PNG", quality=90)
    return buffer.getvalue()


def payload(data: bytes, positives: list, negatives: list | None = None, obj_bbox: Any = None) -> dict:
    """The body CVAT's server posts to an interactor (views.py @e4c12a27, no ``threshold``)."""
    return {"image": base64.b64encode(data).decode("utf-8"), "pos_points": positives,
            "neg_points": negatives or [], "obj_bbox": obj_bbox}


def as_cvat_sees_it(data: bytes) -> np.ndarray:
    """The frame as CVAT's own functions read it: ``Image.open(...).convert("RGB")``."""
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))


def assert_cvat_accepts(reply: dict, width: int, height: int) -> np.ndarray:
    """Check ``reply`` with both UI branches; returns its mask as a 0/1 array."""
    assert set(reply) == {"mask"}, "no bounds/points: the full-frame reply every UI reads"
    mask = reply["mask"]
    assert isinstance(mask, list) and len(mask) == height
    assert all(isinstance(row, list) and len(row) == width for row in mask)
    assert all(type(v) is int for row in mask for v in row)
    values = {v for row in mask for v in row}
    assert values <= {0, 255} and 255 in values
    flat = [v for row in mask for v in row]

    rle, points = ui_2024_interaction(reply)
    assert len(rle) >= 6 and rle[-4:] == [0, 0, width - 1, height - 1]
    assert rle2mask(rle[:-4], width, height) == [int(v > 0) for v in flat]
    assert len(points) >= 3

    shapes = ui_native_interaction(reply)
    assert len(shapes) == 1 and shapes[0]["type"] == "mask"
    assert shapes[0]["points"][-4:] == [0, 0, width - 1, height - 1]
    assert rle2mask(shapes[0]["points"][:-4], width, height) == [int(v > 0) for v in flat]
    return (np.asarray(mask, dtype=np.int64) > 0).astype(np.uint8)


def expected_mask(predictor: Predictor, rgb: np.ndarray, clicks: list[Click],
                  box: tuple[float, float, float, float] | None = None) -> np.ndarray:
    """The library's mask for the clicks; with a box, on the box's zoom region (Label Studio's rule)."""
    crop = None
    if box is not None:
        x0, y0, x1, y1 = box
        corners = [Click(x0, y0, True), Click(x1 - 1, y1 - 1, True)]
        crop = zoom_crop([*clicks, *corners], None, *rgb.shape[:2], predictor.zoom_expansion, predictor.zoom_min_size)
    if crop is None:                                  # no box, or its zoom region is the whole image
        return predictor.predict(rgb, clicks).mask
    pred = predictor.predict(crop.image(rgb), crop.clicks(clicks))
    return (crop.paste(pred.mask.astype(np.float32)) > 0.5).astype(np.uint8)


def jaccard(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a > 0, b > 0).sum()
    return float(np.logical_and(a > 0, b > 0).sum()) / float(union) if union else 1.0


def robot_clicks(gt: np.ndarray) -> tuple[Click, Click]:
    """The robot's first (positive) click, and the negative it makes on an all-object prediction."""
    return next_click(np.zeros_like(gt), gt), next_click(np.ones_like(gt), gt)


# ------------------------------------------------------------------------- YAML contract
@pytest.mark.parametrize("variant", sorted(FUNCTION_FILES))
def test_function_yaml_passes_cvats_metadata_parsing(variant: str, function_module: ModuleType) -> None:
    config = yaml.safe_load(FUNCTION_FILES[variant].read_text())
    metadata, spec = config["metadata"], config["spec"]
    annotations = nuclio_annotations(metadata["annotations"])
    function = lambda_function({"metadata": {"name": metadata["name"], "annotations": annotations},
                                "spec": spec, "status": {"state": "ready", "httpPort": 32768}})

    assert set(function) == INTERACTOR_KEYS
    assert function["kind"] == "interactor" and function["name"] == "FCA-Net"
    assert function["version"] >= MIN_SUPPORTED_INTERACTOR_VERSION
    assert (function["min_pos_points"], function["min_neg_points"]) == (1, 0)
    assert function["labels_v2"] == [] and function["description"].strip()
    assert function["help_message"].strip()
    assert not function["startswith_box"] and not function["startswith_box_optional"]
    assert "false" not in {annotations.get("startswith_box"), annotations.get("startswith_box_optional")}
    assert annotations["framework"] == "pytorch"
    assert metadata["name"] != SAM_PLUGIN_ID

    assert spec["handler"] == "main:handler"
    module_name, _, handler_name = spec["handler"].partition(":")
    assert Path(function_module.__file__) == FUNCTION_DIR / f"{module_name}.py"
    assert callable(getattr(function_module, handler_name)) and callable(function_module.init_context)
    trigger = next(t for t in spec["triggers"].values() if t["kind"] == "http")
    assert trigger["attributes"]["maxRequestBodySize"] >= 32 * 1024 * 1024
    gpu_limit = (spec.get("resources") or {}).get("limits", {}).get("nvidia.com/gpu")
    assert gpu_limit == (1 if variant == "gpu" else None)


@pytest.mark.parametrize("variant", sorted(FUNCTION_FILES))
def test_function_image_is_the_project_image_with_bundled_weights(variant: str) -> None:
    """The build starts from the image ``docker/Dockerfile.*`` makes (code and weights under /app,
    nothing downloaded at run time), and ``PYTHONPATH`` points there."""
    config = yaml.safe_load(FUNCTION_FILES[variant].read_text())
    dockerfile = DOCKERFILES[variant]
    header = FUNCTION_FILES[variant].read_text()
    assert f"docker build -f docker/{dockerfile.name} -t {config['spec']['build']['baseImage']} ." in header
    env = {item["name"]: item["value"] for item in config["spec"]["env"]}
    text = dockerfile.read_text()
    assert f"WORKDIR {env['PYTHONPATH']}" in text
    for source in ("backend/", "fcanet_core/", "models/fcanet_lite0.pt"):
        assert f"COPY {source}" in text


# ------------------------------------------------------------------------ payload replay
CASES = [
    pytest.param("png", None, False, id="png-bbox-null-positive"),
    pytest.param("jpeg", [], True, id="jpeg-bbox-empty-with-negative"),
    pytest.param("grey", None, True, id="grey-with-negative"),
    pytest.param("rgba", [], False, id="rgba-positive"),
    pytest.param("png", "box", False, id="png-one-box"),
    pytest.param("jpeg", "box", True, id="jpeg-one-box-with-negative"),
]


@pytest.mark.parametrize("kind, obj_bbox, with_negative", CASES)
def test_cvat_payload_gives_a_mask_cvat_accepts_equal_to_the_predictor(make_function, predictor, samples, kind,
                                                                       obj_bbox, with_negative):
    rgb, gt = samples[8].load()                       # an object smaller than the frame, for the box
    data = image_file(rgb, kind)
    first, negative = robot_clicks(gt)
    second = next_click(predictor.predict(as_cvat_sees_it(data), [first]).mask, gt, [first])
    positives = [[first.x + 0.37, first.y + 0.61]]
    negatives = [[negative.x + 0.25, negative.y + 0.5]] if with_negative else []
    if second.positive:
        positives.append([second.x + 0.5, second.y + 0.5])
    box = None
    if obj_bbox == "box":
        ys, xs = np.nonzero(gt == 1)
        box = (float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1))
        obj_bbox = [[box[2], box[3]], [box[0], box[1]]]            # corners in either order
    status, reply = make_function().call(payload(data, positives, negatives, obj_bbox))

    assert status == 200, reply
    height, width = gt.shape
    mask = assert_cvat_accepts(reply, width, height)
    clicks = [Click(x, y, True) for x, y in positives] + [Click(x, y, False) for x, y in negatives]
    assert jaccard(mask, expected_mask(predictor, as_cvat_sees_it(data), clicks, box)) >= MIN_IOU


def test_first_click_is_the_first_positive_point(make_function, predictor, samples):
    rgb, gt = samples[2].load()
    data = image_file(rgb, "png")
    inside, _ = robot_clicks(gt)
    corner = Click(3.0, 3.0, True)
    function = make_function()
    for order in ([inside, corner], [corner, inside]):
        status, reply = function.call(payload(data, [[c.x, c.y] for c in order]))
        assert status == 200
        mask = assert_cvat_accepts(reply, rgb.shape[1], rgb.shape[0])
        assert jaccard(mask, predictor.predict(rgb, order).mask) >= MIN_IOU


def test_clicks_on_the_image_border_are_inside(make_function, predictor, samples):
    rgb, gt = samples[0].load()
    height, width = gt.shape
    data = image_file(rgb, "png")
    first, _ = robot_clicks(gt)
    status, reply = make_function().call(payload(data, [[first.x, first.y], [0.0, 0.0]],
                                                 [[float(width), float(height)]]))
    assert status == 200, reply
    mask = assert_cvat_accepts(reply, width, height)
    clicks = [first, Click(0.0, 0.0, True), Click(width - 1.0, height - 1.0, False)]
    assert jaccard(mask, predictor.predict(rgb, clicks).mask) >= MIN_IOU


def test_box_alone_prompts_with_its_centre_and_the_latest_box_counts(make_function, predictor, samples):
    rgb, gt = samples[8].load()
    data = image_file(rgb, "png")
    ys, xs = np.nonzero(gt == 1)
    box = (float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1))
    centre = Click((box[0] + box[2]) / 2, (box[1] + box[3]) / 2, True)
    expected = expected_mask(predictor, rgb, [centre], box)
    function = make_function()
    for obj_bbox in ([[box[0], box[1]], [box[2], box[3]]],
                     [[0, 0], [5, 5], [box[0], box[1]], [box[2], box[3]]],      # several boxes: the last
                     list(box)):                                                 # one flat box
        status, reply = function.call(payload(data, [], obj_bbox=obj_bbox))
        assert status == 200, reply
        assert jaccard(assert_cvat_accepts(reply, rgb.shape[1], rgb.shape[0]), expected) >= MIN_IOU


@pytest.mark.parametrize("shape", [(1, 1), (1, 7), (7, 1), (48, 64)])
@pytest.mark.parametrize("fill", ["zeros", "ones", "random"])
def test_mask_json_is_the_json_of_the_mask_rows(shape, fill):
    rng = np.random.default_rng(sum(shape))
    mask = {"zeros": np.zeros(shape, np.uint8), "ones": np.ones(shape, np.uint8),
            "random": (rng.random(shape) > 0.5).astype(np.uint8)}[fill]
    text = mask_json(mask)
    assert json.loads(text) == {"mask": (mask.astype(int) * 255).tolist()}
    assert text == json.dumps({"mask": (mask.astype(int) * 255).tolist()}, separators=(",", ":"))


def test_image_may_come_as_a_data_url(make_function):
    body = payload(_png(), [[10, 10]])
    body["image"] = "data:image/png;base64," + body["image"]
    assert make_function().call(body)[0] == 200


# ---------------------------------------------------------------------- semantics
def test_first_click_segments_the_object_and_negatives_stay_out(make_function, samples):
    """A real photo (GrabCut's first image): the robot's first click gives the object, negative points stay out."""
    rgb, gt = samples[0].load()
    height, width = gt.shape
    data = image_file(rgb, "png")
    function = make_function()
    first = next_click(np.zeros_like(gt), gt)
    status, reply = function.call(payload(data, [[float(first.x), float(first.y)]]))
    assert status == 200
    mask = assert_cvat_accepts(reply, width, height)
    assert mask[first.y, first.x] == 1 and iou(mask, gt) >= 0.75     # the bundled lite0 gets 0.89
    negatives = [[10.0, 10.0], [width - 11.0, height - 11.0]]         # background corners
    status, reply = function.call(payload(data, [[float(first.x), float(first.y)]], negatives))
    mask = assert_cvat_accepts(reply, width, height)
    assert mask[10, 10] == 0 and mask[height - 11, width - 11] == 0 and mask[first.y, first.x] == 1


def test_robot_session_through_the_handler_reaches_the_predictors_noc(make_function, predictor, samples):
    """The standard robot user, clicking through CVAT's two point lists, against the library."""
    function = make_function()
    for sample in samples[:3]:
        rgb, gt = sample.load()
        data = image_file(rgb, "png")
        curves = {}
        for route in ("handler", "predictor"):
            clicks: list[Click] = []
            mask = np.zeros_like(gt)
            curve = []
            while len(clicks) < 20 and (not curve or curve[-1] < 0.90):
                clicks.append(next_click(mask, gt, clicks))
                if route == "predictor":
                    mask = predictor.predict(rgb, clicks).mask
                else:
                    status, reply = function.call(payload(
                        data, [[c.x, c.y] for c in clicks if c.positive], [[c.x, c.y] for c in clicks if not c.positive]))
                    assert status == 200, reply
                    mask = assert_cvat_accepts(reply, gt.shape[1], gt.shape[0])
                curve.append(iou(mask, gt))
            curves[route] = curve
        noc = {route: [next((i + 1 for i, v in enumerate(c) if v >= t), 20) for t in (0.85, 0.90)]
               for route, c in curves.items()}
        assert noc["handler"] == noc["predictor"], (sample.name, curves)
        assert np.allclose(curves["handler"], curves["predictor"], atol=0.01), sample.name


# ---------------------------------------------------------------------- bad input
def _png(width: int = 64, height: int = 48) -> bytes:
    return image_file(np.full((height, width, 3), 128, np.uint8), "png")


BAD_PAYLOADS = {
    "no-image": ({"pos_points": [[10, 10]], "neg_points": []}, 400),
    "image-not-base64": ({"image": "this is not base64!", "pos_points": [[10, 10]], "neg_points": []}, 400),
    "image-not-a-string": ({"image": 12345, "pos_points": [[10, 10]], "neg_points": []}, 400),
    "bytes-not-an-image": (payload(b"GIF? no, just text" * 10, [[10, 10]]), 422),
    "truncated-png": (payload(_png()[:60], [[10, 10]]), 422),
    "no-positive-point": (payload(_png(), [], [[5, 5]]), 400),
    "point-outside": (payload(_png(), [[64.5, 10]]), 400),
    "negative-outside": (payload(_png(), [[10, 10]], [[5, -1]]), 400),
    "points-not-a-list": (payload(_png(), "10,10"), 400),
    "point-one-number": (payload(_png(), [[10]]), 400),
    "point-three-numbers": (payload(_png(), [[10, 10, 1]]), 400),
    "point-not-numbers": (payload(_png(), [["10", 10]]), 400),
    "point-boolean": (payload(_png(), [[True, 10]]), 400),
    "box-one-corner": (payload(_png(), [[10, 10]], obj_bbox=[[1, 2]]), 400),
    "box-not-a-list": (payload(_png(), [[10, 10]], obj_bbox="0,0,5,5"), 400),
    "box-outside": (payload(_png(), [[10, 10]], obj_bbox=[[100, 100], [120, 130]]), 400),
    "body-a-list": ([1, 2, 3], 400),
}


@pytest.mark.parametrize("name", sorted(BAD_PAYLOADS))
def test_bad_input_answers_4xx_json_and_the_function_keeps_serving(make_function, name):
    body, status = BAD_PAYLOADS[name]
    function = make_function()
    got, reply = function.call(body)
    assert (got, reply["status"]) == (status, status), reply
    assert isinstance(reply["detail"], str) and reply["detail"]
    assert function.call(payload(_png(), [[10.5, 10.5]]))[0] == 200


@pytest.mark.parametrize("body, content_type", [(b'{"image": "abc", "pos_points": [[1, 1]', "application/json"),
                                                (b"\xff\xfe not json", "application/octet-stream")])
def test_body_that_is_not_json_answers_400(make_function, body, content_type):
    response = make_function().call_raw(body, content_type)
    assert response["status_code"] == 400 and json.loads(response["body"])["status"] == 400


@pytest.mark.parametrize("env, data", [({"MAX_IMAGE_PIXELS": "3000"}, _png(64, 48)),
                                       ({"MAX_IMAGE_BYTES": "100"}, _png(64, 48))],
                         ids=["pixels", "bytes"])
def test_images_over_the_limits_answer_413(make_function, env, data):
    status, reply = make_function(**env).call(payload(data, [[10, 10]]))
    assert status == 413 and reply["error"] == "ImageTooLarge"


# ---------------------------------------------------------------------- HTTP replay
@pytest.fixture
def http_function(make_function) -> Iterator[str]:
    """The function behind a loopback HTTP server that decodes requests like nuclio's http trigger."""
    function = make_function()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:  # noqa: A002 (stdlib signature)
            pass

        def do_POST(self) -> None:  # noqa: N802 (stdlib name)
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            response = function.call_raw(body, self.headers.get("Content-Type", ""))
            data = response["body"].encode()
            self.send_response(response["status_code"])
            self.send_header("Content-Type", response["content_type"])
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_http_replay_as_cvats_gateway_calls_it(http_function, samples):
    rgb, gt = samples[0].load()
    first, _ = robot_clicks(gt)
    reply = requests.post(http_function, json=payload(image_file(rgb, "jpeg"), [[first.x, first.y]]), timeout=120)
    reply.raise_for_status()                          # LambdaGateway._invoke_directly, views.py @e4c12a27
    assert_cvat_accepts(reply.json(), gt.shape[1], gt.shape[0])

    broken = requests.post(http_function, data=b'{"image": ', headers={"Content-Type": "application/json"},
                           timeout=60)
    assert broken.status_code == 400 and broken.json()["status"] == 400


# ---------------------------------------------------------------------- queued
def test_queued_click_runs_on_a_real_worker_and_equals_in_process(function_module, backend_env, redis_url,
                                                                  start_worker, monkeypatch, samples):
    rgb, gt = samples[0].load()
    first, negative = robot_clicks(gt)
    body = payload(image_file(rgb, "jpeg"), [[first.x, first.y]], [[negative.x, negative.y]])

    def function(env: dict[str, str]) -> Function:
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        return Function(function_module)

    in_process_env = {**backend_env, "TORCH_THREADS": "1"}
    monkeypatch.delenv("REDIS_URL", raising=False)
    status, local = function(in_process_env).call(body)
    assert status == 200, local

    start_worker({"TORCH_THREADS": "1"})
    queued_function = function({**in_process_env, "REDIS_URL": redis_url})
    status, queued = queued_function.call(body)
    assert status == 200, queued
    assert queued == local and any(255 in row for row in queued["mask"])
    connection = Redis.from_url(redis_url)
    job_ids = FinishedJobRegistry(QUEUE_INFERENCE, connection=connection).get_job_ids()
    assert [Job.fetch(job_id, connection=connection).func_name for job_id in job_ids] == [SEGMENT_FRAME_JOB]

    status, error = queued_function.call(payload(b"not an image at all", [[1, 1]]))
    assert (status, error["status"]) == (422, 422)
    assert queued_function.call(body) == (200, local)
