"""Transparency-log foundation (issue 14): RFC 6962 Merkle proofs, C2SP signed notes and
checkpoints, C2SP tlog-tiles; against the specs' own examples, real Sigstore checkpoints and
proofs from shared/fixtures, and a synthetic tile-based log (tests/tlog_log.py).

Vectors copied as data from: RFC 6962 test leaves and roots and the happy-path proofs of
transparency-dev/merkle (testonly/constants.go, testdata/{inclusion,consistency}); the signed
note examples of c2sp.org/signed-note and golang.org/x/mod/sumdb/note; the checkpoint example
of c2sp.org/tlog-checkpoint; the tile path and tree-size examples of c2sp.org/tlog-tiles.
"""

from __future__ import annotations

import base64
import hashlib
import json
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from stella_trust._internal.sigstore import merkle, signednote, tilelayout, tiles
from stella_trust._internal.sigstore.tlogerrors import TransparencyLogError
from stella_trust.errors import VerificationError
from tests.tlog_log import SyntheticLog, encode_bundle, flip_byte, serve, truncate

FIXTURES = Path(__file__).resolve().parents[2].parent / "shared" / "fixtures" / "sigstore"
STAGING_ROOT = FIXTURES / "staging" / "trusted_root.json"
PUBLIC_GOOD_ROOT = (
    FIXTURES
    / "public-good-2025-10"
    / "targets"
    / "6494e21ea73fa7ee769f85f57d5a3e6a08725eae1e38c755fc3517c9e6bc0b66.trusted_root.json"
)
BUNDLES = FIXTURES / "staging" / "bundles"
EM = "\u2014"

# -- RFC 6962 test data (transparency-dev/merkle testonly/constants.go) -------------------------

