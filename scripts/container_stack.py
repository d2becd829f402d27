"""Start the compose file's CPU stack as separate containers and check it through HTTP.

    python scripts/container_stack.py --runtime podman --image fcanet-backend:cpu

Run by ``scripts/container_test.sh`` after it built the image. Redis, the web process, the
inference worker, the training worker and the scheduler each run in a container of their own with
the command and environment ``docker/docker-compose.yml`` + ``docker/docker-compose.cpu.yml`` give
them, sharing a ``model_data`` volume at ``MODEL_DIR``. Containers use the host's network (the only
kind these build machines allow), so service names resolve to 127.0.0.1 (``--add-host``) and Redis
and the web process get free ports instead of 6379 and 9090. A task image is served from this
machine, standing in for Label Studio. Checks, each through the services' own interfaces:

1. ``/health`` is UP and names the inference, batch and training queues, each with a worker;
2. a Label Studio smart-keypoint click goes through the queue and comes back as the mask the
   library computes for that click on that image;
3. a webhook that arrives while Redis is down is stored on the ``MODEL_DIR`` volume, survives a
   restart of the web container and is then collected by the training worker;
4. the CVAT function's handler (``docker/cvat/main.py``) answers one CVAT request inside the image
   (with nuclio-sdk added as nuclio's build adds it) with the library's mask.

Prints one line per check and exits 0 when all pass; every container and volume it made is removed.
"""
from __future__ import annotations

import argparse
import base64
import copy
import functools
import http.server
import io
import json
import os
import re
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import requests
import yaml
from PIL import Image

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from backend.bench.annotator import keypoint_region, result_mask  # noqa: E402
from backend.bench.harness import free_port  # noqa: E402
from fcanet_core import Click, Predictor, load_model  # noqa: E402
from fcanet_core.data.datasets import Sample, load_samples  # noqa: E402
from fcanet_core.evaluation.robot import iou  # noqa: E402

COMPOSE_FILES = (REPO_ROOT / "docker" / "docker-compose.yml", REPO_ROOT / "docker" / "docker-compose.cpu.yml")
SERVICES = ("redis", "web", "inference-worker", "training-worker", "scheduler")
#: Options every container needs on the build machines (docs: shared/reference/containers.md).
RUNTIME_OPTIONS = {
    "podman": ["--runtime", "runc", "--network", "host", "--ulimit", "nofile=1024:1024",
               "--ulimit", "nproc=1024:1024"],
    "docker": ["--network", "host"],
}
SAME_MASK_IOU = 0.99
IMAGE_NAME = "teddy"
READY_TIMEOUT_S = 180.0


# --------------------------------------------------------------------------- compose files
class _Reset:
    """Compose's ``!reset`` tag: the key is removed from the merged file."""


RESET = _Reset()


class _ComposeLoader(yaml.SafeLoader):
    """PyYAML's safe loader plus compose's ``!reset``."""


_ComposeLoader.add_constructor("!reset", lambda loader, node: RESET)


def merge(base: Any, override: Any) -> Any:
    """Compose's merge of two files: mappings merge key by key, ``!reset`` removes, the rest replaces."""
    if isinstance(base, dict) and isinstance(override, dict):
        merged = dict(base)
        for key, value in override.items():
            if value is RESET:
                merged.pop(key, None)
            else:
                merged[key] = merge(base.get(key), value)
        return merged
    return copy.deepcopy(override)


def load_compose(files: Sequence[Path] = COMPOSE_FILES) -> dict:
    """The compose files merged in order, as ``docker compose -f A -f B`` merges them."""
    merged: dict = {}
    for path in files:
        merged = merge(merged, yaml.load(path.read_text(), Loader=_ComposeLoader))
    return merged


def interpolate(text: str, environ: dict[str, str]) -> str:
    """Compose's ``${VAR:-default}`` / ``${VAR}`` substitution from ``environ``."""
    def value(match: re.Match) -> str:
        name, default = match.group(1), match.group(3) or ""
        return environ.get(name) or default
    return re.sub(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(:-([^}]*))?\}", value, text)


@dataclass
class ServiceSpec:
    """What the compose file runs for one service."""

    name: str
    image: str
    command: list[str]
    environment: dict[str, str]
    volumes: list[str] = field(default_factory=list)


