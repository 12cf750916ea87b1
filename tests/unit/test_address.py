"""Address decoding against published vectors, never against our own encoder.

Sources, quoted verbatim:
- BIP173 and BIP350 test vectors (github.com/bitcoin/bips, bip-0173 / bip-0350.mediawiki).
- bitcoin/bitcoin src/test/data/key_io_valid.json ("testnet4" rows are "test" here:
  same version bytes and hrp).
- litecoin-project/litecoin, dogecoin/dogecoin (1.14) and peercoin/peercoin
  src/test/data/key_io_valid.json (address -> scriptPubKey rows).
- thorchain thornode common/pubkey_test.go: one public key's addresses on BTC, LTC and
  DOGE main/test/regtest("mocknet"); the expected hash is HASH160 of the key, computed
  here by hashlib, so the scripts do not come from any address code at all.
- Bitcoin's genesis coinbase public key and its well-known address.
"""

from __future__ import annotations

import hashlib

import pytest

from multipool.chain.address import (
    Bech32Variant,
    _regroup_5_to_8,
    address_to_script,
    decode_base58check,
    decode_bech32,
    encode_segwit_address,
    validate_address,
)
from multipool.chain.networks import NETWORKS, NetworkParams, get_network
from multipool.errors import AddressError, ConfigError


def net(coin: str, network: str) -> NetworkParams:
    return get_network(coin, network)


def hash160(data: bytes) -> bytes:
    try:
        ripemd = hashlib.new("ripemd160")
    except ValueError:  # OpenSSL 3 builds without the legacy provider
        pytest.skip("hashlib has no ripemd160 here")
    ripemd.update(hashlib.sha256(data).digest())
    return ripemd.digest()


# --- bech32 / bech32m strings (BIP173, BIP350) -------------------------------------------

BIP173_VALID_BECH32 = [
    "A12UEL5L",
    "a12uel5l",
    "an83characterlonghumanreadablepartthatcontainsthenumber1andtheexcludedcharactersbio1tt5tgs",
    "abcdef1qpzry9x8gf2tvdw0s3jn54khce6mua7lmqqqxw",
    "11qqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqc8247j",
    "split1checkupstagehandshakeupstreamerranterredcaperred2y9e3w",
    "?1ezyfcl",
]

BIP350_VALID_BECH32M = [
    "A1LQFN3A",
    "a1lqfn3a",
    "an83characterlonghumanreadablepartthatcontainsthetheexcludedcharactersbioandnumber11sg7hg6",
    "abcdef1l7aum6echk45nj3s0wdvt2fg8x9yrzpqzd3ryx",
    "11llllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllludsr8",
    "split1checkupstagehandshakeupstreamerranterredcaperredlc445v",
    "?1v759aa",
]


@pytest.mark.parametrize("text", BIP173_VALID_BECH32)
def test_bip173_valid_strings_decode_as_bech32(text: str):
    hrp, _, variant = decode_bech32(text)
    assert variant is Bech32Variant.BECH32
    assert hrp == text[: text.rfind("1")].lower()


@pytest.mark.parametrize("text", BIP350_VALID_BECH32M)
def test_bip350_valid_strings_decode_as_bech32m(text: str):
    hrp, _, variant = decode_bech32(text)
    assert variant is Bech32Variant.BECH32M
    assert hrp == text[: text.rfind("1")].lower()


@pytest.mark.parametrize(("text", "reason"), [
    # BIP173
    ("\x201nwldj5", "outside printable ASCII"),
    ("\x7f1axkwrx", "outside printable ASCII"),
    ("\x801eym55h", "outside printable ASCII"),
    ("an84characterslonghumanreadablepartthatcontainsthenumber1andtheexcludedcharactersbio1569pvx",
     "too long"),
    ("pzry9x0s0muk", "no '1' separator"),
    ("1pzry9x0s0muk", "empty human-readable part"),
    ("x1b4n0q5v", "not a bech32 character"),
    ("li1dgmt3", "checksum shorter"),
    ("de1lg7wt\xff", "outside printable ASCII"),
    ("A1G7SGD8", "bad checksum"),
    ("10a06t8", "empty human-readable part"),
    ("1qzzfhee", "empty human-readable part"),
    # BIP350
    ("\x201xj0phk", "outside printable ASCII"),
    ("\x7f1g6xzxy", "outside printable ASCII"),
    ("\x801vctc34", "outside printable ASCII"),
    ("an84characterslonghumanreadablepartthatcontainsthetheexcludedcharactersbioandnumber11d6pts4",
     "too long"),
    ("qyrz8wqd2c9m", "no '1' separator"),
    ("1qyrz8wqd2c9m", "empty human-readable part"),
    ("y1b0jsk6g", "not a bech32 character"),
    ("lt1igcx5c0", "not a bech32 character"),
    ("in1muywd", "checksum shorter"),
    ("mm1crxm3i", "not a bech32 character"),
    ("au1s5cgom", "not a bech32 character"),
    ("M1VUXWEZ", "bad checksum"),
    ("16plkw9", "empty human-readable part"),
    ("1p2gdwpf", "empty human-readable part"),
])
def test_bip173_bip350_invalid_strings_are_refused_with_reason(text: str, reason: str):
    with pytest.raises(AddressError, match=reason):
        decode_bech32(text)