LEAVES = [
    b"",
    b"\x00",
    b"\x10",
    b"\x20\x21",
    b"\x30\x31",
    b"\x40\x41\x42\x43",
    b"\x50\x51\x52\x53\x54\x55\x56\x57",
    b"\x60\x61\x62\x63\x64\x65\x66\x67\x68\x69\x6a\x6b\x6c\x6d\x6e\x6f",
]
ROOTS = [  # by tree size, 0..8
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
]
LEAF_HASHES = [  # level 0 of NodeHashes()
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
    "0298d122906dcfc10892cb53a73992fc5b9f493ea4c9badb27b791b4127a7fe7",
    "07506a85fd9dd2f120eb694f86011e5bb4662e5c415a62917033d4a9624487e7",
    "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
    "4271a26be0d8a84f0bd54c8c302e7cb3a3b5d1fa6780a40bcce2873477dab658",
    "b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f",
    "46f6ffadd3d06a09ff3c5860d2755c8b9819db7df44251788c7d8e3180de8eb1",
]
# testdata/inclusion/{0..4}/happy-path.json: (leaf index, tree size, leaf hash, root, proof)
INCLUSION = [
    (0, 1, LEAF_HASHES[0], ROOTS[1], []),
    (
        0,
        8,
        LEAF_HASHES[0],
        ROOTS[8],
        [
            "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
        ],
    ),
    (
        5,
        8,
        LEAF_HASHES[5],
        ROOTS[8],
        [
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ],
    ),
    (2, 3, LEAF_HASHES[2], ROOTS[3], ["fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"]),
    (
        1,
        5,
        LEAF_HASHES[1],
        ROOTS[5],
        [
            "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
        ],
    ),
    # testdata/inclusion/single-entry/matching-root-and-leaf.json
    (
        0,
        1,
        "0d3aed023148ffd2a259fbd0cdc7fb3cf975658760d3775b82af6f90aacc2dfc",
        "0d3aed023148ffd2a259fbd0cdc7fb3cf975658760d3775b82af6f90aacc2dfc",
        [],
    ),
]
# testdata/consistency/{0..4}/happy-path.json: (size1, size2, root1, root2, proof)
CONSISTENCY = [
    (1, 1, ROOTS[1], ROOTS[1], []),
    (
        1,
        8,
        ROOTS[1],
        ROOTS[8],
        [
            "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
        ],
    ),
    (
        6,
        8,
        ROOTS[6],
        ROOTS[8],
        [
            "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ],
    ),
    (
        2,
        5,
        ROOTS[2],
        ROOTS[5],
        [
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
        ],
    ),
    (
        6,
        7,
        ROOTS[6],
        ROOTS[7],
        [
            "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
            "b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ],
    ),
]

# -- signed-note examples ------------------------------------------------------------------------

# golang.org/x/mod/sumdb/note (note.go package doc and note_test.go)
GO_VKEY = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
GO_SKEY = "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz"
GO_TEXT = (
    "If you think cryptography is the answer to your problem,\nthen you don't know what your problem is.\n"
)
GO_NOTE = (
    GO_TEXT
    + "\n"
    + f"{EM} PeterNeumann "
    + "x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n"
)
# c2sp.org/signed-note §"Verifier keys" example
C2SP_VKEY = "example.com/foo+530d903a+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k"
C2SP_NOTE = (
    "This is an example message.\n\n"
    f"{EM} example.com/foo "
    "Uw2QOkn8srV1yJGh2VYRlL1Tnagv1YEq6TfXppzi2ONncAlTgK7Ztg1ERYNZXsYjOBH3mFXmRKuwHjG1Yu72IneyaQM=\n"
)
# c2sp.org/signed-note opening example: the text itself holds a blank line
C2SP_POEM = (
    "Ognuno sta solo sul cuor della terra\ntrafitto da un raggio di sole:\n\ned \u00e8 subito sera.\n\n"
    f"{EM} quasimodo.example/salvatore "
    "NnugSzTjtVAewIS+Z/iJhUPeFDkO/5QQ2i5ddnGITLlC+EhfLW9oJKONrMouFSQU0xMcXxj99ihAQwaqP3ZekRwNtIc=\n"
)
# c2sp.org/tlog-checkpoint example
C2SP_CHECKPOINT = (
    "example.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n\n"
    f"{EM} example.com/behind-the-sofa "
    "Az3grlgtzPICa5OS8npVmf1Myq/5IZniMp+ZJurmRDeOoRDe4URYN7u5/Zhcyv2q1gGzGku9nTo+zyWE+xeMcTOAYQ8=\n"
)


def h(value: str) -> bytes:
    return bytes.fromhex(value)


def raises(match: str) -> Any:
    """TransparencyLogError whose one-line message contains `match` literally."""
    import re

    return pytest.raises(TransparencyLogError, match=re.escape(match))


# -- reference proofs, RFC 9162 §2.1.3.1 PATH and §2.1.4.1 PROOF/SUBPROOF, literally ----------


def _mth(hs: list[bytes]) -> bytes:
    if not hs:
        return hashlib.sha256(b"").digest()
    if len(hs) == 1:
        return hs[0]
    k = 1 << ((len(hs) - 1).bit_length() - 1)
    return merkle.node_hash(_mth(hs[:k]), _mth(hs[k:]))


def _path(m: int, hs: list[bytes]) -> list[bytes]:
    if len(hs) == 1:
        return []
    k = 1 << ((len(hs) - 1).bit_length() - 1)
    if m < k:
        return [*_path(m, hs[:k]), _mth(hs[k:])]
    return [*_path(m - k, hs[k:]), _mth(hs[:k])]


def _subproof(m: int, hs: list[bytes], b: bool) -> list[bytes]:
    if m == len(hs):
        return [] if b else [_mth(hs)]
    k = 1 << ((len(hs) - 1).bit_length() - 1)
    if m <= k:
        return [*_subproof(m, hs[:k], b), _mth(hs[k:])]
    return [*_subproof(m - k, hs[k:], False), _mth(hs[:k])]


# ===============================================================================================
# merkle.py


def test_leaf_hashes_and_roots_match_rfc6962_test_data() -> None:
    leaf_hashes = [merkle.leaf_hash(leaf) for leaf in LEAVES]
    assert [x.hex() for x in leaf_hashes] == LEAF_HASHES
    for size, root in enumerate(ROOTS):
        assert merkle.root_from_leaf_hashes(leaf_hashes[:size]).hex() == root
    assert merkle.EMPTY_ROOT.hex() == ROOTS[0]


@pytest.mark.parametrize(("index", "size", "leaf", "root", "proof"), INCLUSION)
def test_inclusion_vectors_verify(index: int, size: int, leaf: str, root: str, proof: list[str]) -> None:
    if size == 1:  # a one-leaf tree (another leaf in the testdata): its root is the leaf hash
        assert (proof, root) == ([], leaf)
    else:  # the vector is of RFC 6962's eight-leaf tree
        assert (leaf, root) == (LEAF_HASHES[index], ROOTS[size])
    merkle.verify_inclusion(h(leaf), index, size, [h(p) for p in proof], h(root))  # raises if refused


def _inclusion_mutations(index: int, size: int, leaf: str, root: str, proof: list[str]) -> list[Any]:
    """The kinds of broken probes transparency-dev/merkle's testdata holds, for one vector."""
    p = [h(x) for x in proof]
    flipped = [bytes([x[0] ^ 1]) + x[1:] for x in p]
    cases = [
        (
            "wrong leaf",
            h(LEAF_HASHES[7]) if leaf != LEAF_HASHES[7] else h(LEAF_HASHES[6]),
            index,
            size,
            p,
            h(root),
        ),
        ("index+1", h(leaf), index + 1, size, p, h(root)),
        ("size*2", h(leaf), index, size * 2, p, h(root)),
        ("random root", h(leaf), index, size, p, hashlib.sha256(b"random").digest()),
        ("trailing garbage", h(leaf), index, size, [*p, h(ROOTS[1])], h(root)),
        ("preceding garbage", h(leaf), index, size, [h(ROOTS[1]), *p], h(root)),
        ("empty root", h(leaf), index, size, p, b""),
    ]
    if index:
        cases.append(("index-1", h(leaf), index - 1, size, p, h(root)))
    if p:
        cases.append(("truncated proof", h(leaf), index, size, p[:-1], h(root)))
        cases.extend(
            (f"modified proof[{i}]", h(leaf), index, size, [*p[:i], flipped[i], *p[i + 1 :]], h(root))
            for i in range(len(p))
        )
    return cases


@pytest.mark.parametrize("vector", INCLUSION[:5], ids=[f"{v[0]}-of-{v[1]}" for v in INCLUSION[:5]])
def test_inclusion_mutations_fail(vector: Any) -> None:
    for name, leaf, index, size, proof, root in _inclusion_mutations(*vector):
        with pytest.raises(TransparencyLogError):
            merkle.verify_inclusion(leaf, index, size, proof, root)
            pytest.fail(f"{name} verified")


def test_inclusion_failure_messages() -> None:
    index, size, leaf, root, proof = INCLUSION[2]
    with raises("inclusion proof: leaf index 8 is not below tree size 8"):
        merkle.verify_inclusion(h(leaf), 8, size, [h(p) for p in proof], h(root))
    with raises("inclusion proof: 2 proof hashes, expected 3 for index 5 in tree size 8"):
        merkle.verify_inclusion(h(leaf), index, size, [h(p) for p in proof[:2]], h(root))
    with raises(f"bundle 645: leaf 5 does not hash to root {ROOTS[7]} of tree size 8"):
        merkle.verify_inclusion(h(leaf), index, size, [h(p) for p in proof], h(ROOTS[7]), where="bundle 645")
    with raises("inclusion proof: leaf hash is 31 bytes, expected 32"):
        merkle.verify_inclusion(h(leaf)[:31], index, size, [h(p) for p in proof], h(root))
    with raises("inclusion proof: 65 proof hashes, more than the 64 allowed"):
        merkle.verify_inclusion(h(leaf), index, size, [h(root)] * 65, h(root))


@pytest.mark.parametrize(("size1", "size2", "root1", "root2", "proof"), CONSISTENCY)
def test_consistency_vectors_verify(size1: int, size2: int, root1: str, root2: str, proof: list[str]) -> None:
    assert (root1, root2) == (ROOTS[size1], ROOTS[size2])  # the vector is of RFC 6962's tree
    merkle.verify_consistency(size1, size2, h(root1), h(root2), [h(p) for p in proof])  # raises if refused


@pytest.mark.parametrize("vector", CONSISTENCY[1:], ids=[f"{v[0]}-to-{v[1]}" for v in CONSISTENCY[1:]])
def test_consistency_mutations_fail(vector: Any) -> None:
    size1, size2, root1, root2, proof = vector
    p = [h(x) for x in proof]
    cases = [
        ("swapped roots", size1, size2, h(root2), h(root1), p),
        ("wrong root1", size1, size2, h(ROOTS[3]), h(root2), p),
        ("wrong root2", size1, size2, h(root1), h(ROOTS[3]), p),
        ("truncated proof", size1, size2, h(root1), h(root2), p[:-1]),
        ("trailing garbage", size1, size2, h(root1), h(root2), [*p, h(ROOTS[1])]),
        ("preceding garbage", size1, size2, h(root1), h(root2), [h(ROOTS[1]), *p]),
        ("size1+1", size1 + 1, size2, h(root1), h(root2), p),
        ("size1-1", size1 - 1, size2, h(root1), h(root2), p),
        ("size2*2", size1, size2 * 2, h(root1), h(root2), p),
        ("empty proof", size1, size2, h(root1), h(root2), []),
        *[
            (
                f"modified proof[{i}]",
                size1,
                size2,
                h(root1),
                h(root2),
                [*p[:i], bytes([p[i][0] ^ 4]) + p[i][1:], *p[i + 1 :]],
            )
            for i in range(len(p))
        ],
    ]
    for name, s1, s2, r1, r2, pr in cases:
        with pytest.raises(TransparencyLogError):
            merkle.verify_consistency(s1, s2, r1, r2, pr)
            pytest.fail(f"{name} verified")


def test_consistency_edge_cases_and_messages() -> None:
    # testdata/consistency/additional: all refused
    with raises("consistency proof: first tree size 2 is larger than second tree size 1"):
        merkle.verify_consistency(2, 1, h(ROOTS[2]), h(ROOTS[1]), [])
    with raises("consistency proof: a consistency proof from the empty tree proves nothing"):
        merkle.verify_consistency(0, 1, merkle.EMPTY_ROOT, merkle.EMPTY_ROOT, [merkle.EMPTY_ROOT])
    with raises("a consistency proof from the empty tree proves nothing"):
        merkle.verify_consistency(0, 0, merkle.EMPTY_ROOT, merkle.EMPTY_ROOT, [])
    with raises("consistency proof: tree sizes are equal (1) but the proof is not empty"):
        merkle.verify_consistency(1, 1, h(ROOTS[1]), h(ROOTS[1]), [h(ROOTS[1])])
    with raises(f"consistency proof: two different roots for tree size 1: {ROOTS[1]} and {ROOTS[2]}"):
        merkle.verify_consistency(1, 1, h(ROOTS[1]), h(ROOTS[2]), [])
    with raises("consistency proof: empty proof between tree sizes 1 and 2"):
        merkle.verify_consistency(1, 2, h(ROOTS[1]), h(ROOTS[2]), [])
    size1, size2, root1, _, proof = CONSISTENCY[2]
    with raises(f"tree size 8 (root {ROOTS[7]}) does not extend tree size 6"):
        merkle.verify_consistency(size1, size2, h(root1), h(ROOTS[7]), [h(p) for p in proof])


def test_proofs_from_the_rfc_definitions_verify_for_every_index_and_size() -> None:
    """RFC 9162 §2.1.3.1 / §2.1.4.1 proofs, generated from the definitions, all verify."""
    leaves = [merkle.leaf_hash(b"%d" % i) for i in range(40)]
    for size in range(1, 40):
        root = _mth(leaves[:size])
        assert merkle.root_from_leaf_hashes(leaves[:size]) == root
        for index in range(size):
            merkle.verify_inclusion(leaves[index], index, size, _path(index, leaves[:size]), root)
        for size1 in range(1, size + 1):
            proof = _subproof(size1, leaves[:size], True)
            merkle.verify_consistency(size1, size, _mth(leaves[:size1]), root, proof)
            if size1 < size:
                with pytest.raises(TransparencyLogError):
                    merkle.verify_consistency(size1, size, _mth(leaves[1 : size1 + 1]), root, proof)


def test_inclusion_subtrees_are_the_nodes_the_rfc_path_names() -> None:
    """Every node an inclusion proof carries or computes is MTH(D[start:end]) of its range,
    computed here from the RFC 6962 definition; the leaf first, the root last; a proof that
    does not verify gives no nodes at all."""
    leaves = [merkle.leaf_hash(b"%d" % i) for i in range(40)]
    for size in range(1, 40):
        root = _mth(leaves[:size])
        for index in range(size):
            proof = _path(index, leaves[:size])
            nodes = merkle.inclusion_subtrees(leaves[index], index, size, proof, root)
            assert len(nodes) == 1 + 2 * len(proof)
            assert nodes[0] == merkle.Subtree(index, index + 1, leaves[index])
            assert nodes[-1] == merkle.Subtree(0, size, root)
            assert [n.hash for n in nodes[1::2]] == proof  # the proof's own hashes, in order
            for node in nodes:
                assert node.hash == _mth(leaves[node.start : node.end]), (size, index, node)
                assert node.start <= index < node.end or node in nodes[1::2]
    assert merkle.Subtree(256, 512, b"").is_complete and merkle.Subtree(7, 8, b"").is_complete
    assert not merkle.Subtree(256, 768, b"").is_complete  # 512 wide but not aligned on 512
    assert not merkle.Subtree(0, 3, b"").is_complete and not merkle.Subtree(4, 4, b"").is_complete
    proof = _path(5, leaves[:20])
    with raises("inclusion proof: leaf 5 does not hash to root"):
        merkle.inclusion_subtrees(leaves[5], 5, 20, [proof[0], *proof[1:-1], leaves[0]], _mth(leaves[:20]))
    with raises("expected 5 for index 5 in tree size 20"):
        merkle.inclusion_subtrees(leaves[5], 5, 20, proof[:-1], _mth(leaves[:20]))


def test_errors_are_verification_errors_with_a_hint() -> None:
    with pytest.raises(VerificationError) as caught:
        merkle.verify_inclusion(b"x" * 32, 0, 1, [], b"y" * 32, where="tile/0/x001/234.p/7")
    assert isinstance(caught.value, TransparencyLogError)
    assert "\n" not in str(caught.value)
    assert caught.value.hint and "unchanged" in caught.value.hint
    assert caught.value.exit_code == 1


# ===============================================================================================
# Real Sigstore material (shared/fixtures): Rekor v2 (Ed25519) and Rekor v1 (ECDSA)


def _tlog_key(trusted_root: Path, base_url: str) -> tuple[bytes, bytes]:
    """(DER SPKI, logId.keyId) of the log with `base_url` in a trusted_root.json."""
    for log in json.loads(trusted_root.read_text())["tlogs"]:
        if log["baseUrl"] == base_url:
            return base64.b64decode(log["publicKey"]["rawBytes"]), base64.b64decode(log["logId"]["keyId"])
    raise AssertionError(base_url)


def _entry(bundle: str) -> dict[str, Any]:
    entry: dict[str, Any] = json.loads((BUNDLES / bundle).read_text())["verificationMaterial"]["tlogEntries"][
        0
    ]
    return entry


def test_real_rekor_v2_checkpoint_verifies_with_the_staging_log_key() -> None:
    der, log_id = _tlog_key(STAGING_ROOT, "https://log2025-alpha1.rekor.sigstage.dev")
    proof = _entry("staging-rekor-v2.txt.sigstore.json")["inclusionProof"]
    origin = "log2025-alpha1.rekor.sigstage.dev"  # the base URL's host
    checkpoint = signednote.verify_checkpoint(proof["checkpoint"]["envelope"], origin=origin, public_key=der)
    assert checkpoint.size == int(proof["treeSize"]) == 646
    assert checkpoint.root_hash == base64.b64decode(proof["rootHash"])
    # Rekor v2's log ID is the signed-note key hash of (origin, key); the key ID its first 4 bytes
    key = signednote.load_log_key(der)
    assert isinstance(key, Ed25519PublicKey)
    assert signednote.ed25519_key_hash(origin, key) == log_id
    assert signednote.note_verifier(origin, der).key_id == log_id[:4]
    other = Ed25519PrivateKey.generate().public_key()
    with raises(f"checkpoint: no signature by {origin} (key ID "):
        signednote.verify_checkpoint(proof["checkpoint"]["envelope"], origin=origin, public_key=other)
    with raises("checkpoint: no signature by rekor.sigstage.dev"):
        signednote.verify_checkpoint(
            proof["checkpoint"]["envelope"], origin="rekor.sigstage.dev", public_key=der
        )


def test_public_good_rekor_v2_log_id_is_the_note_key_hash_of_its_host() -> None:
    der, log_id = _tlog_key(PUBLIC_GOOD_ROOT, "https://log2025-1.rekor.sigstore.dev")
    key = signednote.load_log_key(der)
    assert isinstance(key, Ed25519PublicKey)
    assert signednote.ed25519_key_hash("log2025-1.rekor.sigstore.dev", key) == log_id
    assert signednote.key_id("log2025-1.rekor.sigstore.dev", key).hex() == log_id[:4].hex() == "cf119915"


def test_real_rekor_v2_inclusion_proof_verifies() -> None:
    entry = _entry("staging-rekor-v2.txt.sigstore.json")
    proof = entry["inclusionProof"]
    merkle.verify_inclusion(
        merkle.leaf_hash(base64.b64decode(entry["canonicalizedBody"])),
        int(proof["logIndex"]),
        int(proof["treeSize"]),
        [base64.b64decode(x) for x in proof["hashes"]],
        base64.b64decode(proof["rootHash"]),
    )  # raises if refused
    # the proof is for the tree the log's signed checkpoint names (its second and third lines)
    _, size, root = proof["checkpoint"]["envelope"].split("\n")[:3]
    assert (int(size), base64.b64decode(root)) == (
        int(proof["treeSize"]),
        base64.b64decode(proof["rootHash"]),
    )


@pytest.mark.parametrize(
    ("bundle", "trusted_root", "base_url"),
    [
        ("bundle_v3.txt.sigstore.json", STAGING_ROOT, "https://rekor.sigstage.dev"),
        ("bundle_v3_no_signed_time.txt.sigstore.json", PUBLIC_GOOD_ROOT, "https://rekor.sigstore.dev"),
    ],
)
def test_real_rekor_v1_ecdsa_checkpoint_and_proof_verify(
    bundle: str, trusted_root: Path, base_url: str
) -> None:
    der, log_id = _tlog_key(trusted_root, base_url)
    assert hashlib.sha256(der).digest() == log_id  # RFC 6962 log ID; the note key ID is its prefix
    entry = _entry(bundle)
    proof = entry["inclusionProof"]
    envelope = proof["checkpoint"]["envelope"]
    origin = envelope.split("\n", 1)[0]  # "rekor.sigstage.dev - 8050909264565447525"
    host = base_url.removeprefix("https://")
    checkpoint = signednote.verify_checkpoint(envelope, origin=origin, key_name=host, public_key=der)
    assert checkpoint.size == int(proof["treeSize"])
    assert signednote.note_verifier(host, der).key_id == log_id[:4]
    merkle.verify_inclusion(
        merkle.leaf_hash(base64.b64decode(entry["canonicalizedBody"])),
        int(proof["logIndex"]),
        checkpoint.size,
        [base64.b64decode(x) for x in proof["hashes"]],
        checkpoint.root_hash,
    )
    # the key name must match: Rekor v1's origin is not its key name
    with raises(f"checkpoint: no signature by {origin.split()[0]}x"):
        signednote.verify_checkpoint(envelope, origin=origin, key_name=host + "x", public_key=der)


# ===============================================================================================
# signednote.py


def test_go_sumdb_note_example_verifies_and_signing_reproduces_it() -> None:
    verifier = signednote.parse_vkey(GO_VKEY)
    assert (verifier.name, verifier.key_id.hex()) == ("PeterNeumann", "c74f20a3")
    note = signednote.parse_note(GO_NOTE.encode())
    assert note.text == GO_TEXT
    signednote.verify_note(note, verifier)
    seed = base64.b64decode(GO_SKEY.split("+", 4)[4])  # PRIVATE+KEY+<name>+<id>+<key>
    assert seed[0] == signednote.SIG_TYPE_ED25519
    key = Ed25519PrivateKey.from_private_bytes(seed[1:])
    assert signednote.sign_note(GO_TEXT, "PeterNeumann", key) == GO_NOTE  # Ed25519 is deterministic


def test_c2sp_signed_note_examples() -> None:
    signednote.verify_note(signednote.parse_note(C2SP_NOTE), signednote.parse_vkey(C2SP_VKEY))
    poem = signednote.parse_note(C2SP_POEM.encode())
    assert poem.text.endswith("\n\ned \u00e8 subito sera.\n")  # split at the *last* blank line
    assert [(s.name, len(s.signature)) for s in poem.signatures] == [("quasimodo.example/salvatore", 64)]


def test_c2sp_checkpoint_example_parses() -> None:
    note = signednote.parse_note(C2SP_CHECKPOINT)
    checkpoint = signednote.parse_checkpoint_text(note.text)
    assert checkpoint.origin == "example.com/behind-the-sofa"
    assert checkpoint.size == 20852163
    assert base64.b64encode(checkpoint.root_hash).decode() == "CsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I="
    assert checkpoint.extensions == ()
    assert signednote.format_checkpoint(checkpoint.origin, checkpoint.size, checkpoint.root_hash) == note.text


def test_vkey_refusals_from_go_tests() -> None:
    with raises("verifier key: PeterNeumann: only Ed25519 keys (type 0x01, 32 bytes) are supported"):
        signednote.parse_vkey("PeterNeumann+cc469956+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TWBADKEY==")
    with raises("only Ed25519 keys"):
        signednote.parse_vkey("PeterNeumann+173116ae+ZRpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW")
    with raises("verifier key: PeterNeumann: key ID c74f20a4 does not match the key (c74f20a3)"):
        signednote.parse_vkey(GO_VKEY.replace("c74f20a3", "c74f20a4"))
    with raises("is not <name>+<8 hex digits>+<base64 key>"):
        signednote.parse_vkey("PeterNeumann+c74f20a3")


def _keys() -> tuple[Ed25519PrivateKey, ec.EllipticCurvePrivateKey]:
    return Ed25519PrivateKey.generate(), ec.generate_private_key(ec.SECP256R1())


def test_checkpoint_sign_verify_round_trip_both_key_types() -> None:
    ed, ecdsa = _keys()
    text = signednote.format_checkpoint("example.com/log", 5, h(ROOTS[5]), ["Timestamp: 1"])
    for key in (ed, ecdsa):
        note = signednote.sign_note(text, "example.com/log", key)
        for public in (
            key.public_key(),
            key.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo),
        ):
            checkpoint = signednote.verify_checkpoint(note, origin="example.com/log", public_key=public)
            assert (checkpoint.size, checkpoint.root_hash, checkpoint.extensions) == (
                5,
                h(ROOTS[5]),
                ("Timestamp: 1",),
            )


def test_unknown_signers_are_ignored_and_every_known_signature_must_verify() -> None:
    ed, _ = _keys()
    witness = Ed25519PrivateKey.generate()
    text = signednote.format_checkpoint("example.com/log", 1, h(ROOTS[1]))
    note = signednote.sign_note(text, "example.com/log", ed)
    cosigned = note + signednote.signature_line(text, "witness.example/w1", witness)
    signednote.verify_checkpoint(cosigned, origin="example.com/log", public_key=ed.public_key())
    # a witness-first note still verifies
    reordered = (
        text + "\n" + signednote.signature_line(text, "witness.example/w1", witness) + note[len(text) + 1 :]
    )
    signednote.verify_checkpoint(reordered, origin="example.com/log", public_key=ed.public_key())
    # a second line under the log's name and key ID that does not verify refuses the note
    bad_line = signednote.signature_line("other text\n", "example.com/log", ed)
    with raises("checkpoint: Ed25519 signature by example.com/log (key ID "):
        signednote.verify_checkpoint(note + bad_line, origin="example.com/log", public_key=ed.public_key())
    # signed only by someone else
    only_witness = signednote.sign_note(text, "witness.example/w1", witness)
    with raises("no signature by example.com/log (key ID "):
        signednote.verify_checkpoint(only_witness, origin="example.com/log", public_key=ed.public_key())


def test_checkpoint_refusals_name_what_failed() -> None:
    ed, ecdsa = _keys()
    text = signednote.format_checkpoint("example.com/log", 1, h(ROOTS[1]))
    good = signednote.sign_note(text, "example.com/log", ed)
    pub = ed.public_key()
    # wrong origin: the name on the signature line is checked first, then the origin line
    with raises("checkpoint: no signature by example.com/other"):
        signednote.verify_checkpoint(good, origin="example.com/other", public_key=pub)
    misnamed = signednote.sign_note(
        signednote.format_checkpoint("example.com/other", 1, h(ROOTS[1])), "example.com/log", ed
    )
    with raises("checkpoint: origin 'example.com/other' is not the expected 'example.com/log'"):
        signednote.verify_checkpoint(misnamed, origin="example.com/log", public_key=pub)
    # tampered text: same signer, signature no longer verifies
    with raises("checkpoint: Ed25519 signature by example.com/log"):
        signednote.verify_checkpoint(good.replace("\n1\n", "\n2\n"), origin="example.com/log", public_key=pub)
    with raises("ECDSA P-256 signature by example.com/log"):
        ecdsa_note = signednote.sign_note(text, "example.com/log", ecdsa)
        signednote.verify_checkpoint(
            ecdsa_note.replace("\n1\n", "\n2\n"), origin="example.com/log", public_key=ecdsa.public_key()
        )
    # keys we do not take
    with raises("checkpoint: ECDSA curve secp384r1 is not supported, only P-256"):
        signednote.verify_checkpoint(
            good, origin="example.com/log", public_key=ec.generate_private_key(ec.SECP384R1()).public_key()
        )
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=1024).public_key()
    with raises("checkpoint: RSAPublicKey is not an Ed25519 or ECDSA P-256 key"):
        signednote.verify_checkpoint(
            good,
            origin="example.com/log",
            public_key=rsa_key.public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo),
        )
    with raises("checkpoint: not a DER SubjectPublicKeyInfo"):
        signednote.verify_checkpoint(good, origin="example.com/log", public_key=b"\x30\x03junk")


