"""``poolwarden token``: create and revoke API tokens in the store.

The secret is printed once, on stdout (with ``--json`` inside the one JSON document), and
nowhere else: the store keeps only its digest, and nothing is logged but its id.
"""

from __future__ import annotations

from typing import Annotated

import typer

from poolwarden.cli import common
from poolwarden.cli.common import JsonOpt, StoreOpt, emit_json, err, errors_to_exit, out

token_app = typer.Typer(no_args_is_help=True, help="API tokens: create, revoke.")


@token_app.command("create")
def token_create(
    role: Annotated[str, typer.Option("--role", help="viewer | operator | admin")],
    name: Annotated[str, typer.Option(
        "--name", help="Who holds it: the author of what is done with it.")],
    store: StoreOpt = None, as_json: JsonOpt = False,
) -> None:
    """Create a token and print its secret: this is the only time it is shown."""
    from poolwarden.api.auth import create_token, token_id
    from poolwarden.store.db import Store

    with errors_to_exit(as_json):
        db = Store.open(store or common.default_store_url())
        try:
            secret = create_token(db, role, name)
        finally:
            db.close()
    if as_json:
        emit_json({"token": secret, "token_id": token_id(secret), "name": name, "role": role})
        return
    err.print(f"token {token_id(secret)} for {name} ({role}); store the secret now, "
              "it is not shown again:", markup=False)
    out.print(secret, markup=False, soft_wrap=True)


@token_app.command("revoke")
def token_revoke(
    token: Annotated[str, typer.Argument(help="The token's id (its first characters).")],
    store: StoreOpt = None, as_json: JsonOpt = False,
) -> None:
    """Stop a token from working; its row stays for the audit trail."""
    from poolwarden.api.auth import revoke, token_id
    from poolwarden.store.db import Store

    with errors_to_exit(as_json):
        db = Store.open(store or common.default_store_url())
        try:
            revoke(db, token)
        finally:
            db.close()
    if as_json:
        emit_json({"revoked": token_id(token)})
    else:
        err.print(f"token {token_id(token)} revoked", markup=False)
