"""``onceonly keys new``: an Ed25519 signing key per authority (and one for the distributor), X-Road style."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from onceonly.cli.common import console
from onceonly.errors import ConfigError

app = typer.Typer(
    help="Signing keys for change events (ONCEONLY_SIGNATURES=require).\n\n"
    "Example:  onceonly keys new distributor --dir keys",
    no_args_is_help=True,
)


@app.command()
def new(
    department: Annotated[str, typer.Argument(help="a department code, or 'distributor' (it signs the inboxes)")],
    folder: Annotated[Path, typer.Option("--dir", help="the key folder (ONCEONLY_SIGNING_KEYS)")] = Path("keys"),
) -> None:
    """Make a key pair: <dir>/<dept>.key.pem stays with the signer (mode 0600), <dir>/<dept>/<fingerprint>.pem
    goes to every verifier. Set ONCEONLY_SIGNING_KEY_PASSPHRASE to encrypt the private key.

    Example:  onceonly keys new public_security --dir /etc/onceonly/keys
    """
    from onceonly.catalog import load_departments
    from onceonly.signing import DISTRIBUTOR, write_keypair

    if department != DISTRIBUTOR:
        load_departments().get(department)  # an unknown code is a clear error
    passphrase = os.environ.get("ONCEONLY_SIGNING_KEY_PASSPHRASE")
    try:
        signer = write_keypair(folder, department, passphrase.encode() if passphrase else None)
    except OSError as e:
        raise ConfigError(f"{folder}: {e.strerror}") from e
    console.print(f"{department}: key {signer.key_id}", highlight=False)
    console.print(f"  private: {folder / f'{department}.key.pem'} (keep it on the signer's host only)", highlight=False)
    console.print(f"  public:  {folder / department}/ (copy to every verifier's key folder)", highlight=False)