@pytest.mark.parametrize(
    ("note", "message"),
    [
        ("a\n1\nroot\n", "no blank line between the text and the signature lines"),
        ("a\n\n", "no signature lines"),
        (f"a\n\n{EM} n AAAAAAA=", "the last signature line does not end with a newline"),
        ("a\n\n- n AAAAAAA=\n", "signature line 1 does not start with an em dash and a space"),
        (f"a\n\n{EM} nAAAAAAA=\n", "signature line 1 is not '\u2014 <name> <base64>'"),
        (f"a\n\n{EM} a+b AAAAAAA=\n", "signature line 1: key name 'a+b' is empty or has a space or '+'"),
        (f"a\n\n{EM}  AAAAAAA=\n", "signature line 1: key name '' is empty"),
        (f"a\n\n{EM} n AAAA AAA=\n", "signature line 1 is not standard base64"),
        (f"a\n\n{EM} n AAAAAAA\n", "signature line 1 is not standard base64"),
        (f"a\n\n{EM} n AAAAAA==\n", "signature line 1 has 4 bytes, needs a 4-byte key ID and a signature"),
        (f"a\r\n\n{EM} n AAAAAAA=\n", "control character U+000D at character 1 (only newline is allowed)"),
        (f"a\t\n\n{EM} n AAAAAAA=\n", "control character U+0009"),
    ],
)
def test_bad_note_format_is_refused(note: str, message: str) -> None:
    with raises(f"checkpoint: {message}"):
        signednote.parse_note(note, where="checkpoint")


