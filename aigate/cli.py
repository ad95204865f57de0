"""The ``aigate`` command line."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import typer
from rich.console import Console

from aigate.config.loader import ConfigError, load_config

app = typer.Typer(
    help="aigate: a self-hosted AI backend for apps.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
config_app = typer.Typer(help="Work with configuration files.", no_args_is_help=True)
token_app = typer.Typer(help="User tokens.", no_args_is_help=True)
app.add_typer(config_app, name="config")
app.add_typer(token_app, name="token")

console = Console(stderr=True)
ConfigOption = typer.Option(None, "--config", "-c", envvar="AIGATE_CONFIG", help="YAML config file")


def _load(path: Path | None):
    if path is None:
        console.print("[red]no configuration: pass --config or set AIGATE_CONFIG[/red]")
        raise typer.Exit(2)
    try:
        return load_config(path)
    except ConfigError as exc:
        console.print(f"[red]{path}: {len(exc.errors)} error(s)[/red]")
        for err in exc.errors:
            console.print(f"  {err}", markup=False, highlight=False)
        raise typer.Exit(1)


@app.command()
def serve(
    config: Path | None = ConfigOption,
    listen: str | None = typer.Option(None, help="host:port, overrides server.listen"),
    log_level: str = typer.Option("INFO", envvar="AIGATE_LOG_LEVEL"),
    access_log: bool = typer.Option(False, help="log every HTTP request"),
) -> None:
    """Validate the config, migrate the database, apply the config and serve."""
    import uvicorn

    from aigate import fdtable, logs
    from aigate.app import create_app

    cfg = _load(config)
    logs.configure(log_level)
    fdtable.raise_limit_and_grow()  # before any thread starts (see aigate.fdtable)
    host, _, port = (listen or cfg.server.listen).rpartition(":")
    uvicorn.run(
        create_app(cfg),
        host=host or "127.0.0.1",
        port=int(port),
        loop="uvloop",
        http="httptools",
        lifespan="on",
        access_log=access_log,
        log_config=None,
        timeout_graceful_shutdown=30,
    )


@app.command()
def migrate(config: Path | None = ConfigOption) -> None:
    """Bring the database schema up to date."""
    from aigate.store.db import create_engine
    from aigate.store.migrate import upgrade

    cfg = _load(config)

    async def run() -> None:
        engine = create_engine(cfg.database.url)
        await upgrade(engine)
        await engine.dispose()

    asyncio.run(run())
    console.print("database is up to date")


@config_app.command("check")
def config_check(path: Path) -> None:
    """Validate a config file; list every error with its path."""
    cfg = _load(path)
    console.print(f"{path}: ok ({len(cfg.platforms)} platforms, {len(cfg.models)} models, {len(cfg.apps)} apps)")


@app.command()
def prices(config: Path | None = ConfigOption) -> None:
    """List every model's price (per million tokens) and where it comes from: the
    configuration, or the price database shipped with aigate (genai-prices)."""
    from rich.table import Table

    from aigate.config.price_db import listing

    table = Table("model", "input /1M", "output /1M", "cached /1M", "per request", "source")
    for name, price, source in listing(_load(config)):
        if price is None:
            table.add_row(name, "-", "-", "-", "-", source)
            continue
        table.add_row(
            name,
            *(
                _per_million(getattr(price, f), getattr(price, f + "_unit"))
                for f in ("input_price", "output_price", "cached_price")
            ),
            _plain(price.per_request_price),
            source,
        )
    Console(width=200).print(table)


def _per_million(price, unit: int) -> str:
    return _plain(price * 1_000_000 / unit)


def _plain(value) -> str:
    return format(value.normalize(), "f")


@token_app.command("mint")
def token_mint(
    app_id: str = typer.Option(..., "--app"),
    user_id: str = typer.Option(..., "--user"),
    ttl: int = typer.Option(3600, help="seconds"),
    config: Path | None = ConfigOption,
) -> None:
    """Print a user token for APP and USER, signed with the app's secret from the config."""
    from aigate.auth.tokens import mint_user_token

    cfg = _load(config)
    found = next((a for a in cfg.apps if a.id == app_id), None)
    if found is None:
        console.print(f"[red]unknown app '{app_id}'[/red]")
        raise typer.Exit(1)
    token, _ = mint_user_token(app_id, user_id, found.user_token_secret, ttl)
    typer.echo(token)


