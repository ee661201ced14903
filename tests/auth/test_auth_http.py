"""Serving with auth, through the official clients over real HTTP: 401/403/429 with the right
bodies and Retry-After, the concurrent-model rule, budgets, /api/usage and /metrics."""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path

import httpx
import ollama
import openai
import pytest
from authkit import auth_server


def _client(url: str, key: str) -> ollama.Client:
    return ollama.Client(host=url, headers={"Authorization": f"Bearer {key}"})


def test_public_routes_stay_open_and_the_rest_need_a_key(tmp_path: Path) -> None:
    with auth_server(tmp_path) as srv:
        assert httpx.get(srv.url + "/").text == "Ollama is running"
        assert httpx.head(srv.url + "/").status_code == 200
        assert httpx.get(srv.url + "/api/version").status_code == 200
        assert httpx.get(srv.url + "/health").status_code == 200
        for method, path in [
            ("GET", "/api/tags"),
            ("POST", "/api/embed"),
            ("GET", "/api/ps"),
            ("GET", "/api/usage"),
            ("GET", "/metrics"),
            ("GET", "/nope"),
        ]:
            r = httpx.request(method, srv.url + path, json={"model": "fake", "input": "x"})
            assert r.status_code == 401, path
            assert r.json() == {"error": "unauthorized"}
            assert r.headers["www-authenticate"] == "Bearer"
        with pytest.raises(ollama.ResponseError) as info:
            ollama.Client(host=srv.url).embed(model="fake", input="x")
        assert info.value.status_code == 401 and info.value.error == "unauthorized"
        with pytest.raises(ollama.ResponseError) as info:
            _client(srv.url, "esk_" + "x" * 43).embed(model="fake", input="x")
        assert info.value.status_code == 401
        key = srv.key("free")
        out = _client(srv.url, key).embed(model="fake", input=["a b", "c"])
        assert len(out.embeddings) == 2
        assert [m.model for m in _client(srv.url, key).list().models]


def test_openai_routes_answer_openai_shaped_401_and_work_with_a_key(tmp_path: Path) -> None:
    with auth_server(tmp_path) as srv:
        bad = openai.OpenAI(base_url=srv.url + "/v1", api_key="esk_wrong", max_retries=0)
        with pytest.raises(openai.AuthenticationError) as info:
            bad.embeddings.create(model="fake", input="x")
        assert info.value.status_code == 401
        body = info.value.body
        assert body["code"] == "invalid_api_key" and body["type"] == "invalid_request_error"
        assert set(body) == {"message", "type", "param", "code"}
        key = srv.key("pro")
        good = openai.OpenAI(base_url=srv.url + "/v1", api_key=key, max_retries=0)
        out = good.embeddings.create(model="fake", input=["a", "b"])
        assert len(out.data) == 2 and out.usage.prompt_tokens > 0


def test_revoked_key_is_refused_within_a_flush(tmp_path: Path) -> None:
    with auth_server(tmp_path) as srv:
        key = srv.key("free", name="soon-gone")
        client = _client(srv.url, key)
        client.embed(model="fake", input="x")
        srv.store.revoke("soon-gone", time.time())
        deadline = time.monotonic() + 5
        while True:
            try:
                client.embed(model="fake", input="x")
            except ollama.ResponseError as exc:
                assert exc.status_code == 401 and exc.error == "unauthorized"
                break
            assert time.monotonic() < deadline, "revocation not applied"
            time.sleep(0.1)


def test_models_outside_the_key_patterns_are_403(tmp_path: Path) -> None:
    with auth_server(tmp_path) as srv:
        key = srv.key("max", models=("fake", "oth*"))
        client = _client(srv.url, key)
        client.embed(model="fake", input="x")
        client.embed(model="other:latest", input="x")
        with pytest.raises(ollama.ResponseError) as info:
            client.embed(model="third", input="x")
        assert info.value.status_code == 403
        assert info.value.error == "this key may not use model 'third:latest'"
        with pytest.raises(ollama.ResponseError) as info:
            client.show("third")
        assert info.value.status_code == 403
        oa = openai.OpenAI(base_url=srv.url + "/v1", api_key=key, max_retries=0)
        with pytest.raises(openai.PermissionDeniedError):
            oa.embeddings.create(model="third", input="x")
        with pytest.raises(openai.PermissionDeniedError):
            oa.models.retrieve("third")


def test_metrics_and_model_management_need_an_admin_key(tmp_path: Path) -> None:
    with auth_server(tmp_path) as srv:
        user, admin = srv.key("max"), srv.key("admin")
        r = httpx.get(srv.url + "/metrics", headers={"Authorization": f"Bearer {user}"})
        assert r.status_code == 403 and r.json() == {"error": "this route needs an admin key"}
        with pytest.raises(ollama.ResponseError) as info:
            _client(srv.url, user).delete("fake")
        assert info.value.status_code == 403
        r = httpx.get(srv.url + "/metrics", headers={"Authorization": f"Bearer {admin}"})
        assert r.status_code == 200 and "embedserve_" in r.text


