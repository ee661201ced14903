"""The real thing: all-MiniLM-L6-v2 converted by llama.cpp's own convert_hf_to_gguf.py (f32, f16,
q8_0), laid out in an Ollama store the way Ollama lays it out, imported, and compared with
sentence-transformers' vectors (tests/fixtures/golden_all_minilm.npz) on every STS-B dev sentence.

The converter comes from the llama-cpp-python sdist (pip downloads it once into pytest's cache;
only convert_hf_to_gguf.py, conversion/ and gguf-py/ are unpacked) and runs with this venv's torch
and transformers (the reference extra). Without pip access it skips; under CI=true it fails.
Measured on this box: f32 and f16 min cosine 0.9999999 / 0.9999996; q8_0 0.99955 (mean 0.99987).
The long CISI texts are not compared: the GGUF's window is its context_length (512), where
sentence-transformers stops at max_seq_length (256); the tokens are compared on them instead.

XLM-RoBERTa (a SentencePiece Unigram vocabulary, positions from padding_idx + 1): a tiny
random-weight model with a real ``sentencepiece.bpe.model`` trained tiny (tests/tinyfamilies.py),
converted the same way and compared with sentence-transformers on the same folder, over the STS-B
dev sentences, the CISI texts (past the 40-token window) and whitespace / ``<mask>`` edge cases.
Measured: f32 and f16 min cosine 0.9999999, q8_0 0.9999964.

NomicBERT (``nomic-bert``: rotary, SwiGLU, fused QKV, no biases): a tiny random-weight folder with
bert-base-uncased's vocabulary (all-MiniLM's; the converter only takes a vocabulary it knows),
converted and imported, against the graph built from the same folder (``create --from DIR``) over
the STS-B dev sentences, the CISI texts and a text past the 2,048-token window. llama.cpp itself
runs the same GGUF in tests/reference/test_nomic_llama_cpp.py.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import ollamakit
import pytest
from clikit import run
from ollamakit import convert_with_llama_cpp, ollama_layout

from embedserve.config import Settings
from embedserve.embedder import Embedder
from embedserve.store.local import ModelStore

pytestmark = [pytest.mark.slow, pytest.mark.reference]
FIXTURE = Path(__file__).resolve().parents[2] / "fixtures" / "golden_all_minilm.npz"
BARS = {"f32": 0.9999, "f16": 0.9999, "q8_0": 0.999}
XLMR_EDGES = ["  two  spaces\tand a tab ", "trailing space ", " leading", "<mask> x", "a <mask>",
              "der Hund läuft " * 30, "猫が本の上で寝ている"]


@pytest.fixture(scope="session")
def converter(request: pytest.FixtureRequest) -> Path:
    return ollamakit.converter(request)


@pytest.fixture(scope="module")
def golden() -> dict[str, np.ndarray]:
    with np.load(FIXTURE) as z:
        return {k: z[k] for k in ("sts_texts", "sts_embeddings", "long_texts")}


@pytest.fixture(scope="module")
def minilm(real_home: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the real all-MiniLM-L6-v2 folder (the converter reads it like a hub folder)."""
    folder = ModelStore(real_home, offline=True).get("all-minilm").folder
    dest = tmp_path_factory.mktemp("minilm") / "all-MiniLM-L6-v2"
    shutil.copytree(folder, dest, ignore=shutil.ignore_patterns("graphs"))
    return dest


