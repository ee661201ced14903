"""The UI tests reuse the server kit (a real uvicorn in a thread) and the auth kit."""

from __future__ import annotations

import sys
from pathlib import Path

for kit in ("server", "auth"):
    sys.path.insert(0, str(Path(__file__).parent.parent / kit))
