"""The processes under test and their configuration: the provider simulator, aigate, the
bare reference proxy and LiteLLM's proxy (in its own cached venv under bench/.work)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import yaml

from bench.procs import GATEWAY_CPU, LOAD_CPU, Proc, Processes, free_port, wait_http

REPO = Path(__file__).resolve().parent.parent
WORK = REPO / "bench" / ".work"
VENV_BIN = Path(sys.executable).parent

LITELLM_SPEC = "litellm[proxy]==1.106.2"
LITELLM_VENV = WORK / "litellm-venv"
LITELLM_KEY = "sk-bench-litellm-master-key"
SIM_KEY = "sk-bench-simulator"
SERVER_KEY = "bench-server-key-0123456789"
RELAY_KEY = "sk-bench-relay-key-0123456789"
APP_ID = "APPBENCH"
UNLIMITED = 10**12


@dataclass(frozen=True)
class Profile:
    """Simulator switches for one pass of the benchmark."""

    name: str
    latency_ms: int
    chunks: int
    chunk_interval_ms: int


def start_simulator(procs: Processes, port: int, profile: Profile, reply_chars: int = 0) -> Proc:
    argv = [
        str(VENV_BIN / "aigate"),
        "simulator",
        "--port",
        str(port),
        "--latency-ms",
        str(profile.latency_ms),
        "--chunks",
        str(profile.chunks),
        "--chunk-interval-ms",
        str(profile.chunk_interval_ms),
    ]
    if reply_chars:  # long streams: the echo is too short to split into many deltas
        argv += ["--reply-chars", str(reply_chars)]
    proc = procs.start(f"simulator-{profile.name}", argv, cpu=LOAD_CPU)
    wait_http(
        proc,
        f"http://127.0.0.1:{port}/v1/models",
        timeout=30,
        headers={"Authorization": f"Bearer {SIM_KEY}"},
        ok=lambda s: s == 200,
    )
    return proc


def simulator_available() -> bool:
    out = subprocess.run([str(VENV_BIN / "aigate"), "simulator", "--help"], check=False, capture_output=True, text=True)
    return out.returncode == 0 and "--chunk-interval-ms" in out.stdout


# --- aigate ---------------------------------------------------------------------------

# ``--app-cost``: the strategy's cost form. "flat" takes 1 credit at the reservation;
# "tokens" reserves a hold sized from the prompt's tiktoken count and max_tokens, then
# settles the actual charge after the call (one more transaction per request).
APP_COSTS = {
    "flat": {"asset": "ai_credit", "per_request": 1},
    "tokens": {"asset": "ai_credit", "per_1k_input_tokens": 1, "per_1k_output_tokens": 2},
}


def aigate_config(
    db_path: Path,
    port: int,
    sim_url: str,
    app_cost: str = "flat",
    database_url: str = "",
    redis_url: str = "",
    app_extra: dict | None = None,
) -> dict:
    """The real path: SQLite (or ``database_url``), usage logs, credits and a daily limit on
    the strategy. The bench users get credits and a limit they cannot exhaust.
    ``app_extra`` adds settings to the app (client trust: identity providers, edge limits)."""
    extra: dict = {"redis": {"url": redis_url}} if redis_url else {}
    database = {"url": database_url, "pool_size": 5} if database_url else {"url": f"sqlite:///{db_path}"}
    return {
        **extra,
        "server": {
            "listen": f"127.0.0.1:{port}",
            "admin_key": "bench-admin-key-0123456789-abcdefghijklmnop",
            "worker_id": 1,
        },
        "database": database,
        "logs": {"store_bodies": "errors", "body_max_bytes": 8192, "retention_days": 30},
        "simulator": {"enabled": False},
        "models": [{"name": "gpt-4o-mini", "price": {"input_price": 0.15, "output_price": 0.6, "cached_price": 0.075}}],
        "platforms": [
            {
                "id": "sim-openai",
                "type": "openai",
                "base_url": f"{sim_url}/v1",
                "api_key": SIM_KEY,
                "models": ["gpt-4o-mini"],
                "priority": 10,
                "timeout": {"connect_s": 5, "first_byte_s": 30, "total_s": 60},
            }
        ],
        "apps": [
            {
                "id": APP_ID,
                "name": "Benchmark app",
                "server_keys": [{"name": "bench", "key": SERVER_KEY}],
                "user_token_secret": "bench-token-secret-0123456789-abcdefghijklmnop",
                "assets": [
                    {
                        "name": "ai_credit",
                        "type": "consumable",
                        "initial_quantity": UNLIMITED,
                        "recoverable": True,
                        "recovery_period": 1,
                        "recovery_quantity": UNLIMITED,
                    }
                ],
                "strategies": [
                    {
                        "name": "free-normal",
                        "module": "chat",
                        "platforms": ["sim-openai"],
                        "model": "gpt-4o-mini",
                        "system_prompt": "现在你扮演 {{ .example_string }}, 告诉我如何使用 "
                        "{{ .example_object.key }} 完成 {{ .example_object.key2 }}。",
                        "params": {"temperature": 1, "max_tokens": 1000},
                        "history": {"save": True, "context_messages": 20},
                        "cost": APP_COSTS[app_cost],
                        "limit": {"count": UNLIMITED, "period": "day"},
                    }
                ],
                "relay_tokens": [{"name": "bench", "key": RELAY_KEY}],
                **(app_extra or {}),
            }
        ],
    }


def start_aigate(procs: Processes, run_dir: Path, sim_url: str, app_cost: str = "flat", **config) -> tuple[Proc, str]:
    """aigate with ``aigate_config(..., app_cost, **config)``, on the gateway core."""
    port = free_port()
    cfg_path = run_dir / "aigate.yaml"
    cfg = aigate_config(run_dir / "aigate.db", port, sim_url, app_cost, **config)
    cfg_path.write_text(yaml.safe_dump(cfg, allow_unicode=True, sort_keys=False))
    argv = [str(VENV_BIN / "aigate"), "serve", "--config", str(cfg_path), "--log-level", "WARNING"]
    proc = procs.start("aigate", argv, cpu=GATEWAY_CPU, cwd=run_dir)
    url = f"http://127.0.0.1:{port}"
    wait_http(proc, f"{url}/healthz", timeout=60, ok=lambda s: s == 200)
    return proc, url


# --- bare reference proxy -------------------------------------------------------------


def bare_argv(python: str, port: int) -> list[str]:
    """The bare proxy's command line (run it with ``BARE_UPSTREAM`` set, from the repository)."""
    argv = [python, "-m", "uvicorn", "bench.bare_proxy:app", "--host", "127.0.0.1", "--port", str(port)]
    return argv + ["--loop", "uvloop", "--http", "httptools", "--no-access-log", "--log-level", "warning"]