def service_specs(compose: dict, environ: dict[str, str]) -> dict[str, ServiceSpec]:
    """The stack's services with compose's interpolation applied."""
    specs = {}
    for name in SERVICES:
        spec = compose["services"][name]
        env = {key: interpolate(str(value), environ) for key, value in (spec.get("environment") or {}).items()}
        specs[name] = ServiceSpec(name, spec["image"], [interpolate(str(a), environ) for a in spec["command"]],
                                  {k: v for k, v in env.items() if v != ""}, list(spec.get("volumes") or []))
    return specs


# --------------------------------------------------------------------------- containers
class Stack:
    """Containers and volumes started through one container runtime; :meth:`close` removes them."""

    def __init__(self, runtime: str, prefix: str) -> None:
        self.runtime = runtime
        self.prefix = prefix
        self.containers: dict[str, str] = {}
        self.volumes: set[str] = set()

    def _run(self, *args: str, check: bool = True, timeout: float = 120) -> str:
        done = subprocess.run([self.runtime, *args], capture_output=True, text=True, timeout=timeout)
        if check and done.returncode != 0:
            raise RuntimeError(f"{self.runtime} {' '.join(args[:3])} ... failed ({done.returncode}): "
                               f"{done.stderr.strip()[-2000:]}")
        return done.stdout.strip()

    def volume(self, name: str) -> str:
        """A named volume of this stack (created on first use)."""
        full = f"{self.prefix}-{name}"
        if full not in self.volumes:
            self._run("volume", "create", full)
            self.volumes.add(full)
        return full

    def start(self, spec: ServiceSpec, env: dict[str, str], args: Sequence[str] = (),
              command: Sequence[str] | None = None) -> str:
        """Start one service's container (compose's ``restart: unless-stopped`` included)."""
        argv = ["run", "-d", "--name", f"{self.prefix}-{spec.name}", *RUNTIME_OPTIONS[self.runtime],
                "--add-host", "redis:127.0.0.1", "--restart", "unless-stopped"]
        for volume in spec.volumes:
            source, _, target = volume.partition(":")
            argv += ["--volume", f"{self.volume(source)}:{target}"]
        for key, value in {**spec.environment, **env}.items():
            argv += ["--env", f"{key}={value}"]
        argv += [*args, spec.image, *(command or spec.command)]
        self.containers[spec.name] = self._run(*argv)
        return self.containers[spec.name]

    def stop(self, name: str) -> None:
        self._run("stop", "-t", "5", self.containers[name])

    def start_again(self, name: str) -> None:
        self._run("start", self.containers[name])

    def restart(self, name: str) -> None:
        self._run("restart", "-t", "5", self.containers[name])

    def exec(self, name: str, *command: str) -> str:
        return self._run("exec", self.containers[name], *command)

    def logs(self, name: str) -> str:
        done = subprocess.run([self.runtime, "logs", "--tail", "40", self.containers[name]],
                              capture_output=True, text=True, timeout=60)
        return (done.stdout + done.stderr)[-4000:]

    def close(self) -> None:
        for container in self.containers.values():
            self._run("rm", "-f", "-t", "2", container, check=False)
        for volume in self.volumes:
            self._run("volume", "rm", "-f", volume, check=False)


# --------------------------------------------------------------------------- a stand-in for Label Studio's files
class _QuietFileHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
        """No access log: the checks print what matters."""


def serve_files(folder: Path) -> tuple[http.server.ThreadingHTTPServer, str]:
    """An HTTP server on 127.0.0.1 serving ``folder`` (standing in for Label Studio's uploads)."""
    handler = functools.partial(_QuietFileHandler, directory=str(folder))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}"


def wait_for(check: Callable[[], Any], what: str, timeout: float = READY_TIMEOUT_S) -> Any:
    """``check()``'s first truthy result; exceptions count as not yet. Raises after ``timeout``."""
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            result = check()
            if result:
                return result
        except Exception as exc:  # noqa: BLE001 - the service is not up yet
            last = exc
        time.sleep(1.0)
    raise AssertionError(f"{what}: not within {timeout:.0f} s (last error: {last})")


# --------------------------------------------------------------------------- checks
def healthy(url: str) -> dict | None:
    """``/health`` when it is UP with a worker on every queue, else None."""
    answer = requests.get(f"{url}/health", timeout=5).json()
    queues = answer.get("queues", {})
    if answer.get("status") == "UP" and queues and all(q["workers"] for q in queues.values()):
        return answer
    return None


def check_health(url: str) -> str:
    answer = wait_for(lambda: healthy(url), "/health UP with a worker on every queue")
    assert answer["inference"] == "queue", answer
    assert set(answer["queues"]) == {"inference", "batch", "training"}, answer
    return f"/health UP, queues {sorted(answer['queues'])}, model {answer['model_version']}"


