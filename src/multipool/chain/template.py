"""From a daemon's block template to stratum work, and from a solved share to a block.

:func:`parse_template` checks every field the pool relies on (a daemon answer is input
like any other) and :class:`Work` holds what one stratum job needs: the split coinbase,
the merkle branch and the transactions to put behind the coinbase when a share solves
the block.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from multipool.chain.coinbase import CoinbaseParts, TxOut, build_coinbase
from multipool.chain.header import build_header
from multipool.chain.merkle import coinbase_merkle_branch, root_from_branch
from multipool.chain.pow import bits_to_target, sha256d
from multipool.chain.serialize import compact_size, hex_to_bytes, hex_to_le
from multipool.errors import SerializationError, TemplateError

# Litecoin's MWEB data follows the transactions behind this marker byte.
MWEB_MARKER = b"\x01"


@dataclass(frozen=True, slots=True)
class BlockTemplate:
    """The fields of a getblocktemplate answer the pool uses, decoded."""

    height: int
    version: int
    prev_hash_le: bytes
    bits: int
    target: int
    curtime: int
    mintime: int
    coinbase_value: int
    tx_data: tuple[bytes, ...]
    txids_le: tuple[bytes, ...]
    witness_commitment: bytes | None
    mweb: bytes | None
    longpoll_id: str | None

    @property
    def prev_hash_hex(self) -> str:
        return self.prev_hash_le[::-1].hex()


def _field(tmpl: dict[str, Any], key: str, kind: type) -> Any:
    if key not in tmpl:
        raise TemplateError(f"block template has no {key!r}")
    value = tmpl[key]
    if not isinstance(value, kind) or isinstance(value, bool):
        raise TemplateError(f"block template {key!r} is {type(value).__name__}, "
                            f"expected {kind.__name__}")
    return value


def parse_template(tmpl: object) -> BlockTemplate:
    """Given a getblocktemplate result, return it decoded or raise TemplateError naming
    the bad field."""
    if not isinstance(tmpl, dict):
        raise TemplateError(f"block template is {type(tmpl).__name__}, expected an object")
    try:
        txs = _field(tmpl, "transactions", list)
        tx_data: list[bytes] = []
        txids: list[bytes] = []
        for i, tx in enumerate(txs):
            if not isinstance(tx, dict):
                raise TemplateError(f"block template transaction {i} is not an object")
            tx_data.append(hex_to_bytes(tx.get("data"), f"transactions[{i}].data"))
            # 'txid' (no witness) builds the merkle tree; old daemons only give 'hash'.
            txid_hex = tx.get("txid", tx.get("hash"))
            txids.append(hex_to_le(txid_hex, f"transactions[{i}].txid"))
        commitment = tmpl.get("default_witness_commitment")
        mweb = tmpl.get("mweb")
        bits_hex = _field(tmpl, "bits", str)
        try:
            bits = int(bits_hex, 16)
        except ValueError:
            raise TemplateError(f"block template 'bits' is not hex: {bits_hex!r}") from None
        target_hex = tmpl.get("target")
        target = int(target_hex, 16) if isinstance(target_hex, str) else bits_to_target(bits)
        height = _field(tmpl, "height", int)
        coinbase_value = _field(tmpl, "coinbasevalue", int)
        if height < 0 or coinbase_value < 0:
            raise TemplateError("block template height and coinbasevalue must not be negative")
        longpoll = tmpl.get("longpollid")
        return BlockTemplate(
            height=height,
            version=_field(tmpl, "version", int),
            prev_hash_le=hex_to_le(_field(tmpl, "previousblockhash", str), "previousblockhash"),
            bits=bits,
            target=target,
            curtime=_field(tmpl, "curtime", int),
            mintime=int(tmpl.get("mintime", 0)),
            coinbase_value=coinbase_value,
            tx_data=tuple(tx_data),
            txids_le=tuple(txids),
            witness_commitment=(hex_to_bytes(commitment, "default_witness_commitment")
                                if commitment is not None else None),
            mweb=hex_to_bytes(mweb, "mweb") if mweb is not None else None,
            longpoll_id=longpoll if isinstance(longpoll, str) else None,
        )
    except (SerializationError, ValueError) as exc:
        if isinstance(exc, TemplateError):
            raise
        raise TemplateError(f"block template: {exc}") from None


@dataclass(frozen=True, slots=True)
class Work:
    """One template made into stratum work for a given payout script."""

    template: BlockTemplate
    coinbase: CoinbaseParts
    merkle_branch: tuple[bytes, ...]

    def coinbase_txid(self, extranonce: bytes) -> bytes:
        return sha256d(self.coinbase.non_witness(extranonce))

    def header(self, extranonce: bytes, ntime: int, nonce: int, version: int) -> bytes:
        """Given the miner's extranonce1+2, ntime, nonce and version, return the header."""
        root = root_from_branch(self.coinbase_txid(extranonce), self.merkle_branch)
        t = self.template
        return build_header(version, t.prev_hash_le, root, ntime, t.bits, nonce)

    def block(self, header: bytes, extranonce: bytes) -> bytes:
        """Given a solved header and its extranonce, return the serialized block."""
        t = self.template
        parts = [header, compact_size(1 + len(t.tx_data)),
                 self.coinbase.with_witness(extranonce), *t.tx_data]
        if t.mweb is not None:
            parts += [MWEB_MARKER, t.mweb]
        return b"".join(parts)


def make_work(
    template: BlockTemplate, *, payout_script: bytes, extranonce_size: int, pool_tag: bytes
) -> Work:
    """Given a decoded template, the pool's payout script, the total extranonce size and
    the pool tag, return the stratum work: the whole coinbase value pays the pool."""
    coinbase = build_coinbase(
        height=template.height,
        outputs=[TxOut(template.coinbase_value, payout_script)],
        extranonce_size=extranonce_size,
        pool_tag=pool_tag,
        witness_commitment=template.witness_commitment,
    )
    return Work(template, coinbase, tuple(coinbase_merkle_branch(template.txids_le)))
