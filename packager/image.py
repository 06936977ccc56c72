"""Build the engine's container image with podman, and push it to a registry.

Nothing is fetched from Docker Hub or a package index during the build: the base image is a Debian bookworm
root filesystem made by mmdebstrap from a Debian mirror, and every Python package comes from a wheelhouse
built here on the host (`pip wheel`) and installed with `--no-index`. The base image and the wheelhouse are
cached (podman's image store; CACHE/engine-context/deps), so a rebuild after a code change only redoes the last
layers. The Dockerfile and the joey wheel come from the checkout or, installed, from the package itself
(packager/distwheel.py). See docs/container.md.

    packager image build [--arch amd64|arm64] [--accel none|cuda|openvino] [--tag IMAGE] [--context DIR]
    packager image push [--arch ...] [--accel ...] [--tag IMAGE] (--registry HOST/NS | DEST) [--plain-http]

A variant (another platform, an accelerator) is tagged apart, joey-engine:<version>-arm64, -cuda, -arm64-cuda
(joey.names.engine_image), built on its own onnxruntime wheel set (ORT_WHEELS) in a context of its own.
"""
from __future__ import annotations

import fcntl
import hashlib
import importlib.metadata
import logging
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from importlib import resources
from pathlib import Path

from joey import __version__, envvars
from joey.descriptor import Descriptor
from joey.errors import ToolFailed
from joey.fsutil import write_atomic
from joey.names import DEFAULT_ACCEL, engine_image, engine_variant, image_platform, parse
from joey.registry import Registry
from packager import sbom
from packager.artifact import created_timestamp, git_provenance
from packager.distwheel import build_project_wheel, source_checkout, wheel_inputs

log = logging.getLogger("joey.image")

# Package data of `engine` (pyproject's [tool.setuptools.package-data]): there in a checkout and in a wheel.
DOCKERFILE = Path(str(resources.files("engine") / "Dockerfile"))
# bookworm's python3: the wheelhouse is built by this interpreter on the host, so its cp3XX wheels must match.
BASE_PYTHON = (3, 11)

# The base's Debian sources: the release plus its updates and security fixes.
DEBIAN_SOURCES = (
    "deb http://deb.debian.org/debian bookworm main",
    "deb http://deb.debian.org/debian bookworm-updates main",
    "deb http://deb.debian.org/debian-security bookworm-security main",
)
# `essential` rather than `apt`: nothing installs packages in the image, so apt would be dead weight
# (160 MB instead of 220 MB). Docs, man pages and translations are left out for the same reason;
# copyright files stay.
MMDEBSTRAP_ARGS = (
    "--variant=essential",
    # libstdc++6: the manylinux wheels (numpy, onnxruntime, pyarrow) expect it from the system.
    "--include=python3,python3-venv,ca-certificates,libstdc++6",
    "--dpkgopt=path-exclude=/usr/share/man/*",
    "--dpkgopt=path-exclude=/usr/share/info/*",
    "--dpkgopt=path-exclude=/usr/share/locale/*",
    "--dpkgopt=path-exclude=/usr/share/doc/*",
    "--dpkgopt=path-include=/usr/share/doc/*/copyright",
)


# Each platform's machine name (uname -m, qemu-user's and binfmt_misc's name for it).
MACHINES = {"amd64": "x86_64", "arm64": "aarch64"}


def host_platform() -> str:
    """This host's architecture as an image platform's (amd64, arm64)."""
    machine = platform.machine()
    return next((p for p, m in MACHINES.items() if m == machine), machine)


def _platform_args(arch: str, *args: str) -> tuple[str, ...]:
    """`args` for a tool building for another platform than the host's; nothing for the host's own."""
    return args if arch != host_platform() else ()


def _base_recipe(arch: str) -> tuple[str, ...]:
    """mmdebstrap's options for `arch`'s base (mmdebstrap builds for the host's architecture by default)."""
    return (*MMDEBSTRAP_ARGS, *_platform_args(arch, f"--arch={arch}"))


