"""Fine-tuning installed models into new, servable ones (the ``train`` extra: torch, ST)."""