# --- segwit addresses -------------------------------------------------------------------

BIP350_VALID_SEGWIT = [
    ("BC1QW508D6QEJXTDG4Y5R3ZARVARY0C5XW7KV8F3T4",
     "0014751e76e8199196d454941c45d1b3a323f1433bd6"),
    ("tb1qrp33g0q5c5txsp9arysrx4k6zdkfs4nce4xj0gdcccefvpysxf3q0sl5k7",
     "00201863143c14c5166804bd19203356da136c985678cd4d27a1b8c6329604903262"),
    ("bc1pw508d6qejxtdg4y5r3zarvary0c5xw7kw508d6qejxtdg4y5r3zarvary0c5xw7kt5nd6y",
     "5128751e76e8199196d454941c45d1b3a323f1433bd6751e76e8199196d454941c45d1b3a323f1433bd6"),
    ("BC1SW50QGDZ25J", "6002751e"),
    ("bc1zw508d6qejxtdg4y5r3zarvaryvaxxpcs", "5210751e76e8199196d454941c45d1b3a323"),
    ("tb1qqqqqp399et2xygdj5xreqhjjvcmzhxw4aywxecjdzew6hylgvsesrxh6hy",
     "0020000000c4a5cad46221b2a187905e5266362b99d5e91c6ce24d165dab93e86433"),
    ("tb1pqqqqp399et2xygdj5xreqhjjvcmzhxw4aywxecjdzew6hylgvsesf3hn0c",
     "5120000000c4a5cad46221b2a187905e5266362b99d5e91c6ce24d165dab93e86433"),
    ("bc1p0xlxvlhemja6c4dqv22uapctqupfhlxm9h8z3k2e72q4k9hcz7vqzk5jj0",
     "512079be667ef9dcbbac55a06295ce870b07029bfcdb2dce28d959f2815b16f81798"),
]


def _bitcoin_net_for(address: str) -> NetworkParams:
    return net("bitcoin", "main" if address.lower().startswith("bc1") else "test")


@pytest.mark.parametrize(("address", "script"), BIP350_VALID_SEGWIT)
def test_bip350_valid_segwit_addresses_give_their_script(address: str, script: str):
    params = _bitcoin_net_for(address)
    assert address_to_script(address, params).hex() == script
    # BIP173: either all upper or all lower case is the same address.
    assert address_to_script(address.swapcase(), params).hex() == script