def test_note_bounds() -> None:
    with raises("checkpoint: not UTF-8 (byte 1)"):
        signednote.parse_note(b"a\xff\n\n", where="checkpoint")
    huge = "x" * signednote.MAX_NOTE_BYTES + f"\n\n{EM} n AAAAAAA=\n"
    with raises(f"checkpoint: {len(huge)} bytes, more than the 262144 allowed"):
        signednote.parse_note(huge, where="checkpoint")
    with raises(f"checkpoint: {signednote.MAX_NOTE_BYTES + 1} bytes, more than the 262144 allowed"):
        signednote.parse_note(b"y" * (signednote.MAX_NOTE_BYTES + 1), where="checkpoint")
    many = "a\n\n" + f"{EM} n AAAAAAA=\n" * 101
    with raises("checkpoint: 101 signature lines, more than the 100 allowed"):
        signednote.parse_note(many, where="checkpoint")
    long_text = "a\n" * 1001 + f"\n{EM} n AAAAAAA=\n"
    with raises("checkpoint: more than 1000 lines of text"):
        signednote.parse_note(long_text, where="checkpoint")
    sixteen = "a\n\n" + f"{EM} n {base64.b64encode(bytes(4 + 4900)).decode()}\n" * 16  # 16 PQ-size signatures
    assert len(signednote.parse_note(sixteen).signatures) == 16


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("o\n1\n", "2 lines of text, a checkpoint needs origin, size, root hash"),
        (
            f"o\n01\n{base64.b64encode(bytes(32)).decode()}\n",
            "tree size '01' is not a decimal number below 2^64",
        ),
        (f"o\n-1\n{base64.b64encode(bytes(32)).decode()}\n", "tree size '-1' is not"),
        (
            f"o\n18446744073709551616\n{base64.b64encode(bytes(32)).decode()}\n",
            "tree size '18446744073709551616'",
        ),
        (f"o\n 1\n{base64.b64encode(bytes(32)).decode()}\n", "tree size ' 1' is not"),
        (f"o\n1\n{base64.b64encode(bytes(31)).decode()}\n", "root hash is 31 bytes, expected 32"),
        ("o\n1\nnot base64!\n", "root hash is not standard base64"),
        (
            f"o\n1\n{base64.b64encode(bytes(32)).decode()}\next\n\nx\n",
            "line 5 of the checkpoint text is empty",
        ),
        (f"\n1\n{base64.b64encode(bytes(32)).decode()}\n", "line 1 of the checkpoint text is empty"),
    ],
)
def test_bad_checkpoint_text_is_refused(text: str, message: str) -> None:
    with raises(f"checkpoint: {message}"):
        signednote.parse_checkpoint_text(text)


