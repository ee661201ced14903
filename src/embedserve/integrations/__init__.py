"""Adapters that let other tools drive embedserve models (each behind its own optional extra)."""