def test_concurrent_model_limit_counts_distinct_models(tmp_path: Path) -> None:
    """Waits on states, not on time: the engine holds "fake" until the test has checked "other"."""
    gate = threading.Event()

    def hold(batch: object) -> None:
        gate.wait(60)

    with auth_server(tmp_path, hold=hold) as srv:
        try:
            key = srv.key("free")  # 1 model at a time
            client = _client(srv.url, key)
            results: list[object] = []

            def slow(model: str) -> None:
                try:
                    results.append(len(client.embed(model=model, input="slow").embeddings))
                except ollama.ResponseError as exc:
                    results.append(exc.status_code)

            threads = [threading.Thread(target=slow, args=("fake",)) for _ in range(3)]
            for t in threads:
                t.start()
            deadline = time.monotonic() + 60
            while sum(m.get("fake:latest", 0) for m in srv.service.in_flight._models.values()) < 3:
                assert time.monotonic() < deadline, 'timed out waiting for three "fake" in flight'
                time.sleep(0.02)
            r = httpx.post(
                srv.url + "/api/embed",
                json={"model": "other", "input": "x"},
                headers={"Authorization": f"Bearer {key}"},
            )
            assert r.status_code == 429
            assert "concurrent model limit reached" in r.json()["error"]
            assert "fake:latest" in r.json()["error"]
            assert int(r.headers["retry-after"]) >= 1
            with pytest.raises(ollama.ResponseError) as info:
                client.embed(model="other", input="x")
            assert info.value.status_code == 429
            gate.set()
            for t in threads:
                t.join(60)
            assert results == [1, 1, 1]  # the same model in flight is never refused
            assert len(client.embed(model="other", input="x").embeddings) == 1  # now free again
        finally:
            gate.set()  # never leave the server holding a batch


def test_rpm_and_budget_limits_answer_429_naming_the_limit(tmp_path: Path) -> None:
    plans = tmp_path / "plans.toml"
    plans.write_text(
        "[plans.tiny]\nrequests_per_minute = 3\n[plans.broke]\nsession_compute_seconds = 0.0001\n"
    )
    with auth_server(tmp_path / "home", plans_file=plans, delay=0.05) as srv:
        client = _client(srv.url, srv.key("tiny"))
        for _ in range(3):
            client.embed(model="fake", input="x")
        with pytest.raises(ollama.ResponseError) as info:
            client.embed(model="fake", input="x")
        assert info.value.status_code == 429
        assert "3 requests per minute" in info.value.error
        broke = srv.key("broke")
        r = httpx.post(
            srv.url + "/api/embed",
            json={"model": "fake", "input": "x"},
            headers={"Authorization": f"Bearer {broke}"},
        )
        assert r.status_code == 429 and r.json()["error"].startswith("session usage limit reached")
        assert "resets at" in r.json()["error"]
        retry = int(r.headers["retry-after"])
        assert 5 * 3600 - 60 <= retry <= 5 * 3600
        oa = openai.OpenAI(base_url=srv.url + "/v1", api_key=broke, max_retries=0)
        with pytest.raises(openai.RateLimitError) as oinfo:
            oa.embeddings.create(model="fake", input="x")
        assert oinfo.value.body["code"] == "insufficient_quota"


def test_plan_max_inputs_is_a_400(tmp_path: Path) -> None:
    with auth_server(tmp_path) as srv:
        key = srv.key("free")  # 64 inputs per request
        with pytest.raises(ollama.ResponseError) as info:
            _client(srv.url, key).embed(model="fake", input=["x"] * 65)
        assert info.value.status_code == 400
        assert info.value.error == "too many inputs: 65 in one request, the limit is 64"


def test_usage_reports_what_the_engine_spent(tmp_path: Path) -> None:
    # cache off: the same inputs are sent three times on purpose, and each must reach the engine
    with auth_server(tmp_path, delay=0.05, cache_mb=0) as srv:
        key = srv.key("pro", name="metered")
        client = _client(srv.url, key)
        for _ in range(3):
            client.embed(model="fake", input=["one two three", "four"])
        time.sleep(0.05)
        r = httpx.get(srv.url + "/api/usage", headers={"Authorization": f"Bearer {key}"})
        body = r.json()
        assert r.status_code == 200 and body["name"] == "metered"
        assert body["plan"]["name"] == "pro" and body["plan"]["concurrent_models"] == 3
        session = body["windows"]["session"]
        assert session["requests"] == 3 and session["inputs"] == 6
        assert session["tokens"] == 3 * (5 + 3)  # words + CLS/SEP per input
        # three batches of ~50 ms each (the fake engine's delay), all of it this key's
        assert 0.12 < session["compute_seconds"] < 1.0
        assert session["remaining_compute_seconds"] == pytest.approx(
            3000 - session["compute_seconds"], abs=1e-5
        )
        assert session["resets_at"].endswith("Z") and body["windows"]["weekly"]["requests"] == 3
        assert body["requests_per_minute"] == {"limit": 600, "used": 4}


