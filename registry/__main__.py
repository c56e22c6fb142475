"""``python -m registry`` — the same as the ``registry`` command."""

from __future__ import annotations

import sys

from registry.cli import main

sys.exit(main())
