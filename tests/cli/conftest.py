"""kubectl mce validate and render: the corpus of tests/api (its INVALID and VALID cases) is read from
there, so a case added for the CRD is a case for the offline validator too."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parents[1] / "api"))
