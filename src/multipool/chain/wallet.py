"""The pool wallet at engine start: loaded (created on a fresh daemon), and the coinbase
address taken from it once and kept, so a restart never moves the pool's coinbases."""

from __future__ import annotations

import logging
from pathlib import Path

from multipool.atomicfile import write_atomically
from multipool.chain.rpc import DaemonClient, DaemonError

RPC_WALLET_NOT_FOUND = -18
RPC_WALLET_ALREADY_LOADED = -35
ADDRESS_FILE = "pool-address"


async def ensure_wallet(daemon: DaemonClient, name: str, logger: logging.Logger) -> None:
    """Given a wallet name, make sure the daemon has it loaded: load it, or create it
    when the datadir has none of that name."""
    if name in await daemon.listwallets():
        return
    try:
        await daemon.loadwallet(name)
        logger.info("loaded wallet %r", name)
        return
    except DaemonError as exc:
        if exc.code == RPC_WALLET_ALREADY_LOADED:
            return
        if exc.code != RPC_WALLET_NOT_FOUND:
            raise
    await daemon.createwallet(name)
    logger.info("created wallet %r: back it up (multipool backup)", name)


async def kept_address(daemon: DaemonClient, state_dir: Path, logger: logging.Logger) -> str:
    """Return the pool's coinbase address: the one kept in ``state_dir``, or a new one
    of the wallet, written there first (fsynced) so it survives a crash."""
    path = state_dir / ADDRESS_FILE
    if path.exists():
        return path.read_text(encoding="utf-8").strip()
    address = await daemon.getnewaddress("pool coinbase")
    write_atomically(path, (address + "\n").encode(), mode=0o600)
    logger.info("pool coinbase address %s (kept in %s)", address, path)
    return address