@pytest.mark.parametrize(("address", "reason"), [
    # BIP350
    ("tc1p0xlxvlhemja6c4dqv22uapctqupfhlxm9h8z3k2e72q4k9hcz7vq5zuyut", "another network"),
    ("bc1p0xlxvlhemja6c4dqv22uapctqupfhlxm9h8z3k2e72q4k9hcz7vqh2y7hd", "checksum variant"),
    ("tb1z0xlxvlhemja6c4dqv22uapctqupfhlxm9h8z3k2e72q4k9hcz7vqglt7rf", "checksum variant"),
    ("BC1S0XLXVLHEMJA6C4DQV22UAPCTQUPFHLXM9H8Z3K2E72Q4K9HCZ7VQ54WELL", "checksum variant"),
    ("bc1qw508d6qejxtdg4y5r3zarvary0c5xw7kemeawh", "checksum variant"),
    ("tb1q0xlxvlhemja6c4dqv22uapctqupfhlxm9h8z3k2e72q4k9hcz7vq24jc47", "checksum variant"),
    ("bc1p38j9r5y49hruaue7wxjce0updqjuyyx0kh56v8s25huc6995vvpql3jow4", "not a bech32 character"),
    ("BC130XLXVLHEMJA6C4DQV22UAPCTQUPFHLXM9H8Z3K2E72Q4K9HCZ7VQ7ZWS8R", "witness version 17"),
    ("bc1pw5dgrnzv", "program of 1 bytes"),
    ("bc1p0xlxvlhemja6c4dqv22uapctqupfhlxm9h8z3k2e72q4k9hcz7v8n0nx0muaewav253zgeav",
     "program of 41 bytes"),
    ("BC1QR508D6QEJXTDG4Y5R3ZARVARYV98GJ9P", "version 0 witness program of 16 bytes"),
    ("tb1p0xlxvlhemja6c4dqv22uapctqupfhlxm9h8z3k2e72q4k9hcz7vq47Zagq", "mixed case"),
    ("bc1p0xlxvlhemja6c4dqv22uapctqupfhlxm9h8z3k2e72q4k9hcz7v07qwwzcrf", "padding"),
    ("tb1p0xlxvlhemja6c4dqv22uapctqupfhlxm9h8z3k2e72q4k9hcz7vpggkg4j", "padding"),
    ("bc1gmk9yu", "empty data part"),
    # BIP173 (those not repeated above)
    ("tc1qw508d6qejxtdg4y5r3zarvary0c5xw7kg3g4ty", "another network"),
    ("bc1qw508d6qejxtdg4y5r3zarvary0c5xw7kv8f3t5", "bad checksum"),
    ("BC13W508D6QEJXTDG4Y5R3ZARVARY0C5XW7KN40WF2", "witness version 17"),
    ("bc1rw5uspcuh", "program of 1 bytes"),
    ("bc10w508d6qejxtdg4y5r3zarvary0c5xw7kw508d6qejxtdg4y5r3zarvary0c5xw7kw5rljs90",
     "program of 41 bytes"),
    ("tb1qrp33g0q5c5txsp9arysrx4k6zdkfs4nce4xj0gdcccefvpysxf3q0sL5k7", "mixed case"),
    ("bc1zw508d6qejxtdg4y5r3zarvaryvqyzf3du", "padding"),
    ("tb1qrp33g0q5c5txsp9arysrx4k6zdkfs4nce4xj0gdcccefvpysxf3pjxtptv", "padding"),
    # BIP173's valid v1+ addresses use bech32, which BIP350 made invalid.
    ("bc1pw508d6qejxtdg4y5r3zarvary0c5xw7kw508d6qejxtdg4y5r3zarvary0c5xw7k7grplx",
     "checksum variant"),
    ("BC1SW50QA3JX3S", "checksum variant"),
    ("bc1zw508d6qejxtdg4y5r3zarvaryvg6kdaj", "checksum variant"),
])
def test_bip173_bip350_invalid_segwit_addresses_are_refused_with_reason(address: str, reason: str):
    with pytest.raises(AddressError, match=reason) as caught:
        address_to_script(address, _bitcoin_net_for(address))
    assert repr(address) in str(caught.value)


# --- address -> script pairs published by each coin -------------------------------------

