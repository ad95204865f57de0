"""Start a real aigate (`aigate serve`) for tests written in other languages.

    python -m tests.app_contract.launch      (from the repository root)

Writes the contract test configuration (``config.contract_config``: SQLite in a temporary
directory, the provider simulator started inside the gateway), serves it on a free
loopback port, and prints one JSON line when it answers ``/readyz``:
``{"url", "adminKey", "serverKey", "appId", "userToken", "expiredToken"}``. It stops the
server and removes its files on SIGTERM/SIGINT or when its standard input closes, so a
test runner that dies takes it along.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import yaml

from aigate.auth.tokens import mint_user_token
from tests.app_contract.config import contract_config
from tests.gateway import ADMIN_KEY, APP_ID, SERVER_KEY, TOKEN_SECRET, free_port

TOKEN_USER = "ts-user"


def wait_ready(url: str, proc: subprocess.Popen, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"aigate exited with {proc.returncode} before it was ready")
        try:
            with urllib.request.urlopen(url + "/readyz", timeout=1) as resp:
                if resp.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.1)
    raise SystemExit("aigate did not become ready in time")


def main() -> None:
    tmp = Path(tempfile.mkdtemp(prefix="aigate-launch-"))
    port, sim_port = free_port(), free_port()
    doc = contract_config(f"sqlite:///{tmp}/aigate.db", f"http://127.0.0.1:{sim_port}")
    doc["simulator"] = {"enabled": True, "listen": f"127.0.0.1:{sim_port}"}
    doc["logs"] = {"store_bodies": "all"}
    config = tmp / "aigate.yaml"
    config.write_text(yaml.safe_dump(doc))
    url = f"http://127.0.0.1:{port}"
    aigate = Path(sys.executable).parent / "aigate"
    # The server's log goes to a file (the simulator logs every stream a test cuts short);
    # its tail is shown if the server stops on its own. AIGATE_LAUNCH_LOG=- shows it all.
    log_path = tmp / "aigate.log"
    log = sys.stderr if os.environ.get("AIGATE_LAUNCH_LOG") == "-" else open(log_path, "w")  # noqa: SIM115
    proc = subprocess.Popen(
        [str(aigate), "serve", "--config", str(config), "--listen", f"127.0.0.1:{port}", "--log-level", "WARNING"],
        stdin=subprocess.DEVNULL,
        stderr=log,
    )
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    try:
        wait_ready(url, proc)
        print(
            json.dumps(
                {
                    "url": url,
                    "adminKey": ADMIN_KEY,
                    "serverKey": SERVER_KEY,
                    "appId": APP_ID,
                    "userToken": mint_user_token(APP_ID, TOKEN_USER, TOKEN_SECRET, 3600)[0],
                    "expiredToken": mint_user_token(APP_ID, TOKEN_USER, TOKEN_SECRET, -3600)[0],
                }
            ),
            flush=True,
        )
        threading.Thread(target=lambda: (sys.stdin.read(), stop.set()), daemon=True).start()
        while not stop.wait(0.2) and proc.poll() is None:
            pass
        if proc.poll() is not None:
            print(f"aigate stopped on its own ({proc.returncode})", file=sys.stderr)
    except BaseException:
        if log is not sys.stderr:
            log.flush()
            sys.stderr.write(log_path.read_text()[-4000:])
        raise
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