def base_image_name(arch: str) -> str:
    """Named after what it is made of, so changing the recipe above makes a new base instead of reusing a stale
    one; another platform's base is another recipe."""
    return "localhost/bookworm-py:" + hashlib.sha256(
        "\n".join((*_base_recipe(arch), *DEBIAN_SOURCES)).encode()).hexdigest()[:12]


BASE_IMAGE = base_image_name(host_platform())
DEFAULT_TAG = engine_image(__version__, arch=host_platform())   # the build for this host, no accelerator

# What the engine imports, directly or through the kernel (joey/): a subset of pyproject's dependencies. The
# packager's onnx, Helm SDK, Jinja, YAML and rich and the Ops center's httpx stay out of the image (the
# import-linter contracts keep the engine off them); httptools and uvloop are the engine's HTTP parser and loop.
# Versions are pinned to the ones installed where the image is built, so the image runs what the tests here
# ran; the Dockerfile's import check fails the build when the engine starts needing something not listed.
ENGINE_REQUIREMENTS = (
    "cryptography",
    "httptools",
    "numpy",
    "onnxruntime",
    "oras",
    "orjson",
    "prometheus-client",
    "pyarrow",
    "pydantic",
    "requests",
    "starlette",
    "uvicorn",
    "uvloop",
)
# The onnxruntime wheel set of each accelerator's variant, at the version of the onnxruntime tested here.
# onnxruntime-gpu's extras bring CUDA 12 and cuDNN as NVIDIA's wheels (the engine preloads them, engine/providers.py):
# from the node the container needs only the driver (docker --gpus, the NVIDIA device plugin).
ORT_WHEELS = {"none": "onnxruntime", "cuda": "onnxruntime-gpu[cuda,cudnn]", "openvino": "onnxruntime-openvino"}
# A platform's wheels when it is not the host's: pip download for bookworm's glibc (2.36) and CPython 3.11.
WHEEL_PLATFORMS = {"amd64": "manylinux_2_36_x86_64", "arm64": "manylinux_2_36_aarch64"}
# Containers here cannot take podman's default ulimits (setrlimit fails): every podman call gets this.
CONTAINERS_CONF = "[containers]\ndefault_ulimits = []\n"


class ImageError(ToolFailed):
    """A step of building or pushing the engine image failed; the message carries the tool's last lines."""

    def __init__(self, step: str, detail: str, *, hint: str | None = None):
        self.step = step
        super().__init__(f"engine image: {step} failed:\n{detail}", hint=hint)


def cache_dir() -> Path:
    """$XDG_CACHE_HOME/joey (default ~/.cache/joey): containers.conf, the build context and its wheelhouse,
    the base image's tarball while it is imported."""
    base = os.environ.get(envvars.XDG_CACHE_HOME) or Path.home() / ".cache"
    path = Path(base) / "joey"
    path.mkdir(parents=True, exist_ok=True)
    return path


def podman_env() -> dict[str, str]:
    """The environment for podman: a containers.conf without default ulimits unless one is set already, and no
    DOCKER_CONFIG that holds no config.json (podman's push fails on it instead of using its own logins)."""
    env = dict(os.environ)
    docker_config = env.get("DOCKER_CONFIG")
    if docker_config and not (Path(docker_config) / "config.json").is_file():
        del env["DOCKER_CONFIG"]
    if envvars.CONTAINERS_CONF not in env:
        conf = cache_dir() / "containers.conf"
        if not conf.exists() or conf.read_text() != CONTAINERS_CONF:
            write_atomic(conf, CONTAINERS_CONF.encode())
        env[envvars.CONTAINERS_CONF] = str(conf)
    return env