KEY_IO_VALID = [
    # bitcoin/bitcoin key_io_valid.json
    ("bitcoin", "main", "1FsSia9rv4NeEwvJ2GvXrX7LyxYspbN2mo",
     "76a914a31c06bd463e3923bc1aadbde48b16976c08071788ac"),
    ("bitcoin", "main", "36j4NfKv6Akva9amjWrLG6MuSQym1GuEmm",
     "a914373b819a068f32b7a6b38b6b38729647cfde01c287"),
    ("bitcoin", "test", "mzK2FFDEhxqHcmrJw1ysqFkVyhUULo45hZ",
     "76a914ce28b26c57472737f5c3561a1761185bd8589a4388ac"),
    ("bitcoin", "test", "2NC2hEhe28ULKAJkW5MjZ3jtTMJdvXmByvK",
     "a914ce0bba75891ff9ec60148d4bd4a09ee2dc5c933187"),
    ("bitcoin", "regtest", "n4fajahJrAuKbN7uNsKjLjQkz9Qn5ewJXQ",
     "76a914fdeca3b08e38af53d7c4c60e3ad208ce5066441088ac"),
    ("bitcoin", "regtest", "2MxFajLApXpYk4VodBSZSt7rw8y4ryABkfA",
     "a91436e9f191e0b75036a77f65e2eaa4752443233fbe87"),
    ("bitcoin", "main", "bc1qvyq0cc6rahyvsazfdje0twl7ez82ndmuac2lhv",
     "00146100fc6343edc8c874496cb2f5bbfec88ea9b77c"),
    ("bitcoin", "main", "bc1qyucykdlhp62tezs0hagqury402qwhk589q80tqs5myh3rxq34nwqhkdhv7",
     "002027304b37f70e94bc8a0fbf500e0c957a80ebda87280ef58214d92f119811acdc"),
    ("bitcoin", "main", "bc1p83n3au0rjylefxq2nc2xh2y4jzz4pm6zxj4mw5pagdjjr2a9f36s6jjnnu",
     "51203c671ef1e3913f94980a9e146ba895908550ef4234abb7503d436521aba54c75"),
    ("bitcoin", "main", "bc1z2rksukkjr8", "520250ed"),
    ("bitcoin", "test", "tb1qcrh3yqn4nlleplcez2yndq2ry8h9ncg3qh7n54",
     "0014c0ef1202759fff90ff19128936814321ee59e111"),
    ("bitcoin", "test", "tb1p35n52jy6xkm4wd905tdy8qtagrn73kqdz73xe4zxpvq9t3fp50aqk3s6gz",
     "51208d2745489a35b75734afa2da43817d40e7e8d80d17a26cd4460b0055c521a3fa"),
    ("bitcoin", "test", "tb1rgv5m6uvdk3kc7qsuz0c79v88ycr5w4wa",
     "53104329bd718db46d8f021c13f1e2b0e726"),
    ("bitcoin", "regtest", "bcrt1qdavt4j2sd7dlhqsavtnfxvzppw6k7qy97tmnu9",
     "00146f58bac9506f9bfb821d62e69330410bb56f0085"),
    ("bitcoin", "regtest", "bcrt1qan8gntac7z7me2ejt4hpru42ad2f759fmy0m3ejvs98656znv7eqga4uhv",
     "0020ecce89afb8f0bdbcab325d6e11f2aaeb549f50a9d91fb8e64c814faa685367b2"),
    ("bitcoin", "regtest", "bcrt1pfwxjqvtt4tcxrtdluukfmy2dv7xd2qzdfy6kajv5nwn4yam3wxkq3553uh",
     "51204b8d20316baaf061adbfe72c9d914d678cd5004d49356ec9949ba752777171ac"),
    ("bitcoin", "regtest",
     "bcrt1sx6p8njlx7h9mc2agz4yg82dzne23050ncq72cneeecez2pst8mahn8xecsf8g6hzx94420",
     "6028368279cbe6f5cbbc2ba8154883a9a29e5517d1f3c03cac4f39ce3225060b3efb799cd9c412746ae2"),
    # litecoin-project/litecoin key_io_valid.json
    ("litecoin", "main", "LT2KVaAy1ppRuxRgrS5RNU3vBsy7RibPeA",
     "76a914558dbca7118cd5894502767c7b2ffc21a22f54db88ac"),
    ("litecoin", "main", "MHrYRxAiMNBTku3eoDHwhA1LQGDjUStZW2",
     "a9146d328a5b2a20d943a641c8d29b6cc3c2d2df85d387"),
    ("litecoin", "main", "M9dw1FAoWpHC6PcMzoCHhqQ9McvTyG5Ywj",
     "a914130ef8742ad7492b389509252c6721775fb1127387"),
    ("litecoin", "main", "LbfVMz974gbbGFqXF7FZUpSBWSbwBHDwR5",
     "76a914b4565f467408e9e1c1d2a3b0ccdeff84db3a3b9388ac"),
    ("litecoin", "main", "MU2UAbDxiiirZuGTZ6nSaFajsXFkLHozcU",
     "a914dcc465d5dd517c24c4dc95d7a338fca76d753ddb87"),
    ("litecoin", "test", "mwXn5Vhicdav8Av3KMokx4YNuHoGRKxtWs",
     "76a914afa9e672141e283dfbcc1cf28f3793a856d3878488ac"),
    ("litecoin", "test", "QXaUgLHkZcbJb2j5XgMYzY8cF9YM48Y81Z",
     "a9147860667e60a6545e18e541984094b29c9c46991b87"),
    ("litecoin", "test", "QQjXG2nbVfxysmaEZQVL9TsS359WjDT5ux",
     "a9142d4d6b05448a911116292a177c04f7f6bd29ea2c87"),
    ("litecoin", "regtest", "mpWvR79tSrA5xeziB6mjNYWdaVRwBpgnUP",
     "76a91462b790654f809d32202587c6a43456ffc1965d8388ac"),
    ("litecoin", "regtest", "QgDNrG4nJpE4VV7PcFMFhkTgwAHWxWS7pj",
     "a914d71bee7a1395c10c9ca9a7f53ac086b53e74369d87"),
    ("litecoin", "regtest", "QfS38XTvXmuNFeyS8orinxHkDkonMDS1ih",
     "a914ce88c090d0ee540cab7e2d2286f686434d33d61987"),
    # dogecoin/dogecoin key_io_valid.json
    ("dogecoin", "main", "DEQU7G2Chw4r1gSKZt2GfKBpGbkbQSwp3S",
     "76a91465a16059864a2fdbc7c99a4723a8395bc6f188eb88ac"),
    ("dogecoin", "main", "A36czoRusM4VxnNiEjTaaDcMyr4GB73xw1",
     "a91474f209f6ea907e2ea48f74fae05782ae8a66525787"),
    ("dogecoin", "main", "9tg8sLnB9okjuNSdgtAWrNPcgijs1yMwBE",
     "a914188f91a931947eddd7432d6e614387e32b24470987"),
    ("dogecoin", "test", "nbpzakKSn16ZAp7nXuu9tELBrmiVpEyV1Q",
     "76a91453c0307d6851aa0ce7825ba883c6bd9ad242b48688ac"),
    ("dogecoin", "test", "2N2JD6wb56AfK4tfmM6PwdVmoYk2dCKf4Br",
     "a9146349a418fc4578d10a372b54b45c280cc8c4382f87"),
    # peercoin/peercoin key_io_valid.json (its v1+ rows predate bech32m and are left out)
    ("peercoin", "main", "PAz1sUkXnJAitytiKFQKfaLsEM3Eo3uQdN",
     "76a9141a421187fd9631ad18162bf5878f08b8ae6844d388ac"),
    ("peercoin", "main", "pMiNqgLMwvuHZP4pHn8Qy75qyPVMkw9ibf",
     "a914b15cafec3e69ca91499c2a68e4b38817ab0f108387"),
    ("peercoin", "main", "pc1q5kpgmmrzjgyy0kn56qzhxktdh5z77r67lzfc2j",
     "0014a5828dec62920847da74d00573596dbd05ef0f5e"),
    ("peercoin", "main", "pc1qan5rmka2t32tpytm38jm4wyamwdyeh30ullcdlhuxyqfl43nk99ss8s7sh",
     "0020ece83ddbaa5c54b0917b89e5bab89ddb9a4cde2fe7ff86fefc31009fd633b14b"),
    ("peercoin", "test", "n4Mz1Vpbf5yoGgpy9wvbP4dRRijrpFbQ1u",
     "76a914fa9894a258c527c0c43bd20c556637643de6b5b488ac"),
    ("peercoin", "test", "2N95QeVKKTnBdpGih5ge9U3rtGPquvv2FSU",
     "a914ada6c017da8bedad28c1da64b1d802e7bea12d5d87"),
    ("peercoin", "test", "tpc1qaql0alc4u75hn40j6rfyr54cqrva9y9c3rvj86",
     "0014e83efeff15e7a979d5f2d0d241d2b800d9d290b8"),
    ("peercoin", "regtest", "moXMpBkKyN9UEq2eo6eV3qvaws7HgYftek",
     "76a91457d4a3ae218f8b054352fffd042bd492768f604688ac"),
    ("peercoin", "regtest", "2N8GtjbvzxpRq7rVAz7pqKRrqWCM91nQiE1",
     "a914a4daa5a0e3c25de923c99ba8ddbfc920546422b087"),
    ("peercoin", "regtest", "pcrt1qwzzzysvdepp3av9xrhn94k9a4w52gnwjw8haf8",
     "0014708422418dc8431eb0a61de65ad8bdaba8a44dd2"),
    # Litecoin still accepts the P2SH version bytes it inherited from Bitcoin.
    ("litecoin", "main", "36j4NfKv6Akva9amjWrLG6MuSQym1GuEmm",
     "a914373b819a068f32b7a6b38b6b38729647cfde01c287"),
    ("litecoin", "test", "2NC2hEhe28ULKAJkW5MjZ3jtTMJdvXmByvK",
     "a914ce0bba75891ff9ec60148d4bd4a09ee2dc5c933187"),
    ("litecoin", "regtest", "2MxFajLApXpYk4VodBSZSt7rw8y4ryABkfA",
     "a91436e9f191e0b75036a77f65e2eaa4752443233fbe87"),
    # test and regtest share Base58 version bytes, so nothing can tell them apart.
    ("bitcoin", "regtest", "mzK2FFDEhxqHcmrJw1ysqFkVyhUULo45hZ",
     "76a914ce28b26c57472737f5c3561a1761185bd8589a4388ac"),
]