def predict_body(reference: Path, image_url: str, click: Click, width: int, height: int) -> dict:
    """Label Studio's captured smart-keypoint /predict body, pointed at ``image_url`` and one click."""
    body = json.loads((reference / "labelstudio" / "predict_interactive_pos.json").read_text())
    body["tasks"] = [{**body["tasks"][0], "data": {"image": image_url}, "predictions": [], "annotations": []}]
    body["params"]["context"] = {"result": [keypoint_region(click, width, height)]}
    return body


def check_click(url: str, reference: Path, image_url: str, sample: Sample, predictor: Predictor) -> str:
    image, gt = sample.load()
    height, width = gt.shape
    ys, xs = np.nonzero(gt)
    click = Click(float(np.median(xs)) + 0.5, float(np.median(ys)) + 0.5, True)
    reply = requests.post(f"{url}/predict", json=predict_body(reference, image_url, click, width, height),
                          timeout=120)
    assert reply.status_code == 200, f"/predict: HTTP {reply.status_code} {reply.text[:500]}"
    mask = result_mask(reply.json()["results"][0]["result"], height, width)
    expected = predictor.predict(image, [click]).mask
    agreement = iou(mask, expected)
    assert agreement >= SAME_MASK_IOU, f"the stack's mask differs from the library's (IoU {agreement:.4f})"
    return f"click through the queue: IoU {agreement:.4f} with the library's mask, {int(mask.sum())} px"


def webhook_body(reference: Path, image_url: str, sample: Sample) -> dict:
    """Label Studio's captured ANNOTATION_CREATED webhook, with ``sample``'s mask on ``image_url``."""
    from backend.labelstudio.brush import mask_to_rle

    body = json.loads((reference / "labelstudio" / "webhook_annotation_created.json").read_text())
    gt = sample.gt
    height, width = gt.shape
    body["task"]["data"] = {"image": image_url}
    region = body["annotation"]["result"][0]
    region.update(original_width=width, original_height=height)
    region["value"]["rle"] = mask_to_rle((gt == 1).astype(np.uint8) * 255)
    return body


STORED_PROJECTS = ("from backend.config import Settings; from backend.learning.state import example_store; "
                   "print(' '.join(example_store(Settings.from_env()).projects()))")


def check_webhook_survives_restart(stack: Stack, url: str, body: dict) -> str:
    project = str(body["project"]["id"])
    stack.stop("redis")
    reply = requests.post(f"{url}/webhook", json=body, timeout=30)
    assert reply.status_code == 202 and reply.json()["status"] == "spooled", (
        f"webhook with Redis down: HTTP {reply.status_code} {reply.text[:300]}")
    spooled = stack.exec("web", "sh", "-c", "ls \"$MODEL_DIR/spool\"").split()
    assert spooled, "the spooled webhook is not on the MODEL_DIR volume"
    stack.restart("web")
    stack.start_again("redis")
    wait_for(lambda: healthy(url), "/health UP after the web container's restart")
    wait_for(lambda: project in stack.exec("training-worker", "python", "-c", STORED_PROJECTS).split(),
             f"project {project}'s annotation stored by the training worker")
    left = stack.exec("web", "sh", "-c", "ls \"$MODEL_DIR/spool\"").split()
    assert not left, f"spool not drained after the restart: {left}"
    return f"webhook spooled while Redis was down, kept over a web restart, collected (project {project})"


#: Runs inside the CVAT check's container: nuclio-sdk's test platform around main.handler, one event.
CVAT_CALL = """
import json, sys, time
from nuclio_sdk import Event, EventDeserializerKinds, Response
from nuclio_sdk.test import Platform
sys.path.insert(0, "/function")
import main  # "handler: main:handler", as nuclio imports it
body = sys.stdin.buffer.read()
message = {"body": body, "content_type": "application/json", "trigger": {"kind": "http", "name": "http"},
           "fields": {}, "headers": {"Content-Type": "application/json"}, "id": "1", "method": "POST", "path": "/",
           "size": len(body), "timestamp": time.time(), "url": "", "shard_id": 0, "num_shards": 0, "type": "",
           "type_version": "", "version": ""}
output = Platform().call_handler(main.handler, Event.deserialize(message, kind=EventDeserializerKinds.msgpack))
response = Response.from_entrypoint_output(json.dumps, output)
print(json.dumps({"status": response["status_code"], "body": json.loads(response["body"])}))
"""


