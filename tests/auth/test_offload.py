"""Local -> cloud offload with two real servers on loopback: the local one (no auth, --remote)
forwards NAME:cloud / NAME-cloud to the remote (auth on) with the key, answers and errors unchanged."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import httpx
import numpy as np
import ollama
import openai
import pytest
from authkit import auth_server
from serverkit import FakeLoader, FakeStore, serve, settings

from embedserve.server.app import create_app


def _local(remote_url: str, key: str | None) -> object:
    store = FakeStore(installed=("local-only",))
    cfg = replace(settings(), remote_url=remote_url, api_key=key)
    return create_app(cfg, loader=FakeLoader(store), store=store)


def test_cloud_models_are_forwarded_with_the_key(tmp_path: Path) -> None:
    with auth_server(tmp_path, installed=("fake", "other")) as remote:
        key = remote.key("pro", models=("fake",))
        remote.loader.store.catalogue = {"pullable:latest"}
        with serve(_local(remote.url, key)) as local:
            client = ollama.Client(host=local)
            direct = ollama.Client(host=remote.url, headers={"Authorization": f"Bearer {key}"})
            want = np.array(direct.embed(model="fake", input=["a b", "c"]).embeddings)
            for name in ("fake:cloud", "fake-cloud"):
                got = client.embed(model=name, input=["a b", "c"])
                assert np.allclose(np.array(got.embeddings), want)
            legacy = client.embeddings(model="fake:cloud", prompt="a b")
            assert len(legacy.embedding) == 32
            oa = openai.OpenAI(base_url=local + "/v1", api_key="unused", max_retries=0)
            assert len(oa.embeddings.create(model="fake:cloud", input="x").data) == 1
            assert client.embed(model="local-only", input="x").embeddings  # local stays local

            # errors pass through unchanged: the remote's 403 and 404
            with pytest.raises(ollama.ResponseError) as info:
                client.embed(model="other:cloud", input="x")
            assert info.value.status_code == 403
            assert info.value.error == "this key may not use model 'other:latest'"
            r = httpx.post(local + "/api/embed", json={"model": "fake:nope-cloud", "input": "x"})
            direct_r = httpx.post(
                remote.url + "/api/embed",
                json={"model": "fake:nope", "input": "x"},
                headers={"Authorization": f"Bearer {key}"},
            )
            assert (r.status_code, r.content) == (direct_r.status_code, direct_r.content)

            tags = client.list().models
            names = {m.model: m for m in tags}
            assert "local-only:latest" in names and "fake:cloud" in names
            raw = httpx.get(local + "/api/tags").json()["models"]
            cloud = next(m for m in raw if m["name"] == "fake:cloud")
            assert cloud["remote_host"] == remote.url and cloud["remote_model"] == "fake:latest"

        with serve(_local(remote.url, remote.key("admin"))) as local:
            lines = list(ollama.Client(host=local).pull("pullable:cloud", stream=True))
            statuses = [p.status for p in lines]
            assert statuses[0] == "pulling manifest" and statuses[-1] == "success"
            assert any(p.completed == 512 for p in lines)  # progress streamed through
            assert remote.loader.store.find("pullable") is not None


def test_a_wrong_key_or_a_dead_remote(tmp_path: Path) -> None:
    with auth_server(tmp_path) as remote:
        with serve(_local(remote.url, "esk_wrongwrongwrong")) as local:
            with pytest.raises(ollama.ResponseError) as info:
                ollama.Client(host=local).embed(model="fake:cloud", input="x")
            assert info.value.status_code == 401 and info.value.error == "unauthorized"
            oa = openai.OpenAI(base_url=local + "/v1", api_key="x", max_retries=0)
            with pytest.raises(openai.AuthenticationError) as oinfo:
                oa.embeddings.create(model="fake:cloud", input="x")
            assert oinfo.value.body["code"] == "invalid_api_key"
    with serve(_local(remote.url, "esk_x")) as local:  # the remote is gone now
        r = httpx.post(local + "/api/embed", json={"model": "fake:cloud", "input": "x"})
        assert r.status_code == 502 and "unreachable" in r.json()["error"]
        assert httpx.get(local + "/api/tags").json()["models"][0]["name"] == "local-only:latest"
