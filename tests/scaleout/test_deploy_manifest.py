"""deploy/rayservice.yaml checked offline (no Kubernetes here): the YAML parses, its serve config
is one Ray Serve accepts, its import path and args build embedserve's real application with the
plan they say, and the cluster it asks for can place that plan. Not checked: the KubeRay CRD schema
of the RayService itself, the image build, and a real apply (README "Deploying on Kubernetes")."""

from __future__ import annotations

import importlib
import re
from pathlib import Path
from typing import Any

import pytest
from raykit import has_ray
from servicekit import require

DEPLOY = Path(__file__).parents[2] / "deploy"


@pytest.fixture(scope="module")
def manifest() -> dict[str, Any]:
    require(has_ray(), "the [ray] extra (pip install -e '.[ray]')")
    import yaml

    return yaml.safe_load((DEPLOY / "rayservice.yaml").read_text())


@pytest.fixture(scope="module")
def serve_config(manifest: dict[str, Any]) -> Any:
    import yaml
    from ray.serve.schema import ServeDeploySchema

    # KubeRay hands serveConfigV2 to Serve's REST API, which validates it with this schema
    return ServeDeploySchema.model_validate(yaml.safe_load(manifest["spec"]["serveConfigV2"]))


def _cpus(value: str) -> float:
    return float(value[:-1]) / 1000 if value.endswith("m") else float(value)


def test_the_manifest_is_a_rayservice_for_the_image_the_dockerfile_builds(manifest: dict[str, Any]) -> None:
    import ray

    assert manifest["apiVersion"] == "ray.io/v1" and manifest["kind"] == "RayService"
    cluster = manifest["spec"]["rayClusterConfig"]
    base = re.search(r"^FROM rayproject/ray:([\d.]+)-", (DEPLOY / "Dockerfile").read_text(), re.M)
    assert base is not None
    # the image is the cluster: its Ray, the one KubeRay is told, and the one tested here agree
    assert cluster["rayVersion"] == base.group(1) == ray.__version__
    images = {c["image"] for c in cluster["headGroupSpec"]["template"]["spec"]["containers"]}
    for group in cluster["workerGroupSpecs"]:
        images |= {c["image"] for c in group["template"]["spec"]["containers"]}
    assert len(images) == 1
    # the port-forward line in the header names the Service KubeRay creates: <name>-serve-svc
    assert f"svc/{manifest['metadata']['name']}-serve-svc" in (DEPLOY / "rayservice.yaml").read_text()


def test_the_serve_config_builds_the_real_application_with_its_args(
    serve_config: Any, manifest: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from ray.serve._private.build_app import build_app

    from embedserve.ray.app import Replica, app_builder

    assert serve_config.http_options.port == 8000
    head = manifest["spec"]["rayClusterConfig"]["headGroupSpec"]["template"]["spec"]["containers"][0]
    assert {"containerPort": 8000, "name": "serve"} in head["ports"]
    (app,) = serve_config.applications
    module, attr = app.import_path.split(":")
    builder = getattr(importlib.import_module(module), attr)
    assert builder is app_builder  # the import path resolves to the real builder
    monkeypatch.setenv("EMBEDSERVE_HOME", str(tmp_path))
    monkeypatch.delenv("EMBEDSERVE_DATABASE_URL", raising=False)
    built = build_app(builder(app.args), name=app.name)
    deployments = {d.name: d for d in built.deployments}
    assert set(deployments) == {"ingress", "replica", "board"}
    assert built.ingress_deployment_name == "ingress"
    replica = deployments["replica"]
    scaling = replica._deployment_config.autoscaling_config
    low, high = (int(x) for x in str(app.args["autoscale"]).split(":"))
    assert (scaling.min_replicas, scaling.max_replicas) == (low, high)
    assert scaling.target_ongoing_requests == app.args["autoscale_target"]
    assert scaling.upscale_delay_s == app.args["upscale_delay"]
    assert scaling.downscale_delay_s == app.args["downscale_delay"]
    assert scaling.look_back_period_s == app.args["autoscale_window"]
    assert replica.ray_actor_options["num_cpus"] == app.args["threads"]
    assert replica.func_or_class is Replica
    assert replica.init_args[2] == app.args["threads"]  # engine threads = the CPUs reserved
    assert replica.init_args[4] == (app.args["pull"],)
    assert deployments["ingress"]._deployment_config.num_replicas == app.args["ingress"]
    assert deployments["ingress"].ray_actor_options["num_cpus"] == 0
    # no shared database in the manifest: the collection routes refuse, with the advice
    assert "EMBEDSERVE_DATABASE_URL" in deployments["ingress"].init_args[4]


def test_the_cluster_can_place_the_plan(serve_config: Any, manifest: dict[str, Any]) -> None:
    (app,) = serve_config.applications
    low, high = (int(x) for x in str(app.args["autoscale"]).split(":"))
    threads = int(app.args["threads"])
    workers = manifest["spec"]["rayClusterConfig"]["workerGroupSpecs"]
    head = manifest["spec"]["rayClusterConfig"]["headGroupSpec"]
    assert head["rayStartParams"]["num-cpus"] == "0"  # replicas never land on the head
    per_worker = [_cpus(g["template"]["spec"]["containers"][0]["resources"]["limits"]["cpu"]) for g in workers]
    # the minimum fits the workers that start with the cluster; the maximum fits the most KubeRay adds
    assert low * threads <= sum(c * g["replicas"] for c, g in zip(per_worker, workers))
    assert high * threads <= sum(c * g["maxReplicas"] for c, g in zip(per_worker, workers))
    assert all(c >= threads for c in per_worker)  # one replica fits on one worker
    assert manifest["spec"]["rayClusterConfig"]["enableInTreeAutoscaling"] is True


def test_unknown_builder_args_are_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    require(has_ray(), "the [ray] extra")
    from embedserve.ray.app import app_builder

    monkeypatch.setenv("EMBEDSERVE_HOME", str(tmp_path))
    with pytest.raises(ValueError, match="unknown embedserve app_builder args \\['thread'\\]"):
        app_builder({"replicas": 2, "thread": 2})
