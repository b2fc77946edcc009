"""``python -m examples.flask_shop`` (what ``make demo`` runs): emulator + shop + worker on 127.0.0.1."""

from __future__ import annotations

import sys

from examples.flask_shop.demo import main

sys.exit(main())
