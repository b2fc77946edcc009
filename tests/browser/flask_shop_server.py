"""The demo shop (examples/flask_shop) served on loopback with its own emulator, for the browser journeys."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from flask import Flask
from werkzeug.serving import make_server

from examples.flask_shop import create_app, msclkid
from msclkid_middleware.testing import EmulatorHandle, run_emulator


@dataclass(frozen=True, slots=True)
class Shop:
    url: str
    app: Flask
    ms: EmulatorHandle
    click: str

    def ad_click(self) -> str:
        return f"{self.url}/go?product=blue-mug&msclkid={self.click}"


@contextmanager
def running_shop(instance_path: Path, click: str) -> Iterator[Shop]:
    """The shop with a worker thread, on a free port; stopped (and its tracker closed) afterwards."""
    with run_emulator() as ms:
        app = create_app({**ms.env, "MSCLKID_WORKER": "thread", "TESTING": True}, instance_path=str(instance_path))
        server = make_server("127.0.0.1", 0, app, threaded=True)
        thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
        thread.start()
        try:
            yield Shop(f"http://127.0.0.1:{server.server_port}", app, ms, click)
        finally:
            server.shutdown()
            server.server_close()
            thread.join(timeout=5)
            msclkid.close(app)