def start_bare(procs: Processes, sim_url: str) -> tuple[Proc, str]:
    port = free_port()
    argv = bare_argv(sys.executable, port)
    env = {**os.environ, "BARE_UPSTREAM": sim_url}
    proc = procs.start("bare", argv, cpu=GATEWAY_CPU, env=env, cwd=REPO)
    url = f"http://127.0.0.1:{port}"
    wait_http(proc, f"{url}/v1/chat/completions", timeout=30)  # GET answers 405 once up
    return proc, url


# --- LiteLLM ----------------------------------------------------------------------------


def ensure_litellm(spec: str = LITELLM_SPEC) -> Path:
    """LiteLLM's proxy in its own venv, cached between runs (re-created when ``spec`` changes)."""
    marker = LITELLM_VENV / ".installed"
    binary = LITELLM_VENV / "bin" / "litellm"
    if marker.exists() and marker.read_text() == spec and binary.exists():
        return binary
    print(f"installing {spec} into {LITELLM_VENV.relative_to(REPO)} (cached for later runs)...", flush=True)
    started = time.monotonic()
    WORK.mkdir(parents=True, exist_ok=True)
    if not (LITELLM_VENV / "bin" / "python").exists():
        subprocess.run([sys.executable, "-m", "venv", str(LITELLM_VENV)], check=True)
    pip = [str(LITELLM_VENV / "bin" / "python"), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
    out = subprocess.run([*pip, spec], check=False, capture_output=True, text=True)
    if out.returncode != 0:
        tail = "\n".join(ln for ln in out.stderr.splitlines() if not ln.startswith("WARNING"))[-2000:]
        raise RuntimeError(f"pip install {spec} failed:\n{tail}")
    marker.write_text(spec)
    print(f"  done in {time.monotonic() - started:.0f} s", flush=True)
    return binary


def litellm_version() -> str:
    out = subprocess.run(
        [str(LITELLM_VENV / "bin" / "python"), "-c", "import importlib.metadata as m; print(m.version('litellm'))"],
        check=False,
        capture_output=True,
        text=True,
    )
    return out.stdout.strip() or "unknown"


def litellm_config(sim_url: str) -> dict:
    return {
        "model_list": [
            {
                "model_name": "gpt-4o-mini",
                "litellm_params": {"model": "openai/gpt-4o-mini", "api_base": f"{sim_url}/v1", "api_key": SIM_KEY},
            }
        ],
        "litellm_settings": {
            "set_verbose": False,
            "callbacks": [],
            "success_callback": [],
            "failure_callback": [],
            "telemetry": False,
        },
        "general_settings": {"master_key": LITELLM_KEY},
    }


def start_litellm(procs: Processes, run_dir: Path, sim_url: str, binary: Path) -> tuple[Proc, str]:
    port = free_port()
    cfg_path = run_dir / "litellm.yaml"
    cfg_path.write_text(yaml.safe_dump(litellm_config(sim_url), sort_keys=False))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_URL", "LITELLM_"))}
    env.update(
        {
            "LITELLM_LOCAL_MODEL_COST_MAP": "True",  # no network fetch of the price map at start
            "LITELLM_LOG": "ERROR",
            "LITELLM_TELEMETRY": "False",
            "DISABLE_SCHEMA_UPDATE": "True",
        }
    )
    argv = [str(binary), "--config", str(cfg_path), "--host", "127.0.0.1", "--port", str(port), "--num_workers", "1"]
    proc = procs.start("litellm", argv, cpu=GATEWAY_CPU, env=env, cwd=run_dir)
    url = f"http://127.0.0.1:{port}"
    wait_http(proc, f"{url}/health/liveliness", timeout=180, ok=lambda s: s == 200)
    return proc, url