@pytest.mark.parametrize(("coin", "network", "address", "script"), KEY_IO_VALID)
def test_published_address_gives_published_script(
    coin: str, network: str, address: str, script: str
):
    assert address_to_script(address, net(coin, network)).hex() == script
    validate_address(address, net(coin, network))  # does not raise


def test_bitcoin_genesis_address_pays_hash160_of_the_genesis_key():
    genesis_key = bytes.fromhex(
        "04678afdb0fe5548271967f1a67130b7105cd6a828e03909a67962e0ea1f61deb6"
        "49f6bc3f4cef38c4f35504e51ec112de5c384df7ba0b8d578a4c702b6bf11d5f"
    )
    assert hash160(genesis_key).hex() == "62e907b15cbf27d5425399ebf6f0fb50ebb88f18"
    script = address_to_script("1A1zP1eP5QGefi2DMPTfTL5SLmv7DivfNa", net("bitcoin", "main"))
    assert script == b"\x76\xa9\x14" + hash160(genesis_key) + b"\x88\xac"


# thornode common/pubkey_test.go: (public key, {(coin, network): address}).
THORNODE_KEYS = [
    ("02b4632d08485ff1df2db55b9dafd23347d1c47a457072a1e87be26896549a8737", {
        ("bitcoin", "main"): "bc1qj08ys4ct2hzzc2hcz6h2hgrvlmsjynawlht528",
        ("bitcoin", "test"): "tb1qj08ys4ct2hzzc2hcz6h2hgrvlmsjynaw43s835",
        ("bitcoin", "regtest"): "bcrt1qj08ys4ct2hzzc2hcz6h2hgrvlmsjynawhcf2xa",
        ("litecoin", "main"): "ltc1qj08ys4ct2hzzc2hcz6h2hgrvlmsjynawmt3sjh",
        ("litecoin", "test"): "tltc1qj08ys4ct2hzzc2hcz6h2hgrvlmsjynawvejepa",
        ("litecoin", "regtest"): "rltc1qj08ys4ct2hzzc2hcz6h2hgrvlmsjynawf4nr3r",
        ("dogecoin", "main"): "DJcczDr7oNvfj5qP17Qa7p9ZUNTfnYYDJC",
        ("dogecoin", "test"): "nhfgiEb2jMPPc4Qa2w42NDjriEqxmHeSRG",
        ("dogecoin", "regtest"): "mtzUk1zTJzTdyC8Pz6PPPyCHTEL5RLVyDJ",
    }),
    ("037db227d7094ce215c3a0f57e1bcc732551fe351f94249471934567e0f5dc1bf7", {
        ("bitcoin", "main"): "bc1qzupk5lmc84r2dh738a9g3zscavannjy38ghlxu",
        ("bitcoin", "test"): "tb1qzupk5lmc84r2dh738a9g3zscavannjy3dwvva0",
        ("bitcoin", "regtest"): "bcrt1qzupk5lmc84r2dh738a9g3zscavannjy3084p2x",
        ("litecoin", "main"): "ltc1qzupk5lmc84r2dh738a9g3zscavannjy3r5dm7v",
        ("litecoin", "test"): "tltc1qzupk5lmc84r2dh738a9g3zscavannjy35xwjdx",
        ("litecoin", "regtest"): "rltc1qzupk5lmc84r2dh738a9g3zscavannjy3320gac",
        ("dogecoin", "main"): "D7EnB23qxiWTBGD1z9N6Ui7VXonCgY9eeE",
        ("dogecoin", "test"): "nWHqu2nktgyB4EnD1y1Yj7hnmgAVhpTUgC",
        ("dogecoin", "regtest"): "mhcdvpCBUL3RRNW2y8LuksADWfecEmkzju",
    }),
    ("03f98464e8d3fc8e275e34c6f8dc9b99aa244e37b0d695d0dfb8884712ed6d4d35", {
        ("bitcoin", "main"): "bc1qqqnde7kqe5sf96j6zf8jpzwr44dh4gkdek4rvd",
        ("bitcoin", "test"): "tb1qqqnde7kqe5sf96j6zf8jpzwr44dh4gkdnswsh7",
        ("bitcoin", "regtest"): "bcrt1qqqnde7kqe5sf96j6zf8jpzwr44dh4gkd3ehaqh",
        ("litecoin", "main"): "ltc1qqqnde7kqe5sf96j6zf8jpzwr44dh4gkda2085a",
        ("litecoin", "test"): "tltc1qqqnde7kqe5sf96j6zf8jpzwr44dh4gkd2cvw8h",
        ("litecoin", "regtest"): "rltc1qqqnde7kqe5sf96j6zf8jpzwr44dh4gkd05d5hf",
        ("dogecoin", "main"): "D59u6XAtQCybdvFB4ZLWH4h8cK5SY8show",
        ("dogecoin", "test"): "nUCxpXuoLBSKWtpN6NyxXUHRrBTjXLqFz1",
        ("dogecoin", "regtest"): "mfXkrKKDupWZt2YC3YKKZDjrbAwrBFwj8W",
    }),
]

