from __future__ import annotations

from pathlib import Path

import pytest

from embedserve.config import Settings
from embedserve.engine.fake import FakeEngine
from embedserve.embedder import Embedder


class CountingEncoder(Embedder):
    """The library over the fake engine, counting the texts it embeds."""

    def __init__(self, engine: FakeEngine) -> None:
        self._engine = engine
        self.encoded: list[str] = []

    def encode(self, texts, **kw):  # type: ignore[no-untyped-def]
        self.encoded.extend(texts)
        return super().encode(texts, **kw)


def make_encoder(
    name: str = "fake:latest", max_tokens: int = 64, digest: str | None = None, dim: int = 32
) -> CountingEncoder:
    eng = FakeEngine(name=name, max_tokens=max_tokens, dim=dim)
    if digest is not None:
        from dataclasses import replace

        eng.info = replace(eng.info, digest=digest)
    return CountingEncoder(eng)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(home=tmp_path / "home")


@pytest.fixture
def encoder() -> CountingEncoder:
    return make_encoder()


@pytest.fixture
def fake_factory(monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    """Make ``Collection.open`` (and so the CLI) build fake encoders instead of loading a model."""
    import embedserve.index.collection as mod

    made: dict[str, CountingEncoder] = {}

    def factory(model: str, settings: Settings) -> CountingEncoder:
        key = mod.model_key(model)
        if key not in made:
            made[key] = make_encoder(name=key)
        return made[key]

    monkeypatch.setattr(mod, "_load_default_encoder", factory)
    return made
