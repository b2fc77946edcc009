"""Eight processes force refreshes through one FileTokenStore against the emulator's token endpoint."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

from msclkid_middleware.testing import run_emulator
from msclkid_middleware.tokens import FileTokenStore

REPO = Path(__file__).resolve().parents[2]
PROCESSES = 8
ROUNDS = 5

WORKER = """
import sys
from msclkid_middleware.microsoft import FileTokenStore, RefreshTokenProvider
client_id, secret, seed, token_url, path, rounds = sys.argv[1:]
provider = RefreshTokenProvider(client_id, secret, refresh_token=seed, token_url=token_url,
                                token_store=FileTokenStore(path))
provider.access_token()
for _ in range(int(rounds)):
    provider.force_refresh()
print("ok")
"""


def test_eight_processes_never_regress_the_stored_refresh_token(tmp_path: Path) -> None:
    path = tmp_path / "token.json"
    with run_emulator() as ms:
        env = ms.env
        args = [env["MSADS_CLIENT_ID"], env["MSADS_CLIENT_SECRET"], env["MSADS_REFRESH_TOKEN"], env["MSADS_TOKEN_URL"]]
        observed: list[tuple[int, str]] = []
        stop = threading.Event()

        def reader() -> None:
            store = FileTokenStore(path)
            while not stop.is_set():
                token = store.load()  # no lock: os.replace makes every read whole
                if token is not None and (not observed or observed[-1][0] != token.serial):
                    observed.append((token.serial, token.refresh_token))
                time.sleep(0.002)

        poller = threading.Thread(target=reader, daemon=True)
        poller.start()
        child_env = {**os.environ, "PYTHONPATH": str(REPO)}
        workers = [
            subprocess.Popen(
                [sys.executable, "-c", WORKER, *args, str(path), str(ROUNDS)],
                env=child_env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for _ in range(PROCESSES)
        ]
        outputs = [w.communicate(timeout=120) for w in workers]
        stop.set()
        poller.join()
        for worker, (out, err) in zip(workers, outputs, strict=True):
            assert worker.returncode == 0, err
            assert out.strip() == "ok"

        issued = [r for r in ms.token_log() if r.outcome == "issued"]
        final = FileTokenStore(path).load()
        assert final is not None
        # The persisted token is the newest the emulator issued, and our serial counted every refresh.
        newest = max(issued, key=lambda r: r.serial or 0)
        assert final.refresh_token == newest.refresh_token
        assert final.serial == len(issued)
        # Single flight: every refresh used the token issued just before it (no forks in the chain) ...
        assert [r.parent_serial for r in issued[1:]] == [r.serial for r in issued[:-1]]
        # ... each process forced ROUNDS refreshes, but a process adopts a newer token instead of refreshing.
        assert 1 <= len(issued) <= PROCESSES * ROUNDS + 1
        # The reader never saw the store go backwards, and everything it saw was a token Microsoft issued.
        serials = [s for s, _ in observed]
        assert serials == sorted(serials)
        assert len(set(serials)) == len(serials)
        issued_tokens = {r.refresh_token for r in issued}
        assert all(token in issued_tokens for _, token in observed)