THORNODE_CASES = [
    (pubkey, coin, network, address)
    for pubkey, addresses in THORNODE_KEYS
    for (coin, network), address in addresses.items()
]


@pytest.mark.parametrize(("pubkey", "coin", "network", "address"), THORNODE_CASES)
def test_one_key_on_three_coins_pays_hash160_of_the_key(
    pubkey: str, coin: str, network: str, address: str
):
    key_hash = hash160(bytes.fromhex(pubkey))
    expected = (
        b"\x00\x14" + key_hash
        if coin != "dogecoin"
        else b"\x76\xa9\x14" + key_hash + b"\x88\xac"
    )
    assert address_to_script(address, net(coin, network)) == expected


# --- refusals ---------------------------------------------------------------------------

@pytest.mark.parametrize(("address", "coin", "network", "reason"), [
    # mainnet on regtest and back, base58 and bech32
    ("1FsSia9rv4NeEwvJ2GvXrX7LyxYspbN2mo", "bitcoin", "regtest",
     "is for another network: unknown version byte 0x00 for bitcoin regtest"),
    ("n4fajahJrAuKbN7uNsKjLjQkz9Qn5ewJXQ", "bitcoin", "main",
     "is for another network: unknown version byte 0x6f for bitcoin main"),
    ("bc1qvyq0cc6rahyvsazfdje0twl7ez82ndmuac2lhv", "bitcoin", "regtest",
     "is for another network: expected prefix 'bcrt', got 'bc'"),
    ("bcrt1qdavt4j2sd7dlhqsavtnfxvzppw6k7qy97tmnu9", "bitcoin", "main",
     "is for another network: expected prefix 'bc', got 'bcrt'"),
    ("tb1qcrh3yqn4nlleplcez2yndq2ry8h9ncg3qh7n54", "bitcoin", "regtest",
     "expected prefix 'bcrt', got 'tb'"),
    ("ltc1qj08ys4ct2hzzc2hcz6h2hgrvlmsjynawmt3sjh", "litecoin", "regtest",
     "expected prefix 'rltc', got 'ltc'"),
    ("rltc1qj08ys4ct2hzzc2hcz6h2hgrvlmsjynawf4nr3r", "litecoin", "main",
     "expected prefix 'ltc', got 'rltc'"),
    ("tltc1qj08ys4ct2hzzc2hcz6h2hgrvlmsjynawvejepa", "litecoin", "regtest",
     "is for another network: expected prefix 'rltc'"),
    ("LT2KVaAy1ppRuxRgrS5RNU3vBsy7RibPeA", "litecoin", "regtest",
     "unknown version byte 0x30 for litecoin regtest"),
    # another coin
    ("1FsSia9rv4NeEwvJ2GvXrX7LyxYspbN2mo", "litecoin", "main",
     "unknown version byte 0x00 for litecoin main, used by bitcoin main P2PKH"),
    ("bc1qvyq0cc6rahyvsazfdje0twl7ez82ndmuac2lhv", "litecoin", "main",
     "expected prefix 'ltc', got 'bc'"),
    ("MHrYRxAiMNBTku3eoDHwhA1LQGDjUStZW2", "bitcoin", "main",
     "unknown version byte 0x32 for bitcoin main, used by litecoin main P2SH"),
    ("LT2KVaAy1ppRuxRgrS5RNU3vBsy7RibPeA", "dogecoin", "main",
     "unknown version byte 0x30 for dogecoin main"),
    ("DEQU7G2Chw4r1gSKZt2GfKBpGbkbQSwp3S", "peercoin", "main",
     "unknown version byte 0x1e for peercoin main"),
    ("ltc1qj08ys4ct2hzzc2hcz6h2hgrvlmsjynawmt3sjh", "dogecoin", "main",
     "is a segwit address .*dogecoin main has no segwit addresses"),
    ("pc1q5kpgmmrzjgyy0kn56qzhxktdh5z77r67lzfc2j", "bitcoin", "main",
     "expected prefix 'bc', got 'pc'"),
    # a mistyped address of another network still says which network it is for
    ("tltc1qj08ys4ct2hzzc2hcz6h2hgrvlmsjynawvejepb", "litecoin", "regtest",
     "expected prefix 'rltc', got 'tltc'"),
    # bad checksums: last character changed
    ("1A1zP1eP5QGefi2DMPTfTL5SLmv7DivfNb", "bitcoin", "main", "bad checksum"),
    ("LT2KVaAy1ppRuxRgrS5RNU3vBsy7RibPeB", "litecoin", "main", "bad checksum"),
    ("rltc1qj08ys4ct2hzzc2hcz6h2hgrvlmsjynawf4nr3q", "litecoin", "regtest", "bad checksum"),
    # mixed case on the right network
    ("rltc1qj08ys4ct2hzzc2hcz6h2hgrvlmsjynawF4nr3r", "litecoin", "regtest", "mixed case"),
    # not base58, not bech32
    ("LT2KVaAy1ppRuxRgrS5RNU3vBsy7RibPe0", "litecoin", "main",
     "'0' at position 33, which is not a base58 character"),
    ("hello", "bitcoin", "main", "not a base58 character"),
])
def test_refused_address_names_itself_and_the_reason(
    address: str, coin: str, network: str, reason: str
):
    with pytest.raises(AddressError, match=reason) as caught:
        address_to_script(address, net(coin, network))
    assert str(caught.value).startswith(f"address {address!r} ")


