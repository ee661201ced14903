"""import-ollama on a tiny BERT written as GGUF: vectors, tokenizer, tensor types, and every bad input."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from clikit import error_line, run
from ollamakit import blob_of, ollama_layout, write_chat_gguf, write_gguf

from embedserve.config import Settings
from embedserve.embedder import Embedder
from embedserve.store.local import ModelStore

TEXTS = [
    "the sky is blue",
    "why is the grass green?",
    "a man plays guitar music, fast and slow",
    "Embedding TOKENS of a long text with the library index and a query vector model",
    "x",
]


def _vectors(home: Path, name: str) -> np.ndarray:
    return Embedder(name, settings=Settings(home=home, offline=True)).encode(TEXTS, normalize=True)


def _min_cos(a: np.ndarray, b: np.ndarray) -> float:
    return float(((a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))).min())


@pytest.fixture
def reference(tmp_path: Path, tiny_src: Path) -> np.ndarray:
    """The tiny model's vectors installed straight from its sentence-transformers folder."""
    home = tmp_path / "ref-home"
    ModelStore(home).create("tiny-ref", source=tiny_src)
    return _vectors(home, "tiny-ref")


def test_import_gives_the_source_models_vectors_and_tokens(
    capsys: pytest.CaptureFixture[str], home: Path, ollama_root: Path, reference: np.ndarray,
    tiny_src: Path,
) -> None:
    code, out, err = run(capsys, "import-ollama", "tiny-embed", "--models", str(ollama_root))
    assert code == 0, err
    assert out.startswith("imported tiny-embed:latest (")
    assert "from ollama tiny-embed:latest F32" in out
    assert "verifying sha256 digest" in err
    model = ModelStore(home).get("tiny-embed")
    assert (model.dim, model.layers, model.pooling, model.normalize) == (48, 3, "mean", True)
    assert model.max_tokens == 64  # the GGUF's context_length, the window llama.cpp uses
    assert _min_cos(_vectors(home, "tiny-embed"), reference) > 0.99999
    from tokenizers import Tokenizer

    ours = Tokenizer.from_file(str(model.folder / "tokenizer.json"))
    theirs = Tokenizer.from_file(str(tiny_src / "tokenizer.json"))
    theirs.no_padding()
    theirs.no_truncation()
    for text in TEXTS:
        assert ours.encode(text).ids == theirs.encode(text).ids, text


@pytest.mark.parametrize(("kind", "bar"), [("F16", 0.9999), ("BF16", 0.999), ("Q8_0", 0.995)])
def test_f16_bf16_and_q8_0_are_dequantised(
    capsys: pytest.CaptureFixture[str], home: Path, tmp_path: Path, tiny64_src: Path,
    kind: str, bar: float,
) -> None:
    ref_home = tmp_path / "ref-home"
    ModelStore(ref_home).create("tiny-ref", source=tiny64_src)
    reference = _vectors(ref_home, "tiny-ref")
    root = tmp_path / "ollama"
    gguf = write_gguf(tiny64_src, tmp_path / "t.gguf", tensor_type=kind)
    ollama_layout(root, f"tiny:{kind.lower()}", gguf)
    from embedserve.store.ollama.gguf_file import GGUFFile

    assert GGUFFile(gguf).file_type == kind
    code, out, err = run(capsys, "import-ollama", f"tiny:{kind.lower()}", "--models", str(root))
    assert code == 0, err
    assert f" {kind} " in ModelStore(home).get(f"tiny:{kind.lower()}").source
    cos = _min_cos(_vectors(home, f"tiny:{kind.lower()}"), reference)
    assert cos > bar, cos
    if kind != "F16":
        assert cos < 0.999999  # really quantised, not a copy of the fp32 weights


def test_an_unreadable_tensor_type_is_named_and_nothing_is_installed(
    capsys: pytest.CaptureFixture[str], home: Path, tmp_path: Path, tiny64_src: Path,
) -> None:
    root = tmp_path / "ollama"
    ollama_layout(root, "tiny:q4", write_gguf(tiny64_src, tmp_path / "q4.gguf", tensor_type="Q4_0"))
    code, out, err = run(capsys, "import-ollama", "tiny:q4", "--models", str(root))
    assert code == 1
    line = error_line(err)
    assert re.search(r"tensor '(token|position)_embd\.weight' is Q4_0, which embedserve cannot read "
                     r"\(only F32, F16, BF16, Q8_0\)", line), line
    assert ModelStore(home).list() == []


