"""NomicBERT against llama.cpp: a tiny random-weight folder (nomic-ai's config keys and tensor
names, bert-base-uncased's vocabulary) converted by llama.cpp's own convert_hf_to_gguf.py to an
f32 GGUF, run by llama.cpp through llama-cpp-python's embedding context, and compared with the
ONNX graph embedserve builds from the same folder and with the GGUF imported by import-ollama.

llama.cpp gets our token ids (so a text past the 2,048-token window is cut the way
sentence-transformers cuts it, ``[SEP]`` last); its own tokenizer is checked to give the same ids
on every text inside the window, and its ``embed()`` API is checked on a few texts.
Measured: min cosine 0.99999991 (graph from the folder and the imported GGUF alike).

llama-cpp-python is not a declared dependency: it compiles llama.cpp from source (about half an
hour, niced, on the shared 2-core box), so the test skips where it is not installed (CI).
Run locally with ``pip install llama-cpp-python`` (or ``LLAMA_CPP_LIB_PATH`` pointing at a built
``libllama.so`` and the sdist's ``llama_cpp`` package on ``PYTHONPATH``).
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from clikit import run
from ollamakit import convert_with_llama_cpp, converter, ollama_layout

from embedserve.config import Settings
from embedserve.embedder import Embedder
from embedserve.store.local import ModelStore

pytestmark = [pytest.mark.slow, pytest.mark.reference]
FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "golden_all_minilm.npz"
WINDOW = 2048  # the converter's n_positions for nomic-embed-text's 8192 / 2048 trained
TEXTS_PAST_WINDOW = ["the sky is blue " * 600, "der Hund läuft schnell " * 500]


@pytest.fixture(scope="module")
def llama_cpp() -> Any:
    return pytest.importorskip("llama_cpp")


@pytest.fixture(scope="module")
def setup(llama_cpp: Any, request: pytest.FixtureRequest, real_home: Path,
          tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The tiny folder, its f32 GGUF, a home with it created, the texts (llama_cpp first: without
    it nothing is pulled or converted before the skip)."""
    from tinyfamilies import make_nomic

    tree = converter(request)
    root = tmp_path_factory.mktemp("nomic-llama")
    minilm = ModelStore(real_home, offline=True).get("all-minilm").folder
    tok_dir = root / "minilm-tokenizer"
    tok_dir.mkdir()
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt"):
        shutil.copyfile(minilm / name, tok_dir / name)
    folder = make_nomic(root / "tiny-nomic", layers=3, hidden=48, heads=4, intermediate=80,
                        max_seq_length=WINDOW, seed=11, tokenizer_from=tok_dir)
    gguf = convert_with_llama_cpp(tree, folder, root / "tiny-nomic-f32.gguf", "f32")
    ModelStore(root / "home").create("nomic-tiny", source=folder)
    with np.load(FIXTURE) as z:
        texts = z["sts_texts"].tolist() + z["long_texts"].tolist() + TEXTS_PAST_WINDOW
    return {"folder": folder, "gguf": gguf, "home": root / "home", "texts": texts}


def _llama_vectors(llama_cpp: Any, gguf: Path, ids: list[list[int]]) -> np.ndarray:
    """llama.cpp's pooled, L2-normalised vector of each token sequence, one sequence a decode
    (``Llama.embed`` takes text and cuts it at n_batch without the closing ``[SEP]``, so its batch
    and context are driven directly: private attributes of llama-cpp-python 0.3.x)."""
    llm = llama_cpp.Llama(str(gguf), embedding=True, n_ctx=WINDOW, n_batch=WINDOW,
                          n_ubatch=WINDOW, verbose=False)
    assert llm.pooling_type() == llama_cpp.LLAMA_POOLING_TYPE_MEAN
    n = llm.n_embd()
    out = []
    for seq in ids:
        llm._ctx.kv_cache_clear()
        llm._batch.reset()
        llm._batch.add_sequence(seq, 0, True)
        llm._ctx.decode(llm._batch)
        v = np.array(llama_cpp.llama_get_embeddings_seq(llm._ctx.ctx, 0)[:n], dtype=np.float64)
        out.append(v / np.linalg.norm(v))
    return np.stack(out)


def test_nomic_graph_equals_llama_cpp(llama_cpp: Any, setup: dict[str, Any]) -> None:
    emb = Embedder("nomic-tiny", settings=Settings(home=setup["home"], offline=True))
    texts = setup["texts"]
    ids = [list(x) for x in emb.engine.tokenize(texts)]
    assert emb.info.max_tokens == WINDOW and max(len(x) for x in ids) == WINDOW

    llm = llama_cpp.Llama(str(setup["gguf"]), embedding=True, n_ctx=WINDOW, n_batch=WINDOW,
                          n_ubatch=WINDOW, verbose=False)
    inside = [(t, x) for t, x in zip(texts, ids) if len(x) < WINDOW]
    wrong = [t for t, x in inside if llm.tokenize(t.encode(), add_bos=True, special=False) != x]
    assert not wrong, f"llama.cpp tokenises {len(wrong)} texts differently, e.g. {wrong[0][:80]!r}"

    ref = _llama_vectors(llama_cpp, setup["gguf"], ids)
    got = emb.encode(texts, batch_size=16, normalize=True)
    cos = (got * ref).sum(1)
    worst = int(np.argmin(cos))
    print(f"nomic graph vs llama.cpp: min cosine {cos.min():.7f}, "
          f"mean {cos.mean():.7f}, {len(cos)} texts")  # the figures BENCHMARKS.md quotes (pytest -rP)
    assert cos.min() >= 0.9999, f"min cosine {cos.min():.7f} on {texts[worst][:80]!r}"

    api = np.array(llm.embed(texts[:40], normalize=True))  # llama-cpp-python's own embedding call
    assert ((api * got[:40]).sum(1)).min() >= 0.9999


def test_imported_nomic_gguf_equals_llama_cpp(llama_cpp: Any, setup: dict[str, Any], home: Path,
                                             tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = tmp_path / "ollama-models"
    ollama_layout(root, "nomic-embed-text:tiny", setup["gguf"], family="nomic-bert")
    code, _, err = run(capsys, "import-ollama", "nomic-embed-text:tiny", "--models", str(root))
    assert code == 0, err
    emb = Embedder("nomic-embed-text:tiny", settings=Settings(home=home, offline=True))
    texts = setup["texts"]
    ids = [list(x) for x in emb.engine.tokenize(texts)]
    cos = (emb.encode(texts, batch_size=16, normalize=True)
           * _llama_vectors(llama_cpp, setup["gguf"], ids)).sum(1)
    print(f"imported nomic vs llama.cpp: min cosine {cos.min():.7f}, mean {cos.mean():.7f}")
    assert cos.min() >= 0.9999, f"min cosine {cos.min():.7f} on {texts[int(np.argmin(cos))][:80]!r}"