def test_no_key_or_hash_in_logs_or_responses(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    with auth_server(tmp_path) as srv:
        key = srv.key("admin", name="secret-holder")
        stored = srv.store.find("secret-holder").hash
        digest = stored.split("$")[-1]
        seen = []
        for method, path, body in [
            ("GET", "/api/usage", None),
            ("GET", "/api/tags", None),
            ("GET", "/metrics", None),
            ("POST", "/api/embed", {"model": "fake", "input": "x"}),
            ("GET", "/api/ps", None),
            ("POST", "/api/embed", {"model": "missing", "input": "x"}),
        ]:
            r = httpx.request(
                method, srv.url + path, json=body, headers={"Authorization": f"Bearer {key}"}
            )
            seen.append(r.text + str(r.headers))
        r = httpx.post(
            srv.url + "/api/embed",
            json={"model": "fake", "input": "x"},
            headers={"Authorization": f"Bearer {key}x"},
        )
        assert r.status_code == 401
        seen.append(r.text + str(r.headers))
        text = "\n".join(seen) + caplog.text
        assert key not in text and key[12:] not in text and digest not in text


@pytest.mark.slow
def test_real_model_under_auth_meters_engine_time(real_home: Path, tmp_path: Path) -> None:
    from dataclasses import replace

    from serverkit import serve

    from embedserve.auth import create_key
    from embedserve.auth.plans import load_plans
    from embedserve.auth.service import AuthService
    from embedserve.auth.sqlite_store import SQLiteKeyStore
    from embedserve.config import Settings
    from embedserve.server.app import create_app

    store = SQLiteKeyStore(tmp_path)
    plans = load_plans()
    key = create_key(store, plans, "free", models=("all-minilm:latest",))[0]
    cfg = replace(Settings(), home=real_home, offline=True, auth=True)
    with serve(create_app(cfg, auth=AuthService(store, plans))) as url:
        client = _client(url, key)
        texts = ["why is the sky blue?", "why is the grass green?"] * 8
        out = client.embed(model="all-minilm", input=texts)
        assert len(out.embeddings) == 16 and len(out.embeddings[0]) == 384
        usage = httpx.get(url + "/api/usage", headers={"Authorization": f"Bearer {key}"}).json()
        session = usage["windows"]["session"]
        assert session["inputs"] == 16 and session["tokens"] == out.prompt_eval_count
        assert 0 < session["compute_seconds"] < out.total_duration / 1e9
        with pytest.raises(ollama.ResponseError) as info:
            client.embed(model="all-minilm:int8", input="x")
        assert info.value.status_code == 403  # another tag of the same weights: not this key's


def test_a_new_key_on_many_connections_is_hashed_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import asyncio

    import embedserve.auth.service as service_module

    calls = []
    real = service_module.verify_key

    def counting(key: str, stored: str) -> bool:
        calls.append(1)
        return real(key, stored)

    monkeypatch.setattr(service_module, "verify_key", counting)
    with auth_server(tmp_path) as srv:
        key = srv.key("max")

        async def burst() -> list[int]:
            async with httpx.AsyncClient(headers={"Authorization": f"Bearer {key}"}) as c:
                rs = await asyncio.gather(
                    *(
                        c.post(srv.url + "/api/embed", json={"model": "fake", "input": "x"})
                        for _ in range(24)
                    )
                )
            return [r.status_code for r in rs]

        assert asyncio.run(burst()) == [200] * 24
        assert len(calls) == 1


def test_listings_show_a_restricted_key_only_its_models(tmp_path: Path) -> None:
    with auth_server(tmp_path) as srv:
        everything, narrow = srv.key("max"), srv.key("max", models=("fake", "oth*"))
        _client(srv.url, everything).embed(model="third", input="x")  # another tenant's model
        _client(srv.url, narrow).embed(model="fake", input="x")
        wide = {m.model for m in _client(srv.url, everything).list().models}
        assert wide == {"fake:latest", "other:latest", "third:latest", "fourth:latest"}
        mine = {m.model for m in _client(srv.url, narrow).list().models}
        assert mine == {"fake:latest", "other:latest"}
        assert {m.model for m in _client(srv.url, narrow).ps().models} == {"fake:latest"}
        assert {m.model for m in _client(srv.url, everything).ps().models} == {
            "fake:latest",
            "third:latest",
        }
        oa = openai.OpenAI(base_url=srv.url + "/v1", api_key=narrow, max_retries=0)
        assert {m.id for m in oa.models.list()} == {"fake:latest", "other:latest"}