def test_without_names_every_embedding_model_is_imported_and_chat_models_listed(
    capsys: pytest.CaptureFixture[str], home: Path, ollama_root: Path, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    ollama_layout(ollama_root, "llama3.2:1b", write_chat_gguf(tmp_path / "chat.gguf"),
                  family="llama")
    ollama_layout(ollama_root, "tiny-embed:v2", blob_of(ollama_root, ollama_root.joinpath(
        "manifests", "registry.ollama.ai", "library", "tiny-embed", "latest")),
        namespace="someone")
    (tmp_path / "junk.gguf").write_bytes(b"GGUF but not really")
    ollama_layout(ollama_root, "broken", tmp_path / "junk.gguf")
    monkeypatch.setenv("OLLAMA_MODELS", str(ollama_root))  # no --models: the env decides
    code, out, err = run(capsys, "import-ollama")
    assert code == 0, err
    assert "skipped llama3.2:1b: not an embedding model (llama)" in out
    assert "skipped broken:latest: its GGUF blob is missing or unreadable" in out
    names = sorted(m.name for m in ModelStore(home).list())
    assert names == ["someone/tiny-embed:v2", "tiny-embed:latest"]
    store = ModelStore(home)
    assert store.get("tiny-embed").blob == store.get("someone/tiny-embed:v2").blob  # one blob

    code, out, err = run(capsys, "import-ollama", "llama3.2:1b")
    assert code == 1
    assert "not an embedding model" in error_line(err) and "pooling_type" in err


def test_importing_the_same_layer_again_is_a_no_op_and_other_models_are_kept(
    capsys: pytest.CaptureFixture[str], home: Path, ollama_root: Path, tiny_src: Path,
) -> None:
    assert run(capsys, "import-ollama", "TINY-Embed:Latest", "--models", str(ollama_root))[0] == 0
    code, out, _ = run(capsys, "import-ollama", "tiny-embed", "--models", str(ollama_root))
    assert code == 0 and "already imported" in out
    ModelStore(home).remove("tiny-embed")
    ModelStore(home).create("tiny-embed", source=tiny_src)
    code, _, err = run(capsys, "import-ollama", "tiny-embed", "--models", str(ollama_root))
    assert code == 1
    assert "already installed (from folder" in error_line(err)
    assert ModelStore(home).get("tiny-embed").source.startswith("folder ")


def test_store_and_blob_errors_are_one_clear_line(
    capsys: pytest.CaptureFixture[str], home: Path, ollama_root: Path, tmp_path: Path,
) -> None:
    code, _, err = run(capsys, "import-ollama", "--models", str(tmp_path / "nowhere"))
    assert code == 1 and "no Ollama model store at" in error_line(err)

    code, _, err = run(capsys, "import-ollama", "nomic-embed-text", "--models", str(ollama_root))
    assert code == 1
    assert "'nomic-embed-text:latest' is not in the Ollama store" in error_line(err)
    assert "tiny-embed:latest" in err

    manifest = ollama_root / "manifests/registry.ollama.ai/library/tiny-embed/latest"
    blob = blob_of(ollama_root, manifest)
    data = bytearray(blob.read_bytes())
    data[-1] ^= 0xFF  # a flipped bit in the last tensor: the header still reads
    blob.write_bytes(bytes(data))
    code, _, err = run(capsys, "import-ollama", "tiny-embed", "--models", str(ollama_root))
    assert code == 1 and "is corrupt: its sha256 is" in error_line(err)

    blob.unlink()
    code, _, err = run(capsys, "import-ollama", "tiny-embed", "--models", str(ollama_root))
    assert code == 1 and "is missing from" in error_line(err)

    manifest.write_text("{not json")
    code, _, err = run(capsys, "import-ollama", "tiny-embed", "--models", str(ollama_root))
    assert code == 1 and "manifest" in error_line(err) and "unreadable" in err
    assert ModelStore(home).list() == []
    assert not (home / "tmp").exists() or not any((home / "tmp").iterdir())


def test_a_cased_vocabulary_without_the_lowercase_key_keeps_case(tmp_path: Path) -> None:
    from tokenizers import Tokenizer

    from embedserve.store.ollama.tokenizer import tokenizer_json

    meta = {
        "tokenizer.ggml.model": "bert",
        "tokenizer.ggml.tokens": ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "\u2581Sky", "\u2581sky", "s"],
        "tokenizer.ggml.token_type": [3, 3, 3, 3, 1, 1, 1],
        "tokenizer.ggml.cls_token_id": 2,
        "tokenizer.ggml.seperator_token_id": 3,
        "tokenizer.ggml.unknown_token_id": 1,
    }
    tok = Tokenizer.from_str(tokenizer_json(meta))
    assert tok.encode("Sky skys").ids == [2, 4, 5, 6, 3]
    meta["tokenizer.ggml.normalizer.lowercase"] = True
    assert Tokenizer.from_str(tokenizer_json(meta)).encode("Sky").ids == [2, 5, 3]
    meta["tokenizer.ggml.model"] = "gpt2"
    with pytest.raises(Exception, match="tokenizer model 'gpt2' is not supported"):
        tokenizer_json(meta)