def test_private_key_pasted_as_address_is_refused_without_echoing_it():
    wif = "5JuW2AMDYu4xVwRG9DZW18VbzQrGcd5RCgb99sS6ehJsNQXu5b9"  # bitcoin key_io_valid.json
    with pytest.raises(AddressError, match="33 bytes") as caught:
        address_to_script(wif, net("bitcoin", "main"))
    assert wif not in str(caught.value)


@pytest.mark.parametrize(("value", "reason"), [
    ("", "address is empty"),
    (None, "must be a string"),
    (b"1A1zP1eP5QGefi2DMPTfTL5SLmv7DivfNa", "must be a string"),
])
def test_non_address_values_are_refused(value: object, reason: str):
    with pytest.raises(AddressError, match=reason):
        address_to_script(value, net("bitcoin", "main"))  # type: ignore[arg-type]


def test_base58check_decode_returns_version_and_hash():
    payload = decode_base58check("1A1zP1eP5QGefi2DMPTfTL5SLmv7DivfNa")
    assert payload.hex() == "0062e907b15cbf27d5425399ebf6f0fb50ebb88f18"


# --- networks ---------------------------------------------------------------------------

def test_registry_covers_every_coin_and_network():
    assert set(NETWORKS) == {
        (coin, network)
        for coin in ("bitcoin", "litecoin", "dogecoin", "peercoin")
        for network in ("main", "test", "regtest")
    }
    for (coin, network), params in NETWORKS.items():
        assert (params.coin, params.network) == (coin, network)