@app.command()
def simulator(
    host: str = typer.Option("127.0.0.1"),
    port: int = typer.Option(8090),
    latency_ms: int = typer.Option(0, help="delay before each response"),
    ttft_ms: int = typer.Option(0, help="stream: delay before the first chunk"),
    chunks: int = typer.Option(8, help="stream: chunks per reply"),
    chunk_interval_ms: int = typer.Option(0, help="stream: delay between chunks"),
    reply_chars: int = typer.Option(0, help="reply with this many characters instead of the echo"),
) -> None:
    """Run the provider simulator (OpenAI, Anthropic, Gemini, async jobs wire formats)."""
    from aigate import fdtable
    from aigate.simulator.server import run
    from aigate.simulator.text import filler

    fdtable.raise_limit_and_grow()  # as ``serve`` does: a load test's streams hold many files

    extra = {"reply": filler(reply_chars)} if reply_chars > 0 else {}
    run(
        host=host,
        port=port,
        latency_ms=latency_ms,
        ttft_ms=ttft_ms,
        chunks=chunks,
        chunk_interval_ms=chunk_interval_ms,
        **extra,
    )


def main() -> None:  # pragma: no cover
    app()


if __name__ == "__main__":  # pragma: no cover
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()


# --- console operators (recover access from the shell)

operator_app = typer.Typer(help="Console operator accounts.", no_args_is_help=True)
app.add_typer(operator_app, name="operator")
PasswordOption = typer.Option(
    ...,
    prompt=True,
    confirmation_prompt=True,
    hide_input=True,
    envvar="AIGATE_OPERATOR_PASSWORD",
    help="the new password",
)


async def _with_db(cfg, work):
    from aigate.store.db import create_engine
    from aigate.store.migrate import upgrade

    engine = create_engine(cfg.database.url)
    try:
        await upgrade(engine)
        async with engine.begin() as conn:
            return await work(conn)
    finally:
        await engine.dispose()


def _check(errors: list[str]) -> None:
    if errors:
        for err in errors:
            console.print(f"[red]{err}[/red]", markup=True, highlight=False)
        raise typer.Exit(2)


@operator_app.command("add")
def operator_add(
    name: str,
    role: str = typer.Option("admin", help="admin or viewer"),
    password: str = PasswordOption,
    config: Path | None = ConfigOption,
) -> None:
    """Create a console operator."""
    from aigate.auth import operators

    cfg = _load(config)
    _check(operators.check_fields(name, password, role))

    async def work(conn):
        if await operators.get(conn, name) is not None:
            console.print(f"[red]operator '{name}' exists; use reset-password[/red]")
            raise typer.Exit(1)
        await operators.create(conn, name, password, role)

    asyncio.run(_with_db(cfg, work))
    console.print(f"operator '{name}' ({role}) created")


@operator_app.command("reset-password")
def operator_reset_password(
    name: str,
    password: str = PasswordOption,
    config: Path | None = ConfigOption,
) -> None:
    """Set a new password for an operator (ends their console sessions)."""
    from aigate.auth import operators

    cfg = _load(config)
    _check(operators.check_fields(password=password))

    async def work(conn):
        if await operators.get(conn, name) is None:
            console.print(f"[red]no operator '{name}'[/red]")
            raise typer.Exit(1)
        await operators.change(conn, name, password=password)

    asyncio.run(_with_db(cfg, work))
    console.print(f"password of '{name}' reset; their sessions have ended")
