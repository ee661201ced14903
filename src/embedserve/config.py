"""The one place that reads the environment. Nothing here runs at import time.

Call :func:`load` (or :meth:`Settings.from_env`) where a front starts; pass the resulting
:class:`Settings` down. Other modules never touch ``os.environ``.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

DEFAULT_MODEL = "all-minilm"
DEFAULT_PORT = 11434
DEFAULT_KEEP_ALIVE = 300.0  # seconds ("5m", like Ollama)
DEVICES = ("auto", "cpu", "cuda")


def _truthy(value: str | None) -> bool:
    return (value or "").strip().lower() in {"1", "true", "yes", "on"}


@dataclass(frozen=True)
class Settings:
    home: Path = field(default_factory=lambda: Path.home() / ".embedserve")
    offline: bool = False
    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    keep_alive: float = DEFAULT_KEEP_ALIVE  # seconds; math.inf = forever
    max_loaded_models: int = 3
    max_queue: int = 512  # pending inputs per model before 503
    max_inputs: int = 2048  # inputs in one request
    max_body_bytes: int = 16 * 1024 * 1024
    batch_tokens: int = 1024  # padded-token budget per batch (longest x count); see BENCHMARKS.md
    origins: tuple[str, ...] = ()
    threads: int | None = None  # None: from the CPU quota
    llm_url: str | None = None
    llm_model: str | None = None
    auth: bool = False  # every route but /, /api/version and /health needs an API key
    plans_file: Path | None = None  # TOML overriding the default plans (auth/plans.py)
    database_url: str | None = None  # postgresql://...: keys and usage there instead of SQLite
    api_key: str | None = None  # the key this process sends: to a --remote, or from ps/stop
    remote_url: str | None = None  # offload NAME-cloud / NAME:cloud models to this embedserve
    cache_mb: int = 256  # in-process embedding cache (LRU, bytes); 0 turns it off
    redis_url: str | None = None  # shared second cache level, e.g. redis://127.0.0.1:6379/0
    cache_ttl: float = 7 * 24 * 3600.0  # seconds a Redis entry lives; math.inf = no expiry
    redis_timeout: float = 0.25  # seconds per Redis call before the cache is skipped
    ollama_models: Path = field(default_factory=lambda: Path.home() / ".ollama" / "models")
    device: str = "auto"  # auto | cpu | cuda: ONNX Runtime's execution providers (engine/onnx.py)

    @property
    def models_dir(self) -> Path:
        return self.home / "models"

    @property
    def collections_dir(self) -> Path:
        return self.home / "collections"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        s = cls()
        if env.get("EMBEDSERVE_HOME"):
            s = replace(s, home=Path(env["EMBEDSERVE_HOME"]).expanduser())
        if _truthy(env.get("EMBEDSERVE_OFFLINE")):
            s = replace(s, offline=True)
        host_value = env.get("EMBEDSERVE_HOST") or env.get("OLLAMA_HOST")
        if host_value:
            host, port = parse_host(host_value)
            s = replace(s, host=host, port=port)
        ka = env.get("EMBEDSERVE_KEEP_ALIVE") or env.get("OLLAMA_KEEP_ALIVE")
        if ka:
            from embedserve.durations import parse_env_duration

            s = replace(s, keep_alive=parse_env_duration(ka, DEFAULT_KEEP_ALIVE))
        origins = env.get("EMBEDSERVE_ORIGINS") or env.get("OLLAMA_ORIGINS")
        if origins:
            s = replace(s, origins=tuple(o.strip() for o in origins.split(",") if o.strip()))
        for key, attr in (
            ("EMBEDSERVE_MAX_LOADED_MODELS", "max_loaded_models"),
            ("EMBEDSERVE_MAX_QUEUE", "max_queue"),
            ("EMBEDSERVE_MAX_INPUTS", "max_inputs"),
            ("EMBEDSERVE_MAX_BODY_BYTES", "max_body_bytes"),
            ("EMBEDSERVE_BATCH_TOKENS", "batch_tokens"),
            ("EMBEDSERVE_THREADS", "threads"),
        ):
            raw = env.get(key)
            if raw:
                try:
                    s = replace(s, **{attr: int(raw)})
                except ValueError:
                    pass
        s = _auth_settings(s, env)
        s = _cache_settings(s, env)
        if env.get("EMBEDSERVE_LLM_URL"):
            s = replace(s, llm_url=env["EMBEDSERVE_LLM_URL"])
        if env.get("EMBEDSERVE_DEVICE"):
            device = env["EMBEDSERVE_DEVICE"].strip().lower()
            if device not in DEVICES:
                from embedserve.errors import InvalidInput

                raise InvalidInput(
                    f"EMBEDSERVE_DEVICE must be one of {', '.join(DEVICES)}, not {device!r}"
                )
            s = replace(s, device=device)
        if env.get("OLLAMA_MODELS"):  # Ollama's own store, read by import-ollama
            s = replace(s, ollama_models=Path(env["OLLAMA_MODELS"]).expanduser())
        if env.get("EMBEDSERVE_LLM_MODEL"):
            s = replace(s, llm_model=env["EMBEDSERVE_LLM_MODEL"])
        return s


def _auth_settings(s: Settings, env: Mapping[str, str]) -> Settings:
    """``EMBEDSERVE_AUTH``, ``EMBEDSERVE_PLANS``, ``EMBEDSERVE_DATABASE_URL``,
    ``EMBEDSERVE_API_KEY`` (else ``OLLAMA_API_KEY``) and ``EMBEDSERVE_REMOTE``."""
    if _truthy(env.get("EMBEDSERVE_AUTH")):
        s = replace(s, auth=True)
    if (env.get("EMBEDSERVE_PLANS") or "").strip():
        s = replace(s, plans_file=Path(env["EMBEDSERVE_PLANS"].strip()).expanduser())
    if (env.get("EMBEDSERVE_DATABASE_URL") or "").strip():
        s = replace(s, database_url=env["EMBEDSERVE_DATABASE_URL"].strip())
    key = (env.get("EMBEDSERVE_API_KEY") or env.get("OLLAMA_API_KEY") or "").strip()
    if key:
        s = replace(s, api_key=key)
    if (env.get("EMBEDSERVE_REMOTE") or "").strip():
        s = replace(s, remote_url=env["EMBEDSERVE_REMOTE"].strip().rstrip("/"))
    return s


def _cache_settings(s: Settings, env: Mapping[str, str]) -> Settings:
    """``EMBEDSERVE_CACHE_MB``, ``EMBEDSERVE_REDIS_URL``, ``EMBEDSERVE_CACHE_TTL`` (a Go duration or
    seconds; negative = no expiry), ``EMBEDSERVE_REDIS_TIMEOUT`` (seconds)."""
    raw = (env.get("EMBEDSERVE_CACHE_MB") or "").strip()
    if raw:
        try:
            s = replace(s, cache_mb=max(0, int(float(raw))))
        except ValueError:
            pass
    if (env.get("EMBEDSERVE_REDIS_URL") or "").strip():
        s = replace(s, redis_url=env["EMBEDSERVE_REDIS_URL"].strip())
    if (env.get("EMBEDSERVE_CACHE_TTL") or "").strip():
        from embedserve.durations import parse_env_duration

        s = replace(s, cache_ttl=parse_env_duration(env["EMBEDSERVE_CACHE_TTL"], s.cache_ttl))
    raw = (env.get("EMBEDSERVE_REDIS_TIMEOUT") or "").strip()
    if raw:
        try:
            s = replace(s, redis_timeout=max(0.001, float(raw)))
        except ValueError:
            pass
    return s


def load() -> Settings:
    return Settings.from_env()


def parse_host(value: str) -> tuple[str, int]:
    """Parse ``OLLAMA_HOST`` the way Ollama's ``envconfig.Host`` does.

    ``"0.0.0.0"`` -> (0.0.0.0, 11434); ``":8080"`` -> (127.0.0.1, 8080); ``"http://h"`` -> (h, 80);
    ``"https://h"`` -> (h, 443); a path after the host is ignored; an invalid port falls back to 11434.
    """
    value = value.strip().strip("\"'")
    default_port = DEFAULT_PORT
    scheme = "http"
    if "://" in value:
        scheme, value = value.split("://", 1)
        default_port = 443 if scheme == "https" else 80
    value = value.split("/", 1)[0]
    host, port_s = value, ""
    if value.startswith("["):  # [::1]:port
        end = value.find("]")
        host = value[1:end] if end > 0 else value
        rest = value[end + 1 :] if end > 0 else ""
        port_s = rest[1:] if rest.startswith(":") else ""
    elif value.count(":") == 1:
        host, port_s = value.split(":", 1)
    if not host:
        host = "127.0.0.1"
    port = default_port
    if port_s:
        try:
            port = int(port_s)
            if not 0 <= port <= 65535:
                port = DEFAULT_PORT
        except ValueError:
            port = DEFAULT_PORT
    return host, port


def cpu_quota() -> int:
    """Number of CPUs this process may use: affinity mask, capped by a cgroup CPU quota."""
    try:
        n = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        n = os.cpu_count() or 1
    quota = _cgroup_quota()
    if quota is not None:
        n = min(n, max(1, math.ceil(quota)))
    return max(1, n)


def _cgroup_quota() -> float | None:
    try:  # cgroup v2
        text = Path("/sys/fs/cgroup/cpu.max").read_text().split()
        if text and text[0] != "max":
            return int(text[0]) / int(text[1])
        return None
    except (OSError, ValueError, IndexError):
        pass
    try:  # cgroup v1
        q = int(Path("/sys/fs/cgroup/cpu/cpu.cfs_quota_us").read_text())
        p = int(Path("/sys/fs/cgroup/cpu/cpu.cfs_period_us").read_text())
        if q > 0 and p > 0:
            return q / p
    except (OSError, ValueError):
        pass
    return None