def test_checkpoint_text_is_read_only_after_the_signature_verifies() -> None:
    """A malformed body signed by a stranger fails on the signature, not on the body."""
    stranger, log = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
    forged = signednote.sign_note("example.com/log\n01\nbad\n", "example.com/log", stranger)
    with raises("no signature by example.com/log"):
        signednote.verify_checkpoint(forged, origin="example.com/log", public_key=log.public_key())
    signed_bad_body = signednote.sign_note("example.com/log\n01\nbad\n", "example.com/log", log)
    with raises("tree size '01'"):
        signednote.verify_checkpoint(signed_bad_body, origin="example.com/log", public_key=log.public_key())


# ===============================================================================================
# tilelayout.py: paths and shapes (c2sp.org/tlog-tiles examples)


def test_tile_path_examples() -> None:
    assert tilelayout.encode_index(1234067) == "x001/x234/067"
    assert tilelayout.encode_index(0) == "000"
    assert tilelayout.encode_index(1000) == "x001/000"
    ref = tilelayout.TileRef(level=1, index=1234067, width=8)
    assert ref.path == "tile/1/x001/x234/067.p/8"
    assert tilelayout.parse_tile_path("tile/1/x001/x234/067.p/8") == ref
    assert tilelayout.parse_tile_path("tile/entries/x001/x234/067") == tilelayout.TileRef(
        0, 1234067, 256, entries=True
    )
    assert tilelayout.parse_tile_path("tile/63/999") == tilelayout.TileRef(63, 999, 256)


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("tile/01/000", "not a tile path"),
        ("tile/0/1", "not a tile path"),
        ("tile/0/000.p/0", "not a tile path"),
        ("tile/0/000.p/08", "not a tile path"),
        ("tile/0/000/", "not a tile path"),
        ("/tile/0/000", "not a tile path"),
        ("tile/0/../000", "not a tile path"),
        ("tile/0/" + "x001/" * 20 + "000", "not a tile path"),  # longer than any tree below 2**64
        ("tile/0/000.p/256", "level must be 0..63 and a partial width 1..255"),
        ("tile/64/000", "level must be 0..63"),
        ("tile/0/x000/001", "not the canonical path of its tile (tile/0/001)"),
    ],
)
def test_non_canonical_tile_paths_are_refused(path: str, message: str) -> None:
    with raises(message):
        tilelayout.parse_tile_path(path)


