"""Engine image variants (another platform, an accelerator): their names, their build context's wheel set, the
variant a publish names for its deployment's arch and accel, and the chart's GPU scheduling. No variant is
built here: the cuda image is gigabytes."""
from __future__ import annotations

from pathlib import Path

import numpy
import onnxruntime
import pytest
from support.specs import one_step

from joey import __version__
from joey.names import engine_image, local_engine_image
from joey.registry import Registry
from packager import chart
from packager.image import ImageError, build_engine_image, engine_requirements, host_platform, wheel_command
from packager.publish import publish


@pytest.mark.parametrize("arch, accel, tag", [
    ("x86", "none", "0.4.0"), ("amd64", "none", "0.4.0"), ("arm", "none", "0.4.0-arm64"),
    ("x86", "cuda", "0.4.0-cuda"), ("arm64", "cuda", "0.4.0-arm64-cuda"), ("x86", "openvino", "0.4.0-openvino"),
])
def test_variants_are_tagged_apart(arch, accel, tag):
    registry = engine_image("0.4.0", host="registry.example.com", namespace="joey", arch=arch, accel=accel)
    assert registry == f"registry.example.com/joey/engines/joey-engine:{tag}"
    assert engine_image("0.4.0", arch=arch, accel=accel) == local_engine_image(registry) == \
        f"localhost/joey-engine:{tag}"


def test_the_cuda_context_names_an_onnxruntime_gpu_wheel_set(tmp_path):
    requirements, _ = engine_requirements("cuda")
    lines = requirements.splitlines()
    assert f"onnxruntime-gpu[cuda,cudnn]=={onnxruntime.__version__}" in lines
    assert not [line for line in lines if line.startswith("onnxruntime==")]
    assert f"onnxruntime=={onnxruntime.__version__}" in engine_requirements()[0].splitlines()
    assert f"numpy=={numpy.__version__}" in lines and "pyarrow==" in requirements

    native = wheel_command(tmp_path, host_platform())
    assert native[2:4] == ["pip", "wheel"] and "--only-binary=:all:" in native
    other = "arm64" if host_platform() == "amd64" else "amd64"
    foreign = wheel_command(tmp_path, other)
    assert foreign[2:4] == ["pip", "download"] and "--only-binary=:all:" in foreign
    assert foreign[foreign.index("--platform") + 1].startswith("manylinux_2_36_")
    assert foreign[foreign.index("--abi") + 1] == "cp311"


def test_another_platform_needs_a_host_that_runs_it(tmp_path):
    other = "arm64" if host_platform() == "amd64" else "amd64"
    machine = {"amd64": "x86_64", "arm64": "aarch64"}[other]
    if Path(f"/proc/sys/fs/binfmt_misc/qemu-{machine}").exists():
        pytest.skip(f"this host runs {other} programs")
    with pytest.raises(ImageError, match=f"cannot run {other} programs"):
        build_engine_image(arch=other, context_dir=tmp_path / "context")
    assert not (tmp_path / "context").exists()


@pytest.mark.parametrize("deployment, variant", [("{accel: cuda}", "-cuda"), ("{arch: arm}", "-arm64"),
                                                 ("{cpus: 1}", "")])
def test_publish_names_the_variant_of_its_deployment(deployment, variant, example_models, write_spec, registry,
                                                     tmp_path):
    spec = write_spec(one_step() + f"deployment: {deployment}\n")
    local = publish(spec, store=tmp_path / "store")
    assert local["engine_url"] == f"localhost/joey-engine:{__version__}{variant}"
    namespace = f"variant{variant.replace('-', '') or 'none'}"
    published = publish(spec, registry=f"{registry.host}/{namespace}", plain_http=True, with_chart=False)
    digest = Registry(registry.host, plain_http=True).resolve(f"{namespace}/engines/joey-engine",
                                                              f"{__version__}{variant}")[2]
    assert published["engine_url"] == f"{registry.host}/{namespace}/engines/joey-engine@{digest}"


def test_gpu_variants_land_on_gpu_nodes():
    base = {"image": {"repository": "registry.example.com/joey/engines/joey-engine", "tag": f"{__version__}-cuda"},
            "pipelineUrl": "registry.example.com/joey/pipelines/p:3b1c0d2e-5f1a-5b8e-9c4d-0a1b2c3d4e5f"}

    def pod(engine: dict, **extra) -> dict:
        values = {**base, "engine": {"cpus": 2, "memory": "2Gi", "gpus": 0, "arch": "x86", "accel": "none",
                                     **engine}, **extra}
        (deployment,) = [o for o in chart.render(chart.chart_source(), values, name="shop", namespace="edge")
                         if o["kind"] == "Deployment"]
        return deployment["spec"]["template"]["spec"]

    gpu = pod({"gpus": 1, "accel": "cuda"})
    assert gpu["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert gpu["nodeSelector"] == {"kubernetes.io/arch": "amd64", "nvidia.com/gpu.present": "true"}
    arm_gpu = pod({"gpus": 1, "accel": "cuda", "arch": "arm"}, nodeSelector={"nvidia.com/gpu.present": "yes"})
    assert arm_gpu["nodeSelector"] == {"kubernetes.io/arch": "arm64", "nvidia.com/gpu.present": "yes"}
    assert pod({"accel": "cuda"})["nodeSelector"] == {"kubernetes.io/arch": "amd64"}
