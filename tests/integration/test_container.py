"""deploy/Dockerfile for real: podman builds the image on a locally bootstrapped Debian base and
runs it as Kubernetes would with `readOnlyRootFilesystem`, a non-root UID, no capabilities and
no privilege escalation; then SIGTERM under load must drain and exit 0 within the grace period.

No image registry is reachable here and the build cannot download from PyPI (TLS goes through a
proxy whose CA the image does not trust), so the test builds the way docs/container.md describes
for offline builds: the base from `debootstrap` + `podman import` (kept, as
localhost/fastinfer-base:bookworm), the locked wheels downloaded on the host into
deploy/build/wheels (git-ignored; re-downloaded when requirements/runtime.lock changes), then
`podman build --build-arg PIP_NO_INDEX=1`. The first run takes a few minutes (podman, debootstrap,
wheels); later runs reuse the base, the wheels and podman's layer cache.

It needs root (debootstrap, rootful podman) and installs podman and debootstrap from Debian when
they are missing; where it cannot, it is skipped with one line saying what it needs (a failure in
CI: tests/integration/debian.py). Where podman's default runtime cannot start a container (crun
cannot set rlimits on some hosts), the project's tests/integration/containers.conf (runc, explicit
ulimits) is used: detected by trying the default first, or chosen with
FASTINFER_TEST_CONTAINERS_CONF=<path> or =default (a CONTAINERS_CONF already set is kept).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx2 as httpx
import pytest
import yaml

from tests.conftest import CAR, REPO, TITANIC
from tests.integration.debian import apt_install, unavailable
from tests.integration.server import free_port

pytestmark = [pytest.mark.slow, pytest.mark.container, pytest.mark.timeout(1200)]

BASE_IMAGE = "localhost/fastinfer-base:bookworm"
PACKAGES = [
    "podman", "buildah", "runc", "uidmap", "slirp4netns", "containernetworking-plugins",
    "fuse-overlayfs", "debootstrap",
]  # fmt: skip
RUNC_CONF = Path(__file__).with_name("containers.conf")  # where crun cannot set rlimits
WHEELHOUSE = REPO / "deploy" / "build" / "wheels"
LOCK = REPO / "requirements" / "runtime.lock"
UID = 10001
GRACE_S = 30  # the orchestrator's grace period: > drain delay + FASTINFER_DRAIN_TIMEOUT_S (25)
DRAIN_DELAY_S = 2.0  # time for a load balancer to see /readyz 503 and stop sending


_containers_conf: list[str] = []  # the CONTAINERS_CONF chosen by _choose_runtime ("": default)


def _podman_env() -> dict[str, str]:
    env = dict(os.environ)
    if _containers_conf and _containers_conf[0]:
        env["CONTAINERS_CONF"] = _containers_conf[0]
    return env


def _choose_runtime() -> None:
    """podman's own configuration where it can start a container, else the project's runc one."""
    if _containers_conf:
        return
    setting = os.environ.get("FASTINFER_TEST_CONTAINERS_CONF", "").strip()
    if setting or os.environ.get("CONTAINERS_CONF"):
        chosen = "" if setting in {"", "default"} else str(Path(setting).resolve())
        _containers_conf.append(chosen)  # "" keeps the environment's CONTAINERS_CONF, if any
        return
    tried = {}
    for candidate in ("", str(RUNC_CONF)):
        env = dict(os.environ, **({"CONTAINERS_CONF": candidate} if candidate else {}))
        probe = subprocess.run(
            ["podman", "run", "--rm", BASE_IMAGE, "true"],
            env=env, capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip
        if probe.returncode == 0:
            _containers_conf.append(candidate)
            return
        tried[candidate or "podman's default"] = probe.stderr.strip()
    raise AssertionError(f"podman cannot start a container with any configuration: {tried}")


def podman(
    *args: str, check: bool = True, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        ["podman", *args],
        env=_podman_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if check and result.returncode != 0:
        raise AssertionError(f"podman {' '.join(args)}: {result.returncode}\n{result.stderr}")
    return result


@contextlib.contextmanager
def _machine_lock() -> Iterator[None]:
    """One preparation (packages, base image, wheelhouse) at a time on this machine."""
    with Path(tempfile.gettempdir(), "fastinfer-container-test.lock").open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _install_podman() -> None:
    if os.geteuid() != 0:
        unavailable("the container test needs root (debootstrap, rootful podman): run it as root")
    if all(shutil.which(tool) for tool in ("podman", "runc", "debootstrap")):
        return
    for package in PACKAGES:
        apt_install(package, needed_for="the container test")


def _bootstrap_base() -> None:
    """A minimal Debian bookworm with python3 and venv, as a local image (no registry here)."""
    if podman("image", "exists", BASE_IMAGE, check=False).returncode == 0:
        return
    with tempfile.TemporaryDirectory(prefix="fastinfer-rootfs-") as scratch:
        rootfs = Path(scratch) / "rootfs"
        subprocess.run(
            [
                "debootstrap",
                "--variant=minbase",
                "--include=python3-minimal,python3,python3-venv",
                "bookworm",
                str(rootfs),
                "http://deb.debian.org/debian",
            ],
            capture_output=True,
            check=True,
            timeout=900,
        )
        for cache in ("var/cache/apt/archives", "var/lib/apt/lists"):  # 100 MB of no use
            for entry in (rootfs / cache).glob("*"):
                if entry.is_file():
                    entry.unlink()
        tar = subprocess.Popen(["tar", "-C", str(rootfs), "-c", "."], stdout=subprocess.PIPE)
        imported = subprocess.run(
            ["podman", "import", "--change", 'CMD ["python3"]', "-", BASE_IMAGE],
            stdin=tar.stdout,
            env=_podman_env(),
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        assert tar.stdout is not None
        tar.stdout.close()
        assert tar.wait() == 0 and imported.returncode == 0, imported.stderr


def _fill_wheelhouse() -> None:
    """The locked wheels (for the base image's Python) plus the project's build backend."""
    stamp = WHEELHOUSE.parent / "wheels.sha256"
    digest = hashlib.sha256(LOCK.read_bytes()).hexdigest()
    if stamp.is_file() and stamp.read_text().strip() == digest:
        return
    version = "import sys; print(f'{sys.version_info[0]}.{sys.version_info[1]}')"
    python = podman("run", "--rm", BASE_IMAGE, "python3", "-c", version).stdout.strip()
    download = [
        sys.executable, "-m", "pip", "download", "--quiet", "--disable-pip-version-check",
        "--only-binary=:all:", "--python-version", python, "--dest", str(WHEELHOUSE),
    ]  # fmt: skip
    WHEELHOUSE.mkdir(parents=True, exist_ok=True)
    subprocess.run([*download, "--require-hashes", "-r", str(LOCK)], check=True, timeout=600)
    subprocess.run([*download, "setuptools>=69", "wheel"], check=True, timeout=300)
    stamp.write_text(digest + "\n")


def _ensure_models() -> None:
    """The example artefacts the image bakes in are committed (never retrained here)."""
    for example in (TITANIC, CAR):
        for name in ("model.yaml", "model.joblib", "reference.json"):
            path = example / name
            assert path.is_file(), f"{path} is missing: restore it with `git checkout -- {path}`"


def _git_revision() -> str:
    result = subprocess.run(
        ["git", "rev-parse", "--short=12", "HEAD"], cwd=REPO, capture_output=True, text=True
    )
    return result.stdout.strip() or "unknown"


@dataclass
class Container:
    name: str
    image: str
    url: str
    health_url: str
    revision: str
    timings: dict[str, float] = field(default_factory=dict)

    def logs(self) -> str:
        result = podman("logs", self.name, check=False)
        return result.stdout + result.stderr

    def state(self) -> dict[str, Any]:
        state: dict[str, Any] = json.loads(podman("inspect", self.name).stdout)[0]["State"]
        return state


def _wait_ready(container: Container, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while True:
        with contextlib.suppress(httpx.TransportError):
            urls = (container.health_url, container.url)  # every worker, then the one reached
            if all(httpx.get(f"{url}/readyz", timeout=2).status_code == 200 for url in urls):
                return
        if not container.state()["Running"]:
            raise AssertionError(f"the container exited:\n{container.logs()}")
        if time.monotonic() > deadline:
            raise AssertionError(f"not ready in {timeout} s:\n{container.logs()}")
        time.sleep(0.2)


@pytest.fixture(scope="module")
def container() -> Iterator[Container]:
    started = time.monotonic()
    with _machine_lock():
        _install_podman()
        _bootstrap_base()
        _choose_runtime()
        _fill_wheelhouse()
    _ensure_models()
    prepared = time.monotonic()
    tag = uuid.uuid4().hex[:12]
    revision = _git_revision()
    image = f"localhost/fastinfer-test:{tag}"
    built = podman(
        "build", "--format", "docker",  # OCI images have no HEALTHCHECK
        "--file", str(REPO / "deploy" / "Dockerfile"),
        "--build-arg", f"BASE_IMAGE={BASE_IMAGE}",
        "--build-arg", "PIP_NO_INDEX=1",
        "--build-arg", f"GIT_REVISION={revision}",
        "--tag", image, str(REPO),
        check=False, timeout=900,
    )  # fmt: skip
    assert built.returncode == 0, built.stdout[-5000:] + built.stderr[-5000:]
    name = f"fastinfer-test-{tag}"
    port, health_port = free_port(), free_port()
    container = Container(
        name, image, f"http://127.0.0.1:{port}", f"http://127.0.0.1:{health_port}", revision
    )
    try:
        podman(
            "run", "--detach", "--name", name,
            # readOnlyRootFilesystem with an emptyDir on /tmp (not podman's own extra tmpfs)
            "--read-only", "--read-only-tmpfs=false", "--tmpfs", "/tmp",
            "--user", f"{UID}:{UID}", "--cap-drop", "ALL",
            "--security-opt", "no-new-privileges",
            "--publish", f"127.0.0.1:{port}:8000", "--publish", f"127.0.0.1:{health_port}:8001",
            "--env", f"FASTINFER_DRAIN_DELAY_S={DRAIN_DELAY_S}",
            image,
        )  # fmt: skip
        built_at = time.monotonic()
        _wait_ready(container)
        container.timings = {
            "prepare_s": prepared - started,
            "build_s": built_at - prepared,
            "ready_s": time.monotonic() - built_at,
        }
        yield container
    finally:
        podman("rm", "--force", "--time", "0", name, check=False)
        podman("rmi", "--force", image, check=False)  # the base and the layer cache stay


def test_image_runs_as_a_fixed_non_root_user_with_a_healthcheck(container: Container) -> None:
    inspected = json.loads(podman("image", "inspect", container.image).stdout)[0]
    config = inspected["Config"]
    assert config["User"] == f"{UID}:{UID}"
    assert config["Entrypoint"] == ["fastinfer", "serve"]  # exec form: PID 1 gets SIGTERM
    assert config["StopSignal"] == "SIGTERM"
    assert {"8000/tcp", "8001/tcp"} <= set(config["ExposedPorts"])
    assert config["Labels"]["org.opencontainers.image.revision"] == container.revision
    assert inspected["Healthcheck"]["Test"][:2] == ["CMD", "python3"]
    # The HEALTHCHECK itself, once (podman runs it from systemd timers, absent here).
    checked = podman("healthcheck", "run", container.name, check=False)
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_ready_on_the_serving_and_the_health_port(container: Container) -> None:
    assert httpx.get(f"{container.health_url}/readyz", timeout=5).status_code == 200
    ready = httpx.get(f"{container.url}/readyz", timeout=5)
    assert ready.status_code == 200
    assert set(ready.json()["models"]) == {"titanic", "car_evaluation"}
    assert httpx.get(f"{container.health_url}/livez", timeout=5).status_code == 200


@pytest.mark.parametrize("example", [TITANIC, CAR], ids=lambda path: path.name)
def test_baked_in_example_predicts_its_expected_output(container: Container, example: Path) -> None:
    spec = yaml.safe_load((example / "model.yaml").read_text())
    response = httpx.post(
        f"{container.url}/v1/models/{spec['name']}/predict",
        json={"inputs": [spec["example"]]},
        timeout=10,
    )
    assert response.status_code == 200, response.text
    assert response.json()["predictions"][0]["label"] == spec["expected_example_output"]


def test_root_filesystem_is_read_only_and_the_process_unprivileged(container: Container) -> None:
    probe = (
        "import os, pathlib\n"
        "try:\n"
        "    pathlib.Path('/app/written').write_text('x')\n"
        "    print('app-writable')\n"
        "except OSError as exc:\n"
        "    print('app-errno', exc.errno)\n"
        "pathlib.Path('/tmp/written').write_text('x')\n"
        "status = dict(line.split(':', 1) for line in open('/proc/self/status'))\n"
        "print('uid', os.getuid(), os.getgid())\n"
        "print('caps', status['CapEff'].strip(), status['CapBnd'].strip())\n"
        "print('nnp', status['NoNewPrivs'].strip())\n"
        "print('shm', os.access('/dev/shm', os.W_OK))\n"
    )
    result = podman("exec", container.name, "python3", "-c", probe)
    lines = dict(line.split(" ", 1) for line in result.stdout.strip().splitlines())
    assert lines["app-errno"] == "30"  # EROFS
    assert lines["uid"] == f"{UID} {UID}"
    assert lines["caps"] == "0000000000000000 0000000000000000"
    assert lines["nnp"] == "1"
    assert lines["shm"] == "True"  # podman and Kubernetes give /dev/shm; else /tmp is used
    assert "/dev/shm/fastinfer-run-" in container.logs()


@dataclass
class LoadReport:
    statuses: Counter[int] = field(default_factory=Counter)
    errors: list[str] = field(default_factory=list)
    sent_after_sigterm: int = 0


def _row_load(
    url: str,
    row: dict[str, Any],
    report: LoadReport,
    lock: threading.Lock,
    stop: threading.Event,
    sigterm_at: list[float],
) -> None:
    # A new connection per request (no keep-alive): the drain closes idle connections, and a
    # request sent on one at that moment is a client-side race, not a request the server took.
    with httpx.Client(timeout=30, limits=httpx.Limits(max_keepalive_connections=0)) as client:
        while not stop.is_set():
            after = bool(sigterm_at)
            try:
                status = client.post(url, json={"inputs": [row]}).status_code
            except httpx.TransportError as exc:
                with lock:
                    report.errors.append(f"{type(exc).__name__}: {exc}")
                continue
            with lock:
                report.statuses[status] += 1
                report.sent_after_sigterm += after


def test_sigterm_under_load_answers_every_accepted_request_and_exits_0(
    container: Container,
) -> None:
    """16 clients post predictions back to back. SIGTERM comes from `podman stop`, as from an
    orchestrator; the clients stop sending when /readyz turns 503, as a load balancer would
    (FASTINFER_DRAIN_DELAY_S keeps the server accepting meanwhile). Every request they sent
    must get a 200, and the container must exit 0 well within the grace period."""
    spec = yaml.safe_load((TITANIC / "model.yaml").read_text())
    url = f"{container.url}/v1/models/titanic/predict"
    report, lock = LoadReport(), threading.Lock()
    stop = threading.Event()
    sigterm_at: list[float] = []  # when `podman stop` was started
    readiness: list[int] = []

    def balancer() -> None:  # the load balancer's readiness probe, every 20 ms
        while not stop.is_set():
            with contextlib.suppress(httpx.TransportError):
                status = httpx.get(f"{container.health_url}/readyz", timeout=2).status_code
                readiness.append(status)
                if sigterm_at and status == 503:
                    stop.set()
            time.sleep(0.02)

    with ThreadPoolExecutor(17) as pool:
        clients = [
            pool.submit(_row_load, url, spec["example"], report, lock, stop, sigterm_at)
            for _ in range(16)
        ]
        probe = pool.submit(balancer)
        time.sleep(3)
        with lock:
            before = sum(report.statuses.values())
        sigterm_at.append(time.monotonic())
        stopping = subprocess.Popen(
            ["podman", "stop", "--time", str(GRACE_S), container.name],
            env=_podman_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        stop.wait(timeout=10)
        stop.set()
        for future in [*clients, probe]:
            future.result(timeout=60)
        _, stop_errors = stopping.communicate(timeout=GRACE_S + 30)
        stopped_in = time.monotonic() - sigterm_at[0]
    state = container.state()
    logs = container.logs()
    assert before > 50, f"too little load before SIGTERM: {report}\n{logs[-3000:]}"
    assert report.errors == [], f"{report.errors[:10]} of {report}\n{logs[-3000:]}"
    assert set(report.statuses) == {200}, report
    assert report.sent_after_sigterm > 0, report  # SIGTERM did come during load
    assert 503 in readiness  # /readyz told the balancer at once
    assert stopping.returncode == 0, stop_errors
    assert not state["Running"]
    assert state["ExitCode"] == 0, logs[-3000:]
    assert stopped_in < GRACE_S, stopped_in  # drained, not killed at the end of the grace
    assert '"event":"draining"' in logs
    assert '"failed_exits":0' in logs
    print(f"container timings: {container.timings}, stop: {stopped_in:.2f} s, load: {report}")