def test_tlog_tiles_size_examples() -> None:
    # "a tree of size 70,000 will be represented by 273 full level 0 tiles, one partial level 0
    # tile of width 112, one full level 1 tile, one partial level 1 tile of width 17, and one
    # partial level 2 tile of width 1"
    log = SyntheticLog(70000, "example.com/log")
    paths = set(log.tiles())
    assert sum(1 for p in paths if p.startswith("tile/0/") and ".p/" not in p) == 273
    assert {p for p in paths if ".p/" in p and not p.startswith("tile/entries")} == {
        "tile/0/273.p/112",
        "tile/1/001.p/17",
        "tile/2/000.p/1",
    }
    assert "tile/1/000" in paths
    assert [r.path for r in tilelayout.right_edge(70000)] == [
        "tile/0/273.p/112",
        "tile/1/001.p/17",
        "tile/2/000.p/1",
    ]
    # "a tree of size 256 will be represented by a full level 0 tile and a partial level 1 tile of width 1"
    assert [r.path for r in tilelayout.right_edge(256)] == ["tile/1/000.p/1"]
    assert [r.path for r in tilelayout.tiles_for(256, 1)] == [
        "tile/0/000",
        "tile/entries/000",
        "tile/1/000.p/1",
    ]
    assert tilelayout.right_edge(0) == []


def test_tiles_for_covers_the_last_entries_and_ties_them_to_the_root() -> None:
    refs = tilelayout.tiles_for(70000, 300)
    assert [r.path for r in refs] == [
        "tile/0/272",
        "tile/entries/272",
        "tile/0/273.p/112",
        "tile/entries/273.p/112",
        "tile/1/001.p/17",
        "tile/2/000.p/1",
    ]
    assert [r.path for r in tilelayout.tiles_for(70000, 0)] == [
        "tile/0/273.p/112",
        "tile/1/001.p/17",
        "tile/2/000.p/1",
    ]
    assert tilelayout.tiles_for(10, 10_000) == tilelayout.tiles_for(10, 10)  # depth beyond the log: all of it
    # a window that crosses a level-1 tile boundary needs both level-1 tiles
    paths = [r.path for r in tilelayout.tiles_for(65536 + 3, 512)]
    assert "tile/1/000" in paths and "tile/2/000.p/1" in paths and "tile/0/255" in paths
    for size in (2**64 - 1, 2**40 + 12345, 65536 * 256):
        assert len(tilelayout.tiles_for(size, tilelayout.MAX_DEPTH)) <= tilelayout.MAX_TILES
    with raises("tiles_for: depth 1048577 is outside 0..1048576"):
        tilelayout.tiles_for(10, tilelayout.MAX_DEPTH + 1)
    with raises("tiles_for: tree size 18446744073709551616 is outside 0..2^64-1"):
        tilelayout.tiles_for(2**64, 1)


def test_parse_tile_and_entry_bundle() -> None:
    ref = tilelayout.parse_tile_path("tile/0/x001/234.p/7")
    assert tilelayout.parse_hash_tile(ref, bytes(224)) == (bytes(32),) * 7
    with raises("tile/0/x001/234.p/7: 200 bytes, expected 224"):
        tilelayout.parse_hash_tile(ref, bytes(200))
    bundle_ref = tilelayout.TileRef(0, 2, 3, entries=True)
    assert tilelayout.parse_entry_bundle(bundle_ref, encode_bundle([b"a", b"", b"ccc"])) == (
        b"a",
        b"",
        b"ccc",
    )
    with raises("tile/entries/002.p/3: 2 entries, expected 3"):
        tilelayout.parse_entry_bundle(bundle_ref, encode_bundle([b"a", b""]))
    with raises("tile/entries/002.p/3: 1 bytes after the last of 3 entries"):
        tilelayout.parse_entry_bundle(bundle_ref, encode_bundle([b"a", b"", b"ccc"]) + b"\x00")
    with raises("tile/entries/002.p/3: entry 2 needs 3 bytes, 2 left"):
        tilelayout.parse_entry_bundle(bundle_ref, encode_bundle([b"a", b"", b"ccc"])[:-1])
    with raises("tile/entries/002.p/3: entry 2: length prefix cut short"):
        tilelayout.parse_entry_bundle(bundle_ref, encode_bundle([b"a", b""]) + b"\x00")
    with raises("tile/entries/002.p/3: 12 bytes, more than the 10 allowed"):
        tilelayout.parse_entry_bundle(bundle_ref, encode_bundle([b"a", b"", b"ccc"]) + b"xx", max_bytes=10)


# ===============================================================================================
# tiles.py against the synthetic log


@pytest.fixture(scope="module")
def big_log() -> SyntheticLog:
    return SyntheticLog(65536 + 3, "127.0.0.1:8080", Ed25519PrivateKey.generate())