def test_a_sentencepiece_vocabulary_strips_spaces_and_gets_its_mask_back() -> None:
    """As llama.cpp's converter writes XLM-R: fairseq ids shifted by one, ``<mask>``'s id holding a
    ``[PAD<n>]`` placeholder, ``remove_extra_whitespaces`` (SentencePiece drops spaces at both ends
    and collapses runs: no stray trailing ``▁``)."""
    from tokenizers import Tokenizer

    from embedserve.store.ollama.tokenizer import tokenizer_json

    pieces = ["<s>", "<pad>", "</s>", "<unk>", "\u2581", "\u2581a", "b", "\u2581b", "<", ">", "m"]
    meta = {
        "tokenizer.ggml.model": "t5",
        "tokenizer.ggml.tokens": pieces + ["[PAD11]"],
        "tokenizer.ggml.scores": [0.0] * 4 + [-2.0, -1.0, -3.0, -1.5, -4.0, -4.0, -4.0, -10000.0],
        "tokenizer.ggml.token_type": [3, 3, 3, 2] + [1] * 7 + [5],
        "tokenizer.ggml.bos_token_id": 0, "tokenizer.ggml.eos_token_id": 2,
        "tokenizer.ggml.unknown_token_id": 3, "tokenizer.ggml.mask_token_id": 11,
        "tokenizer.ggml.remove_extra_whitespaces": True,
    }
    tok = Tokenizer.from_str(tokenizer_json(meta))
    for text in ("a b", "  a   b  ", "a b ", " a b"):
        assert tok.encode(text).tokens == ["<s>", "\u2581a", "\u2581b", "</s>"], repr(text)
    assert tok.encode("a <mask> b").ids == [0, 5, 11, 7, 2]
    meta["tokenizer.ggml.remove_extra_whitespaces"] = False
    assert Tokenizer.from_str(tokenizer_json(meta)).encode("a b ").tokens[-2:] == ["\u2581", "</s>"]


def test_layout_names_follow_ollama(tmp_path: Path, tiny_gguf: Path) -> None:
    from embedserve.store.ollama.layout import OllamaName, OllamaStore

    assert str(OllamaName.parse("all-minilm")) == "registry.ollama.ai/library/all-minilm:latest"
    assert OllamaName.parse("me/m:q8").display == "me/m:q8"
    assert OllamaName.parse("hf.co/me/m:Q8_0").display == "hf.co/me/m:Q8_0"
    root = tmp_path / "o"
    ollama_layout(root, "m:1", tiny_gguf, host="hf.co", namespace="me")
    (found,) = OllamaStore(root).models()
    assert found.name.display == "hf.co/me/m:1"
    assert OllamaStore(root).find("HF.co/Me/M:1").manifest == found.manifest
    # an old Ollama named blobs sha256:<hex>
    blob = blob_of(root, found.manifest)
    shutil.move(blob, blob.with_name(blob.name.replace("sha256-", "sha256:")))
    assert OllamaStore(root).blob(found.model_layer).name.startswith("sha256:")
    assert json.loads(found.manifest.read_text())["schemaVersion"] == 2


def test_an_xlm_roberta_gguf_with_a_sentencepiece_vocabulary_imports(
    capsys: pytest.CaptureFixture[str], home: Path, tmp_path: Path,
) -> None:
    """XLM-R as llama.cpp stores it: arch bert, tokenizer "t5" (Unigram pieces + scores), the
    position rows before padding_idx + 1 dropped; vectors against the same folder created directly."""
    pytest.importorskip("transformers")
    from tinyfamilies import make_hf_model

    src = make_hf_model(tmp_path / "xlmr", "xlm-roberta")
    ref_home = tmp_path / "ref-home"
    ModelStore(ref_home).create("xlmr-ref", source=src)
    root = tmp_path / "ollama"
    ollama_layout(root, "tiny-xlmr:latest", write_gguf(src, tmp_path / "x.gguf"))
    code, out, err = run(capsys, "import-ollama", "tiny-xlmr", "--models", str(root))
    assert code == 0, err
    model = ModelStore(home).get("tiny-xlmr")
    assert model.architecture in ("roberta", "xlm-roberta") and model.max_tokens == 40
    texts = ["the man plays the guitar", "why is the sky blue", "search the library index"]
    ours = Embedder("tiny-xlmr", settings=Settings(home=home, offline=True)).encode(texts)
    ref = Embedder("xlmr-ref", settings=Settings(home=ref_home, offline=True)).encode(texts)
    assert _min_cos(ours, ref) > 0.99999
    from tokenizers import Tokenizer

    a = Tokenizer.from_file(str(model.folder / "tokenizer.json"))
    b = Tokenizer.from_file(str(src / "tokenizer.json"))
    for text in texts:
        assert a.encode(text).ids == b.encode(text).ids