@pytest.mark.timeout(1800)  # the first run downloads the 77 MB sdist and pip prepares its metadata
@pytest.mark.parametrize("outtype", ["f32", "f16", "q8_0"])
def test_llama_cpp_gguf_imports_to_sentence_transformers_vectors(
    outtype: str, converter: Path, minilm: Path, golden: dict[str, np.ndarray], tmp_path: Path,
    home: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    gguf = convert_with_llama_cpp(converter, minilm, tmp_path / f"minilm-{outtype}.gguf", outtype)
    root = tmp_path / "ollama-models"
    ollama_layout(root, f"all-minilm:{outtype}", gguf)
    code, out, err = run(capsys, "import-ollama", "--models", str(root))
    assert code == 0, err
    assert f"imported all-minilm:{outtype}" in out
    model = ModelStore(home).get(f"all-minilm:{outtype}")
    assert (model.dim, model.layers, model.pooling, model.normalize, model.max_tokens) == (
        384, 6, "mean", True, 512)

    from tokenizers import Tokenizer

    ours = Tokenizer.from_file(str(model.folder / "tokenizer.json"))
    theirs = Tokenizer.from_file(str(minilm / "tokenizer.json"))
    theirs.no_padding()
    theirs.no_truncation()
    texts = golden["sts_texts"].tolist()
    if outtype == "f32":  # the vocabulary is the same in every outtype
        for text in texts + golden["long_texts"].tolist():
            assert ours.encode(text).ids == theirs.encode(text).ids, text[:80]

    vectors = Embedder(model.name, settings=Settings(home=home, offline=True)).encode(
        texts, batch_size=32, normalize=True
    )
    ref = golden["sts_embeddings"].astype(np.float64)
    cos = (vectors * ref).sum(1) / (np.linalg.norm(vectors, axis=1) * np.linalg.norm(ref, axis=1))
    worst = int(np.argmin(cos))
    print(f"all-minilm {outtype}: min cosine {cos.min():.7f}, "
          f"mean {cos.mean():.7f}, {len(cos)} texts")  # the figures BENCHMARKS.md quotes (pytest -rP)
    assert cos.min() >= BARS[outtype], (
        f"{outtype}: min cosine {cos.min():.6f} on {texts[worst]!r}, mean {cos.mean():.7f}"
    )


def _cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


@pytest.fixture(scope="module")
def xlmr(tmp_path_factory: pytest.TempPathFactory, golden: dict[str, np.ndarray]) -> tuple[Path, list[str], np.ndarray]:
    """A tiny XLM-R with a real SentencePiece model, its texts, and sentence-transformers' vectors."""
    pytest.importorskip("sentencepiece")
    st = pytest.importorskip("sentence_transformers")
    from tinyfamilies import make_hf_model

    folder = make_hf_model(tmp_path_factory.mktemp("xlmr") / "tiny-xlmr", "xlm-roberta",
                           sentencepiece=True, max_seq_length=40, seed=3)
    assert (folder / "sentencepiece.bpe.model").is_file()
    texts = golden["sts_texts"].tolist() + golden["long_texts"].tolist() + XLMR_EDGES
    ref = st.SentenceTransformer(str(folder), device="cpu")
    return folder, texts, ref.encode(texts, normalize_embeddings=True, batch_size=64)


@pytest.mark.timeout(1800)
@pytest.mark.parametrize("outtype", ["f32", "f16", "q8_0"])
def test_llama_cpp_xlm_roberta_gguf_imports_to_sentence_transformers_vectors(
    outtype: str, converter: Path, xlmr: tuple[Path, list[str], np.ndarray], tmp_path: Path,
    home: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    folder, texts, want = xlmr
    gguf = convert_with_llama_cpp(converter, folder, tmp_path / f"xlmr-{outtype}.gguf", outtype)
    root = tmp_path / "ollama-models"
    ollama_layout(root, f"tiny-xlmr:{outtype}", gguf)
    code, out, err = run(capsys, "import-ollama", "--models", str(root))
    assert code == 0, err
    assert f"imported tiny-xlmr:{outtype}" in out
    model = ModelStore(home).get(f"tiny-xlmr:{outtype}")
    assert (model.dim, model.pooling, model.normalize, model.max_tokens) == (32, "mean", True, 40)

    from tokenizers import Tokenizer

    ours = Tokenizer.from_file(str(model.folder / "tokenizer.json"))
    theirs = Tokenizer.from_file(str(folder / "tokenizer.json"))
    theirs.no_padding()
    theirs.no_truncation()
    wrong = [t for t in texts if ours.encode(t).ids != theirs.encode(t).ids]
    assert not wrong, f"{len(wrong)} texts tokenised differently, e.g. {wrong[0][:80]!r}"

    got = Embedder(model.name, settings=Settings(home=home, offline=True)).encode(
        texts, batch_size=32, normalize=True
    )
    assert max(len(ids) for ids in Embedder(model.name, settings=Settings(
        home=home, offline=True)).engine.tokenize(texts)) == 40  # texts really pass the window
    cos = _cosines(got, want)
    worst = int(np.argmin(cos))
    print(f"xlm-r {outtype}: min cosine {cos.min():.7f}, "
          f"mean {cos.mean():.7f}, {len(cos)} texts")  # the figures BENCHMARKS.md quotes (pytest -rP)
    assert cos.min() >= BARS[outtype], (
        f"{outtype}: min cosine {cos.min():.7f} on {texts[worst][:80]!r}, mean {cos.mean():.7f}"
    )


@pytest.fixture(scope="module")
def nomic(minilm: Path, golden: dict[str, np.ndarray], tmp_path_factory: pytest.TempPathFactory,
          ) -> tuple[Path, list[str], np.ndarray, list[list[int]]]:
    """A tiny NomicBERT folder, its texts, our vectors and token ids from the folder itself."""
    from tinyfamilies import make_nomic

    root = tmp_path_factory.mktemp("nomic")
    folder = make_nomic(root / "tiny-nomic", layers=2, hidden=32, heads=4, intermediate=48,
                        max_seq_length=2048, seed=5, tokenizer_from=minilm)
    ModelStore(root / "home").create("nomic-ref", source=folder)
    emb = Embedder("nomic-ref", settings=Settings(home=root / "home", offline=True))
    texts = golden["sts_texts"].tolist() + golden["long_texts"].tolist() + NOMIC_EDGES
    ids = [list(x) for x in emb.engine.tokenize(texts)]
    assert max(len(x) for x in ids) == 2048
    return folder, texts, emb.encode(texts, batch_size=16, normalize=True), ids


NOMIC_EDGES = ["the sky is blue " * 600, "Ünïcödé  accents\tand a tab 猫が本 ", "a"]


@pytest.mark.timeout(1800)
@pytest.mark.parametrize("outtype", ["f32", "f16", "q8_0"])
def test_llama_cpp_nomic_bert_gguf_imports_to_the_same_vectors(
    outtype: str, converter: Path, nomic: tuple[Path, list[str], np.ndarray, list[list[int]]],
    tmp_path: Path, home: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    folder, texts, want, ids = nomic
    gguf = convert_with_llama_cpp(converter, folder, tmp_path / f"nomic-{outtype}.gguf", outtype)
    root = tmp_path / "ollama-models"
    ollama_layout(root, f"nomic-tiny:{outtype}", gguf, family="nomic-bert")
    code, out, err = run(capsys, "import-ollama", "--models", str(root))
    assert code == 0, err
    assert f"imported nomic-tiny:{outtype}" in out
    model = ModelStore(home).get(f"nomic-tiny:{outtype}")
    assert (model.architecture, model.dim, model.layers, model.pooling, model.max_tokens) == (
        "nomic_bert", 32, 2, "mean", 2048)
    emb = Embedder(model.name, settings=Settings(home=home, offline=True))
    assert [list(x) for x in emb.engine.tokenize(texts)] == ids
    cos = _cosines(emb.encode(texts, batch_size=16, normalize=True), want)
    worst = int(np.argmin(cos))
    print(f"nomic {outtype}: min cosine {cos.min():.7f}, "
          f"mean {cos.mean():.7f}, {len(cos)} texts")  # the figures BENCHMARKS.md quotes (pytest -rP)
    assert cos.min() >= BARS[outtype], (
        f"{outtype}: min cosine {cos.min():.7f} on {texts[worst][:80]!r}, mean {cos.mean():.7f}"
    )
