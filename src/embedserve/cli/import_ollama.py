"""``import-ollama [NAME[:TAG]...] [--models DIR]``: install the embedding models of an Ollama store.

With names: each one is imported, or its error printed (exit 1 if any failed). Without: every
embedding model in the store is imported and the chat models are listed as skipped.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from embedserve.cli.models import human_bytes
from embedserve.config import load
from embedserve.errors import EmbedServeError
from embedserve.store.local import ModelStore
from embedserve.store.ollama.importer import UNREADABLE, import_model, survey
from embedserve.store.ollama.layout import OllamaModel, OllamaStore
from embedserve.store.progress import ConsoleProgress


def cmd_import(args: argparse.Namespace) -> int:
    settings = load()
    store = ModelStore.from_settings(settings)
    ollama = OllamaStore(Path(args.models) if args.models else settings.ollama_models)
    wanted: list[OllamaModel]
    if args.names:
        wanted = [ollama.find(name) for name in args.names]
    else:
        wanted = []
        for found in survey(ollama):
            if found.embedding:
                wanted.append(found.model)
            elif found.architecture == UNREADABLE:
                print(f"skipped {found.model.name.display}: its GGUF blob is missing or unreadable")
            else:
                print(f"skipped {found.model.name.display}: not an embedding model "
                      f"({found.architecture})")
        if not wanted:
            print(f"no embedding models in the Ollama store {ollama.root}")
            return 0
    status = 0
    for model in wanted:
        try:
            with ConsoleProgress(sys.stderr) as progress:
                installed, changed = import_model(store, ollama, model, progress=progress)
        except EmbedServeError as err:
            print(f"Error: {err}", file=sys.stderr)
            status = 1
            continue
        if changed:
            print(f"imported {installed.name} ({installed.id}, {human_bytes(installed.size)}) "
                  f"from {installed.source.rsplit(' ', 1)[0]}")
        else:
            print(f"{installed.name} is already imported from this Ollama layer; nothing to do")
    return status


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "import-ollama", help="install embedding models from an Ollama store (GGUF)"
    )
    p.add_argument("names", nargs="*", metavar="NAME[:TAG]",
                   help="Ollama model names (default: every embedding model)")
    p.add_argument("--models", metavar="DIR",
                   help="the Ollama models folder (default: $OLLAMA_MODELS or ~/.ollama/models)")
    p.set_defaults(func=cmd_import)