def _tool(step: str, name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise ImageError(step, f"{name} is not installed",
                         hint="apt-get install -y podman runc mmdebstrap (see docs/container.md)")
    return path


def _run(step: str, cmd: list[str], *, env: dict[str, str] | None = None) -> str:
    """Run a tool to completion; its stdout, or ImageError with the tail of its output."""
    log.debug("running %s", " ".join(cmd))
    proc = subprocess.run([_tool(step, cmd[0]), *cmd[1:]], stdin=subprocess.DEVNULL, capture_output=True,
                          text=True, env=env)
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-40:])
        raise ImageError(step, f"{' '.join(cmd)} exited with {proc.returncode}\n{tail}")
    return proc.stdout


def podman(step: str, *args: str) -> str:
    return _run(step, ["podman", *args], env=podman_env())


def image_exists(ref: str) -> bool:
    return subprocess.run([_tool("base image", "podman"), "image", "exists", ref], env=podman_env()).returncode == 0


def ensure_base_image(name: str = BASE_IMAGE, arch: str | None = None, *, rebuild: bool = False) -> str:
    """The Debian bookworm + python3 base for `arch`, made with mmdebstrap and imported into podman unless it
    exists."""
    if image_exists(name) and not rebuild:
        log.info("base image %s: cached", name)
        return name
    started = time.monotonic()
    arch = arch or host_platform()
    with tempfile.TemporaryDirectory(dir=cache_dir(), prefix="base-") as tmp:
        tar = Path(tmp) / "base.tar"
        _run("base image (mmdebstrap)", ["mmdebstrap", *_base_recipe(arch), "bookworm", str(tar), *DEBIAN_SOURCES])
        podman("base image (podman import)", "import", "--quiet", *_platform_args(arch, "--arch", arch), str(tar),
               name)
    log.info("base image %s: built in %.1f s", name, time.monotonic() - started)
    return name


def _installed_pins() -> dict[str, str]:
    """Every distribution installed here, by normalised name, except Joey itself."""
    pins = {}
    for dist in importlib.metadata.distributions():
        name = dist.metadata["Name"]
        if name:
            pins[re.sub(r"[-_.]+", "-", name).lower()] = dist.version
    pins.pop("joey", None)
    return pins


def engine_requirements(accel: str = DEFAULT_ACCEL) -> tuple[str, str]:
    """(requirements, constraints): the engine's requirements pinned to the installed versions (onnxruntime as
    the accelerator's wheel set, ORT_WHEELS), and a pin for every other installed distribution, so transitive
    dependencies resolve to the tested versions too."""
    pins = _installed_pins()
    missing = [r for r in ENGINE_REQUIREMENTS if r not in pins]
    if missing:
        raise ImageError("wheelhouse", f"not installed here: {', '.join(missing)}",
                         hint="run from the project's venv (pip install -e .)")
    requirements = "".join(f"{ORT_WHEELS[accel] if r == 'onnxruntime' else r}=={pins[r]}\n"
                           for r in ENGINE_REQUIREMENTS)
    constraints = "".join(f"{n}=={v}\n" for n, v in sorted(pins.items()))
    return requirements, constraints


def wheel_command(wheel_dir: Path, arch: str) -> list[str]:
    """The pip command that fills `wheel_dir` from its requirements.txt and constraints.txt: `pip wheel` for
    the host's platform, `pip download` of the platform's ready-made wheels for another one."""
    # --only-binary: bookworm's image has no compiler; every wheel must be ready-made (cp311 manylinux).
    files = ["--only-binary=:all:", "--requirement", str(wheel_dir / "requirements.txt"),
             "--constraint", str(wheel_dir / "constraints.txt")]
    if arch == host_platform():
        return [sys.executable, "-m", "pip", "wheel", "--quiet", "--wheel-dir", str(wheel_dir), *files]
    return [sys.executable, "-m", "pip", "download", "--quiet", "--dest", str(wheel_dir),
            "--platform", WHEEL_PLATFORMS[arch], "--implementation", "cp", "--abi", "cp311",
            "--python-version", "".join(map(str, BASE_PYTHON)), *files]


