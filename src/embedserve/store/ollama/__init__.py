"""Importing models from an Ollama store: its layout, GGUF reading, the tokenizer and weights
conversion, and the import itself (``embedserve import-ollama``)."""