def test_litecoin_writes_new_p2sh_bytes_and_still_reads_old_ones():
    assert net("litecoin", "main").p2sh_prefixes == (50, 5)
    assert net("litecoin", "test").p2sh_prefixes == (58, 196)
    assert net("litecoin", "regtest").p2sh_prefixes == (58, 196)


@pytest.mark.parametrize(("coin", "network", "reason"), [
    ("monero", "main", "unknown coin 'monero'; known coins: bitcoin, dogecoin, litecoin, peercoin"),
    ("litecoin", "mainnet", "unknown network 'mainnet' for litecoin; known networks: main, "
     "regtest, test"),
])
def test_get_network_refuses_unknown_names_listing_choices(coin: str, network: str, reason: str):
    with pytest.raises(ConfigError) as caught:
        get_network(coin, network)
    assert str(caught.value) == reason


@pytest.mark.parametrize(("address", "hrp"), [
    # BIP173 / BIP350 valid segwit addresses, decoded then encoded back.
    ("BC1QW508D6QEJXTDG4Y5R3ZARVARY0C5XW7KV8F3T4", "bc"),
    ("tb1qrp33g0q5c5txsp9arysrx4k6zdkfs4nce4xj0gdcccefvpysxf3q0sl5k7", "tb"),
    ("bc1pw508d6qejxtdg4y5r3zarvary0c5xw7kw508d6qejxtdg4y5r3zarvary0c5xw7kt5nd6y", "bc"),
    ("BC1SW50QGDZ25J", "bc"),
    ("bc1zw508d6qejxtdg4y5r3zarvaryvaxxpcs", "bc"),
    ("tb1pqqqqp399et2xygdj5xreqhjjvcmzhxw4aywxecjdzew6hylgvsesf3hn0c", "tb"),
    ("bc1p0xlxvlhemja6c4dqv22uapctqupfhlxm9h8z3k2e72q4k9hcz7vqzk5jj0", "bc"),
])
def test_segwit_encoder_round_trips_bip_vectors(address: str, hrp: str):
    decoded_hrp, data, _ = decode_bech32(address)
    version = data[0]
    program = _regroup_5_to_8(address, data[1:])
    assert decoded_hrp == hrp
    assert encode_segwit_address(hrp, version, program) == address.lower()