@pytest.mark.parametrize("size", [1, 255, 256, 257, 3000, 65536, 65536 + 3])
def test_root_from_tiles_is_the_mth_of_all_leaves(big_log: SyntheticLog, size: int) -> None:
    all_tiles = big_log.tiles(size)
    verified = tiles.verify_tiles(all_tiles, size, big_log.root(size))
    assert merkle.root_from_leaf_hashes(big_log.levels[0][:size]) == big_log.root(size)
    assert tiles.covered_depth(verified) == size
    for index in {0, size // 2, size - 1}:
        assert tiles.leaf_at(verified, index) == big_log.leaf_hash(index)
        assert tiles.entry_at(verified, index) == b"entry %d" % index
        assert tiles.check_leaf(verified, big_log.leaf_hash(index), index)
    for smaller in {1, size // 3 if size < 4096 else 4095, size - 1, size}:
        assert tiles.root_at(verified, smaller) == big_log.root(smaller)
    # only the sealed subset: the right edge and the last entries
    for depth in (0, 1, 300):
        subset = {r.path: all_tiles[r.path] for r in tilelayout.tiles_for(size, depth)}
        sealed = tiles.verify_tiles(subset, size, big_log.root(size), log="127.0.0.1:8080")
        assert tiles.covered_depth(sealed) >= min(depth, size)
        assert tiles.leaf_at(sealed, size - 1) == (
            big_log.leaf_hash(size - 1) if depth or size % 256 else None
        )
        assert tiles.entry_at(sealed, size - 1) == (b"entry %d" % (size - 1) if depth else None)


def test_sealed_tiles_answer_only_what_they_cover(big_log: SyntheticLog) -> None:
    size, depth = 3000, 300
    all_tiles = big_log.tiles(size)
    sealed = tiles.verify_tiles(
        {r.path: all_tiles[r.path] for r in tilelayout.tiles_for(size, depth)}, size, big_log.root(size)
    )
    assert tiles.covered_depth(sealed) == 3000 - 2560  # tiles are whole: 2560..2999
    assert tiles.leaf_at(sealed, 100) is None
    assert tiles.leaf_at(sealed, 3000) is None
    assert not tiles.check_leaf(sealed, big_log.leaf_hash(100), 100)  # cannot tell
    assert tiles.check_leaf(sealed, big_log.leaf_hash(2999), 2999)
    held = big_log.leaf_hash(2999).hex()
    with raises(f"entry: the sealed log of size 3000 holds another leaf at index 2999 ({held})"):
        tiles.check_leaf(sealed, big_log.leaf_hash(2998), 2999)
    # roots of older trees within the window: consistency of a smaller checkpoint
    assert tiles.check_root(sealed, 2700, big_log.root(2700))
    assert tiles.check_root(sealed, 3000, big_log.root(3000))
    assert not tiles.check_root(sealed, 1000, big_log.root(1000))  # before the window
    assert not tiles.check_root(sealed, 3001, big_log.root(3001))  # after the sealed size
    with raises("checkpoint: root "):
        tiles.check_root(sealed, 2700, big_log.root(2699))


def test_subtree_at_gives_every_complete_subtree_the_sealed_tiles_hold(big_log: SyntheticLog) -> None:
    """tiles.subtree_at: the MTH of any complete subtree wholly inside the tree whose tile
    (level floor(h/8)) is held, equal to the definition's; None for the rest."""
    size = 3000
    all_tiles = big_log.tiles(size)
    sealed = tiles.verify_tiles(
        {r.path: all_tiles[r.path] for r in tilelayout.tiles_for(size, 10)}, size, big_log.root(size)
    )  # held: tile/0/011.p/184 (entries 2816..2999) and tile/1/000.p/11 (11 hashes of 256)
    found = 0
    for height in range(12):
        width = 1 << height
        for start in range(0, size, width):
            held = tiles.subtree_at(sealed, start, start + width)
            inside = start + width <= size
            if inside and (height >= 8 or start >= 2816):
                assert held is not None, (start, width)
                assert held.hash == _mth(big_log.levels[0][start : start + width])
                found += 1
            else:
                assert held is None, (start, width)
    # in entries 2816..2999: 184 leaves, 92 pairs, ... one of 128; then 256, 512, 1024, 2048 wide
    assert found == (184 + 92 + 46 + 23 + 11 + 5 + 2 + 1) + (11 + 5 + 2 + 1)
    edge = tiles.subtree_at(sealed, 0, 2048)
    assert edge is not None and edge.where == "tile/1/000.p/11 hashes 0-7"
    one = tiles.subtree_at(sealed, 2560, 2816)
    assert one is not None and one.where == "tile/1/000.p/11 hash 10"
    assert tiles.subtree_at(sealed, 2816, 3072) is None  # not wholly inside the tree
    assert tiles.subtree_at(sealed, 2816, 2916) is None  # not complete
    assert tiles.subtree_at(sealed, 100, 101) is None  # its level-0 tile is not held
    nodes = [merkle.Subtree(0, 256, b"x" * 32), merkle.Subtree(100, 101, b"y" * 32)]
    ((node, held_node),) = tiles.shared_subtrees(sealed, nodes)
    assert node is nodes[0] and held_node.hash == big_log.levels[1][0]


def test_log_growth_is_consistent_and_a_fork_is_not() -> None:
    log = SyntheticLog(1000, "example.com/log")
    old_size, old_root = log.size, log.root()
    log.append(2000)
    grown = tiles.verify_tiles(log.tiles(), log.size, log.root())
    assert tiles.check_root(grown, old_size, old_root)
    fork = SyntheticLog(
        3000, "example.com/log", log.key, entry=lambda i: b"entry %d" % i if i != 999 else b"forged"
    )
    forked = tiles.verify_tiles(fork.tiles(), fork.size, fork.root())
    with raises("is not consistent with the sealed log of size 3000"):
        tiles.check_root(forked, old_size, old_root)


def _sealed(log: SyntheticLog, depth: int) -> dict[str, bytes]:
    all_tiles = log.tiles()
    return {r.path: all_tiles[r.path] for r in tilelayout.tiles_for(log.size, depth)}


def _flip(data: bytes, offset: int = 0) -> bytes:
    return data[:offset] + bytes([data[offset] ^ 1]) + data[offset + 1 :]


def test_tampered_tiles_are_refused_with_the_tile_named() -> None:
    log = SyntheticLog(3000, "example.com/log")
    good = _sealed(log, 600)
    root = log.root()
    assert sorted(good) == [
        "tile/0/009",
        "tile/0/010",
        "tile/0/011.p/184",
        "tile/1/000.p/11",
        "tile/entries/009",
        "tile/entries/010",
        "tile/entries/011.p/184",
    ]
    tiles.verify_tiles(good, 3000, root)

    def refused(changes: dict[str, bytes | None], message: str) -> None:
        carried = {p: d for p, d in {**good, **changes}.items() if d is not None}
        with raises(message):
            tiles.verify_tiles(carried, 3000, root, log="example.com/log")

    refused({"tile/0/009": _flip(good["tile/0/009"], 40)}, "example.com/log tile/0/009: hashes to ")
    refused({"tile/0/009": _flip(good["tile/0/009"], 40)}, ", tile/1/000.p/11 holds ")
    refused(
        {"tile/0/011.p/184": _flip(good["tile/0/011.p/184"])},
        "example.com/log tiles: the tiles hash to root ",
    )
    refused(
        {"tile/1/000.p/11": _flip(good["tile/1/000.p/11"])},
        f"the checkpoint says {root.hex()} (tree size 3000)",
    )
    refused(
        {"tile/0/010": good["tile/0/010"][:8000]}, "example.com/log tile/0/010: 8000 bytes, expected 8192"
    )
    refused(
        {"tile/entries/010": _flip(good["tile/entries/010"], 5)},
        "tile/entries/010: entry 2560 does not hash to its leaf in tile/0/010",
    )
    refused(
        {"tile/entries/010": good["tile/entries/010"][:-3]},
        "tile/entries/010: entry 255 needs 10 bytes, 7 left",
    )
    refused(
        {"tile/1/000.p/11": None},
        "example.com/log tile/1/000.p/11: missing: needed for the root of tree size 3000",
    )
    refused({"tile/0/009": None}, "tile/entries/009: cannot be checked: tile/0/009 is not carried")
    refused(
        {"tile/0/011.p/183": bytes(183 * 32)},
        "tile/0/011.p/183: not a tile of the tree of size 3000, it has tile/0/011.p/184",
    )
    refused({"tile/0/012": bytes(8192)}, "tile/0/012: not a tile of the tree of size 3000")
    refused({"tile/2/000.p/1": bytes(32)}, "tile/2/000.p/1: not a tile of the tree of size 3000")
    refused(
        {"tile/0/x000/009": bytes(8192)}, "tile/0/x000/009: not the canonical path of its tile (tile/0/009)"
    )
    refused({"checkpoint": b""}, "checkpoint: not a tile path")
    with raises("example.com/log tiles: the tiles hash to root"):
        tiles.verify_tiles(good, 3000, log.root(2999), log="example.com/log")
    with raises("tiles: root hash is 3 bytes, expected 32"):
        tiles.verify_tiles(good, 3000, b"abc")


def test_a_full_tile_without_its_parent_cannot_be_checked(big_log: SyntheticLog) -> None:
    carried = _sealed(big_log, 1)
    carried["tile/0/000"] = big_log.tiles()["tile/0/000"]  # level 1 tile 000 is not carried
    with raises("tile/0/000: cannot be checked: tile/1/000 is not carried"):
        tiles.verify_tiles(carried, big_log.size, big_log.root())


def test_empty_tree_and_bounds() -> None:
    verified = tiles.verify_tiles({}, 0, merkle.EMPTY_ROOT)
    assert tiles.covered_depth(verified) == 0 and tiles.leaf_at(verified, 0) is None
    assert tiles.root_at(verified, 0) == merkle.EMPTY_ROOT
    with raises("tiles: the tiles hash to root"):
        tiles.verify_tiles({}, 0, bytes(32))
    with raises("tiles: 10001 tiles, more than the 10000 allowed"):
        tiles.verify_tiles({f"tile/0/{i:03d}": b"" for i in range(10001)}, 2**40, bytes(32))


# ===============================================================================================
# The synthetic log served over HTTP (tests/tlog_log.py), as the exporter will fetch it


def _get(url: str, timeout: float = 5.0) -> bytes:
    with urllib.request.urlopen(url, timeout=timeout) as response:
        data: bytes = response.read()
        return data


def test_served_log_verifies_end_to_end(tmp_path: Path) -> None:
    key = Ed25519PrivateKey.generate()
    directory = tmp_path / "log"
    served = serve(directory)
    base_url, stop = served
    try:
        origin = base_url.removeprefix("http://")  # "127.0.0.1:<port>": the host with its port
        log = SyntheticLog(3000, origin, key)
        log.write(directory)
        checkpoint = signednote.verify_checkpoint(
            _get(f"{base_url}/checkpoint"), origin=origin, public_key=log.public_key_der
        )
        assert (checkpoint.size, checkpoint.root_hash) == (3000, log.root())
        fetched = {r.path: _get(f"{base_url}/{r.path}") for r in tilelayout.tiles_for(checkpoint.size, 1000)}
        sealed = tiles.verify_tiles(fetched, checkpoint.size, checkpoint.root_hash, log=origin)
        assert tiles.covered_depth(sealed) == 3000 - 1792
        assert "checkpoint" in served.requests and "tile/0/011.p/184" in served.requests

        # the log grows: the new checkpoint is consistent with the sealed state
        log.append(500)
        log.write(directory)
        newer = signednote.verify_checkpoint(
            _get(f"{base_url}/checkpoint"), origin=origin, public_key=log.public_key
        )
        refetched = {r.path: _get(f"{base_url}/{r.path}") for r in tilelayout.tiles_for(newer.size, 1000)}
        resealed = tiles.verify_tiles(refetched, newer.size, newer.root_hash)
        assert tiles.check_root(resealed, checkpoint.size, checkpoint.root_hash)
        assert _get(f"{base_url}/tile/0/011.p/184") == fetched["tile/0/011.p/184"]  # old partial kept

        # another key signs: refused
        other = Ed25519PrivateKey.generate()
        log.write(directory, checkpoint=log.checkpoint(key=other))
        with raises(f"{origin} checkpoint: no signature by {origin}"):
            signednote.verify_checkpoint(
                _get(f"{base_url}/checkpoint"),
                origin=origin,
                public_key=log.public_key,
                where=f"{origin} checkpoint",
            )

        # a tampered and a truncated tile on the server: refused
        log.write(directory)
        flip_byte(directory, "tile/0/012", 100)
        truncate(directory, "tile/entries/013.p/172", 50)
        fetched = {r.path: _get(f"{base_url}/{r.path}") for r in tilelayout.tiles_for(log.size, 1000)}
        with raises("tile/entries/013.p/172: entry "):
            tiles.verify_tiles(fetched, log.size, log.root())
        del fetched["tile/entries/013.p/172"]
        with raises("tile/0/012: hashes to "):
            tiles.verify_tiles(fetched, log.size, log.root())
    finally:
        stop()


def test_server_faults_for_fetch_limits(tmp_path: Path) -> None:
    log = SyntheticLog(300, "127.0.0.1")
    log.write(tmp_path)
    served = serve(tmp_path)
    try:
        # a byte every 10 s (the fault; stop() ends it at once) against a 2 s read timeout:
        # the first byte comes at once, the second never within the timeout, however loaded
        served.inject("tile/0/000", "dribble", 10.0)
        with urllib.request.urlopen(f"{served.base_url}/tile/0/000", timeout=2) as response:
            assert response.headers["Content-Length"] == "8192"
            assert len(response.read(1)) == 1
            with pytest.raises(TimeoutError):
                response.read()
        served.inject("tile/0/001.p/44", "endless")
        with urllib.request.urlopen(f"{served.base_url}/tile/0/001.p/44", timeout=5) as response:
            assert response.headers["Content-Length"] is None
            assert len(response.read(1024 * 1024)) == 1024 * 1024  # more than any tile, and more to come
        served.inject("checkpoint", "status", 404)
        with pytest.raises(urllib.error.HTTPError):
            _get(f"{served.base_url}/checkpoint")
        served.heal()
        assert _get(f"{served.base_url}/checkpoint").decode().startswith("127.0.0.1\n300\n")
    finally:
        served.stop()
