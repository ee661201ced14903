"""Auth tests reuse the server test kit (fake store, fake loader, a real uvicorn in a thread)."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent.parent / "server"))
