"""``evidex serve`` (answers, CDS Hooks and search), ``evidex serve-search`` (search only) and
``evidex keys new`` (the service's API keys)."""

from __future__ import annotations

from typing import Annotated

import typer

from ui.cli.app import ConfigOpt, StoreOpt, app, command, err, keys_app, load, out


@command(app, "serve")
def serve(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="Port.")] = 8765,
    search_only: Annotated[
        bool, typer.Option("--search-only", help="Only /search, /retrieve, /health.")
    ] = False,
    store: StoreOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Serve POST /ask (JSON or server-sent events), CDS Hooks (GET /cds-services, POST
    /cds-services/{id}), POST /search, POST /retrieve and GET /health over HTTP.

    On an address other than loopback it needs API keys (service.api_keys; evidex keys new)."""
    settings = load(config, store)
    say = lambda where: err.print(where)  # noqa: E731
    if search_only:
        from retrieval.service import serve as serve_search_only

        serve_search_only(settings, host, port, on_ready=say)
        return
    from answer.service import serve as serve_all

    serve_all(settings, host, port, on_ready=say, store=store)


@command(app, "serve-search")
def serve_search(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="Port.")] = 8765,
    store: StoreOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Serve POST /search, POST /retrieve (Search-R1 shape) and GET /health over HTTP.

    On an address other than loopback it needs API keys (service.api_keys; evidex keys new)."""
    from retrieval.service import serve

    serve(load(config, store), host, port, on_ready=lambda where: err.print(where))


@command(keys_app, "new")
def keys_new(
    name: Annotated[
        str, typer.Option(help="Who the key is for (printed beside the hash, for your notes).")
    ] = "client",
) -> None:
    """Make an API key for the search service: the key is printed once on stdout (give it to
    the client), its hash on stderr (put it in service.api_keys)."""
    from retrieval.service import new_key

    key, digest = new_key()
    out.print(key, markup=False, highlight=False)
    err.print(
        f"key for {name!r} printed above, shown once. Add its hash to the settings:\n"
        f'  [service]\n  api_keys = ["{digest}"]\n'
        "and give the client the key as 'Authorization: Bearer KEY' (RL rollouts read "
        "EVIDEX_SEARCH_API_KEY).",
        markup=False,
        highlight=False,
    )