def check_cvat(runtime: str, image: str, sample: Sample, predictor: Predictor) -> str:
    rgb, gt = sample.load()
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, format="PNG")
    ys, xs = np.nonzero(gt)
    x, y = int(np.median(xs)), int(np.median(ys))
    payload = {"image": base64.b64encode(buffer.getvalue()).decode(), "pos_points": [[x, y]], "neg_points": [],
               "obj_bbox": None}
    done = subprocess.run([runtime, "run", "--rm", "-i", *RUNTIME_OPTIONS[runtime],
                           "--volume", f"{REPO_ROOT / 'docker' / 'cvat'}:/function:ro",
                           "--env", "DEVICE=cpu", "--env", "LOG_FORMAT=text", image, "python", "-c", CVAT_CALL],
                          input=json.dumps(payload), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, f"CVAT handler in the image failed: {done.stderr[-3000:]}"
    answer = json.loads(done.stdout.strip().splitlines()[-1])
    assert answer["status"] == 200, answer
    mask = (np.asarray(answer["body"]["mask"]) > 127).astype(np.uint8)
    expected = predictor.predict(rgb, [Click(float(x), float(y), True)]).mask  # CVAT points: pixel coordinates
    agreement = iou(mask, expected)
    assert agreement >= SAME_MASK_IOU, f"the CVAT handler's mask differs from the library's (IoU {agreement:.4f})"
    return f"CVAT handler in the image: HTTP 200, IoU {agreement:.4f} with the library's mask"


# --------------------------------------------------------------------------- main
def start_stack(stack: Stack, specs: dict[str, ServiceSpec], redis_port: int, web_port: int) -> str:
    """Start every service; returns the web process's URL."""
    redis_spec = specs["redis"]
    stack.start(redis_spec, {}, command=[*redis_spec.command, "--port", str(redis_port), "--bind", "127.0.0.1"])
    redis_url = f"redis://redis:{redis_port}/0"
    for name in ("web", "inference-worker", "training-worker", "scheduler"):
        env = {"REDIS_URL": redis_url}
        if name == "web":
            env["PORT"] = str(web_port)
        stack.start(specs[name], env)
    return f"http://127.0.0.1:{web_port}"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runtime", choices=sorted(RUNTIME_OPTIONS), required=True)
    parser.add_argument("--image", default="fcanet-backend:cpu", help="the built CPU image")
    parser.add_argument("--cvat-image", help="the CPU image with nuclio-sdk (default: skip the CVAT check)")
    parser.add_argument("--shared", type=Path, default=Path(os.environ.get("FCANET_SHARED", REPO_ROOT.parent / "shared")))
    args = parser.parse_args(argv)

    sample = next(s for s in load_samples(args.shared / "data" / "grabcut") if s.name == IMAGE_NAME)
    predictor = Predictor(load_model("default", "cpu"), device="cpu", sis=True)
    files = Path(sample.image_path).parent
    server, files_url = serve_files(files)
    image_url = f"{files_url}/{Path(sample.image_path).name}"
    environ = {**os.environ, "LABEL_STUDIO_URL": files_url, "LOG_FORMAT": "text"}
    specs = service_specs(load_compose(), environ)
    for spec in specs.values():
        if spec.name != "redis":
            spec.image = args.image
    stack = Stack(args.runtime, f"fcanet-test-{uuid.uuid4().hex[:6]}")
    started = time.monotonic()
    try:
        url = start_stack(stack, specs, free_port(), free_port())
        results = [check_health(url)]
        results[0] += f" ({time.monotonic() - started:.1f} s after the containers were started)"
        print(f"ok: {results[-1]}", flush=True)
        for check in (lambda: check_click(url, args.shared / "reference", image_url, sample, predictor),
                      lambda: check_webhook_survives_restart(stack, url, webhook_body(args.shared / "reference",
                                                                                     image_url, sample))):
            results.append(check())
            print(f"ok: {results[-1]}", flush=True)
        if args.cvat_image:
            print(f"ok: {check_cvat(args.runtime, args.cvat_image, sample, predictor)}", flush=True)
    except (AssertionError, RuntimeError) as exc:
        print(f"FAILED: {exc}", file=sys.stderr)
        for name in stack.containers:
            print(f"--- {name} log ---\n{stack.logs(name)}", file=sys.stderr)
        return 1
    finally:
        stack.close()
        server.shutdown()
    print("all container checks passed")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
