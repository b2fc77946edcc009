"""``python -m examples.django_shop``: the shop on http://127.0.0.1:8001/ with the Microsoft Ads emulator and a
delivery thread, in one command (Ctrl-C stops both).

With arguments this is the project's ``manage.py``: ``python -m examples.django_shop check``,
``python -m examples.django_shop msclkid status``, ``... runserver 127.0.0.1:9000``.  ``MSCLKID_DJANGO_SHOP_PORT``
and ``MSCLKID_DJANGO_SHOP_EMULATOR_PORT`` (default: a free port) choose the ports, ``MSCLKID_DJANGO_SHOP_DIR``
where the outbox lives.
"""

from __future__ import annotations

import os
import sys
import uuid
from collections.abc import Sequence

HOST = "127.0.0.1"
DEFAULT_PORT = 8001


def manage(args: Sequence[str]) -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "examples.django_shop.settings")
    from django.core.management import execute_from_command_line

    execute_from_command_line(["manage.py", *args])


def demo() -> None:
    """The emulator in this process, its credentials handed to the shop as MSADS_*, then Django's runserver."""
    from msclkid_middleware.testing import run_emulator

    port = int(os.environ.get("MSCLKID_DJANGO_SHOP_PORT") or DEFAULT_PORT)
    emulator_port = int(os.environ.get("MSCLKID_DJANGO_SHOP_EMULATOR_PORT") or 0)
    with run_emulator(host=HOST, port=emulator_port) as ms:
        os.environ.update(ms.env)
        os.environ.setdefault("MSCLKID_WORKER", "thread")  # deliver from a thread of the web process
        print(f"Ad click URL: http://{HOST}:{port}/go?product=blue-mug&msclkid={uuid.uuid4().hex}", flush=True)
        print(f"Shop URL: http://{HOST}:{port}/", flush=True)
        print(f"Emulator dashboard URL: {ms.url}/", flush=True)
        manage(["runserver", f"{HOST}:{port}", "--noreload"])


if __name__ == "__main__":
    if sys.argv[1:]:
        manage(sys.argv[1:])
    else:
        demo()