def ensure_wheelhouse(dest: Path, arch: str | None = None, accel: str = DEFAULT_ACCEL) -> Path:
    """Fill `dest` with the engine's dependency wheels (for `arch`, on `accel`'s onnxruntime) and
    requirements.txt, unless it already holds the ones the current pins call for. Built in a sibling directory
    and renamed, so never half-written."""
    if sys.version_info[:2] != BASE_PYTHON:
        raise ImageError("wheelhouse", f"this is Python {sys.version_info.major}.{sys.version_info.minor}, the "
                         f"image's is {BASE_PYTHON[0]}.{BASE_PYTHON[1]}: binary wheels built here would not install",
                         hint="build the image from a Python 3.11 venv")
    arch = arch or host_platform()
    requirements, constraints = engine_requirements(accel)
    key = hashlib.sha256(f"{sys.version_info[:2]}\n{arch}\n{requirements}\n{constraints}".encode()).hexdigest()
    stamp = dest / ".key"
    if stamp.exists() and stamp.read_text() == key:
        log.info("wheelhouse %s: cached", dest)
        return dest
    started = time.monotonic()
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=dest.parent, prefix=f".{dest.name}-"))
    tmp.chmod(0o755)
    try:
        (tmp / "requirements.txt").write_text(requirements)
        (tmp / "constraints.txt").write_text(constraints)
        _run("wheelhouse (pip)", wheel_command(tmp, arch))
        (tmp / "constraints.txt").unlink()
        stamp_tmp = tmp / ".key"
        stamp_tmp.write_text(key)
        if dest.exists():
            shutil.rmtree(dest)
        os.replace(tmp, dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    log.info("wheelhouse %s: built in %.1f s", dest, time.monotonic() - started)
    return dest


def write_build_context(context: Path) -> Path:
    """Put the Dockerfile and app/ (the joey wheel) into `context`, from the checkout or the installed package;
    deps/ (the wheelhouse, ensure_wheelhouse) is the rest of what the build needs."""
    context.mkdir(parents=True, exist_ok=True)
    (context / "Dockerfile").write_bytes(DOCKERFILE.read_bytes())
    build_project_wheel(context / "app")
    return context


def build_engine_image(tag: str | None = None, *, context_dir: Path | None = None, base_image: str | None = None,
                       arch: str | None = None, accel: str = DEFAULT_ACCEL) -> str:
    """Build engine/Dockerfile for `arch` (default: the host's) on `accel`'s onnxruntime into the local podman
    image `tag` (default: the variant's, localhost/joey-engine:<version>[-arm64][-cuda]); returns the image ID.

    `context_dir` (default CACHE/engine-context, -<variant> for a variant) receives the Dockerfile, deps/ and
    app/; deps/ is reused while the pins hold. Another platform than the host's needs the host to run its
    binaries (qemu-user through binfmt_misc), for mmdebstrap and the RUN steps.
    """
    arch = image_platform(arch or host_platform())
    tag = tag or engine_image(__version__, arch=arch, accel=accel)
    base_image = base_image or base_image_name(arch)
    if arch != host_platform() and not Path(f"/proc/sys/fs/binfmt_misc/qemu-{MACHINES[arch]}").exists():
        raise ImageError("image build", f"this {host_platform()} host cannot run {arch} programs",
                         hint=f"apt-get install -y qemu-user-static binfmt-support, or build on an {arch} host")
    variant = engine_variant(arch, accel)
    context = context_dir or cache_dir() / ("engine-context" + (f"-{variant}" if variant else ""))
    context.mkdir(parents=True, exist_ok=True)
    # One build per context at a time: two would overwrite each other's app/ and deps/.
    with open(context.parent / f".{context.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        ensure_base_image(base_image, arch)
        ensure_wheelhouse(context / "deps", arch, accel)
        write_build_context(context)
        started = time.monotonic()
        previous = _image_id(tag)
        root = source_checkout()
        revision = git_provenance(root).get("revision", "unknown") if root else "unknown"
        created = created_timestamp([DOCKERFILE, *wheel_inputs()])
        # --format docker: the OCI image format has no HEALTHCHECK, podman would drop it.
        # --isolation chroot: RUN steps work without user namespaces or a runtime that may set rlimits.
        # --network host: no RUN step uses the network, and this needs no netavark/CNI setup.
        podman("image build", "build", "--format", "docker", "--isolation", "chroot", "--network", "host",
               *_platform_args(arch, "--platform", f"linux/{arch}"),
               "--layers", "--build-arg", f"BASE_IMAGE={base_image}", "--build-arg", f"VERSION={__version__}",
               "--build-arg", f"REVISION={revision}", "--build-arg", f"CREATED={created}",
               "--tag", tag, "--file", str(context / "Dockerfile"), str(context))
    image_id = _image_id(tag)
    # The image's SBOM, from the very wheels it installed; `push_engine_image` attaches it to the pushed image.
    write_atomic(sbom_path(image_id), sbom.engine_sbom([context / "deps", context / "app"], tag, created))
    if previous and previous != image_id:
        # The tag moved on: drop the image it leaves behind (and its private layers) unless something still
        # uses it, so that repeated builds do not pile up untagged images.
        subprocess.run([_tool("image build", "podman"), "rmi", previous], capture_output=True, env=podman_env())
    log.info("image %s (%s, %.0f MB): built in %.1f s", tag, image_id[:12], image_size(tag) / 1e6,
             time.monotonic() - started)
    return f"sha256:{image_id}"


def sbom_path(image_id: str) -> Path:
    """Where the SBOM of the local image `image_id` waits to be pushed with it."""
    return cache_dir() / "sboms" / f"{image_id.removeprefix('sha256:')}.cdx.json"


def _image_id(ref: str) -> str | None:
    if not image_exists(ref):
        return None
    return podman("image inspect", "image", "inspect", "--format", "{{.Id}}", ref).strip()


def image_size(tag: str) -> int:
    """Uncompressed size in bytes, as `podman images` shows it."""
    return int(podman("image inspect", "image", "inspect", "--format", "{{.Size}}", tag).strip())


def push_engine_image(tag: str, dest_ref: str, *, tls_verify: bool = False, creds: str | None = None) -> str:
    """Push local image `tag` to `dest_ref` (HOST[:PORT]/NS/engines/joey-engine:TAG); returns the manifest
    digest the registry stored. `creds` is USER:PASSWORD; without it podman's own login is used."""
    dest = dest_ref.removeprefix("docker://")
    with tempfile.TemporaryDirectory(prefix="joey-push-") as tmp:
        digest_file = Path(tmp) / "digest"
        args = ["push", "--quiet", f"--tls-verify={'true' if tls_verify else 'false'}",
                "--digestfile", str(digest_file)]
        if creds:
            args += ["--creds", creds]
        podman("push", *args, tag, f"docker://{dest}")
        digest = digest_file.read_text().strip()
    log.info("pushed %s to %s@%s", tag, dest, digest)
    image_id = _image_id(tag)
    if image_id and sbom_path(image_id).is_file():
        attach_image_sbom(dest, digest, sbom_path(image_id).read_bytes(), plain_http=not tls_verify, creds=creds)
    else:
        log.info("no SBOM for %s (built before SBOMs were made): none attached", tag)
    return digest


def attach_image_sbom(dest_ref: str, digest: str, document: bytes, *, plain_http: bool,
                      creds: str | None = None) -> str:
    """Attach the CycloneDX `document` to the image `digest` pushed to `dest_ref`; the referrer's digest."""
    ref = parse(dest_ref)
    username, _, password = (creds or "").partition(":")
    target = Registry(ref.host, plain_http=plain_http, username=username or None, password=password or None)
    raw, media_type, _ = target.resolve(ref.repository, digest)
    return sbom.attach_sbom(target, ref.repository, Descriptor(media_type, digest, len(raw)), document)


if __name__ == "__main__":   # the older spelling of `packager image build|push`
    from packager.cli import main

    sys.exit(main(["image", *sys.argv[1:]]))
