"""A synthetic tile-based transparency log (C2SP tlog-tiles) for tests, and a server for it.

`SyntheticLog` builds entries, every hash tile at every level, entry bundles and a signed
checkpoint, and writes them in the C2SP layout (`checkpoint`, `tile/<L>/<N>[.p/<W>]`,
`tile/entries/<N>[.p/<W>]`). It computes tiles straight from the spec's definitions
(RFC 6962 §2.1 MTH, recursive; tlog-tiles's tile formula) with hashlib, independently of
`stella_trust._internal.sigstore.tiles`/`merkle`, so a test that compares the two compares
two implementations. Only signing uses the module under test (`signednote.sign_note`),
itself checked against the spec's own signed examples.

`serve(directory)` serves such a directory on 127.0.0.1 (ThreadingHTTPServer), with faults
a test can inject per path suffix: an HTTP status, a body, a dribble (one byte per interval)
or an endless response. Faulty responses stop by themselves (64 MiB, 20 s).

    log = SyntheticLog(3000, origin="127.0.0.1:8080/log", key=Ed25519PrivateKey.generate())
    log.write(tmp_path / "log")
    base_url, stop = served = serve(tmp_path / "log")
    served.inject("tile/0/000", "dribble", 1.0)
"""

from __future__ import annotations

import base64
import functools
import hashlib
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from stella_trust._internal.sigstore.signednote import LogPrivateKey, sign_note

WIDTH = 256
ENDLESS_CAP_BYTES = 64 * 1024 * 1024
FAULT_SECONDS_CAP = 20.0


def default_entry(index: int) -> bytes:
    return b"entry %d" % index


def _leaf(data: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + data).digest()


def _mth(hashes: list[bytes]) -> bytes:
    """RFC 6962 §2.1, literally: k is the largest power of two smaller than n."""
    if not hashes:
        return hashlib.sha256(b"").digest()
    if len(hashes) == 1:
        return hashes[0]
    k = 1 << ((len(hashes) - 1).bit_length() - 1)
    return hashlib.sha256(b"\x01" + _mth(hashes[:k]) + _mth(hashes[k:])).digest()


def _path(m: int, hashes: list[bytes]) -> list[bytes]:
    if len(hashes) == 1:
        return []
    k = 1 << ((len(hashes) - 1).bit_length() - 1)
    if m < k:
        return [*_path(m, hashes[:k]), _mth(hashes[k:])]
    return [*_path(m - k, hashes[k:]), _mth(hashes[:k])]


def tile_path(level: int | str, index: int, width: int = WIDTH) -> str:
    """tlog-tiles: `tile/<L>/<N>[.p/<W>]`, N in 3-digit groups, all but the last `x`-prefixed."""
    digits = f"{index:d}"
    digits = "0" * (-len(digits) % 3) + digits
    groups = [digits[i : i + 3] for i in range(0, len(digits), 3)]
    encoded = "/".join([f"x{g}" for g in groups[:-1]] + groups[-1:])
    return f"tile/{level}/{encoded}" + (f".p/{width}" if width < WIDTH else "")


class SyntheticLog:
    """A tile-based log of `entries` entries (b"entry %d" unless `entry` says otherwise)."""

    def __init__(
        self,
        entries: int,
        origin: str,
        key: Ed25519PrivateKey | None = None,
        *,
        entry: Callable[[int], bytes] = default_entry,
    ) -> None:
        self.origin = origin
        self.key = key if key is not None else Ed25519PrivateKey.generate()
        self._entry = entry
        self.entries: list[bytes] = []
        self.levels: list[list[bytes]] = [[]]  # level l: MTH of each full 256**l-leaf subtree
        self._roots: dict[int, bytes] = {}
        self.append(entries)

    # -- state ---------------------------------------------------------------------------------

    @property
    def size(self) -> int:
        return len(self.entries)

    @property
    def public_key(self) -> Ed25519PublicKey:
        return self.key.public_key()

    @property
    def public_key_der(self) -> bytes:
        return self.public_key.public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)

    def append(self, count: int) -> None:
        """Grow the log by `count` entries; checkpoints and tiles of older sizes stay valid."""
        for _ in range(count):
            data = self._entry(len(self.entries))
            self.entries.append(data)
            self.levels[0].append(_leaf(data))
            level = 0
            while len(self.levels[level]) % WIDTH == 0:
                if len(self.levels) == level + 1:
                    self.levels.append([])
                self.levels[level + 1].append(_mth(self.levels[level][-WIDTH:]))
                level += 1

    def root(self, size: int | None = None) -> bytes:
        size = self.size if size is None else size
        if size not in self._roots:
            self._roots[size] = _mth(self.levels[0][:size])
        return self._roots[size]

    def leaf_hash(self, index: int) -> bytes:
        return self.levels[0][index]

    def inclusion_path(self, index: int, size: int | None = None) -> list[bytes]:
        """RFC 9162 §2.1.3.1 PATH(m, D[n]), literally (leaf to root order)."""
        size = self.size if size is None else size
        return _path(index, self.levels[0][:size])

    # -- C2SP resources ------------------------------------------------------------------------

    def checkpoint_text(
        self, size: int | None = None, *, origin: str | None = None, root: bytes | None = None
    ) -> str:
        size = self.size if size is None else size
        root = self.root(size) if root is None else root
        return f"{origin or self.origin}\n{size}\n{base64.b64encode(root).decode()}\n"

    def checkpoint(
        self,
        size: int | None = None,
        *,
        key: LogPrivateKey | None = None,
        name: str | None = None,
        origin: str | None = None,
        root: bytes | None = None,
    ) -> str:
        """The signed checkpoint; `key`, `name`, `origin`, `root` forge one for negative tests."""
        text = self.checkpoint_text(size, origin=origin, root=root)
        return sign_note(text, name or origin or self.origin, key if key is not None else self.key)

    def tiles(self, size: int | None = None) -> dict[str, bytes]:
        """Every hash tile and entry bundle of the tree of `size` (path -> bytes)."""
        size = self.size if size is None else size
        out: dict[str, bytes] = {}
        level = 0
        while size >> (8 * level):
            count = size >> (8 * level)
            for index in range((count + WIDTH - 1) // WIDTH):
                hashes = self.levels[level][index * WIDTH : min(count, (index + 1) * WIDTH)]
                out[tile_path(level, index, len(hashes))] = b"".join(hashes)
                if level == 0:
                    bundle = self.entries[index * WIDTH : index * WIDTH + len(hashes)]
                    out[tile_path("entries", index, len(hashes))] = encode_bundle(bundle)
            level += 1
        return out

    def write(self, directory: Path, size: int | None = None, *, checkpoint: str | None = None) -> Path:
        """Write the tiles of `size` and its checkpoint (or `checkpoint`) in the C2SP layout."""
        for path, data in self.tiles(size).items():
            target = directory / path
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
        write_checkpoint(directory, checkpoint if checkpoint is not None else self.checkpoint(size))
        return directory


def encode_bundle(entries: list[bytes]) -> bytes:
    """tlog-tiles §"Log entries": big-endian uint16 length-prefixed entries."""
    return b"".join(len(data).to_bytes(2, "big") + data for data in entries)


# -- tampering with a written log ------------------------------------------------------------


def write_checkpoint(directory: Path, text: str) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "checkpoint").write_text(text, encoding="utf-8")


def flip_byte(directory: Path, path: str, offset: int = 0) -> None:
    """Flip the low bit of one byte of a served file (a tampered tile or bundle)."""
    target = directory / path
    data = bytearray(target.read_bytes())
    data[offset] ^= 0x01
    target.write_bytes(bytes(data))


def truncate(directory: Path, path: str, keep: int) -> None:
    """Cut a served file to its first `keep` bytes (a truncated tile)."""
    target = directory / path
    target.write_bytes(target.read_bytes()[:keep])


# -- serving -----------------------------------------------------------------------------------


class _LogServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.stopping = threading.Event()
        self.lock = threading.Lock()
        self.requests: list[str] = []
        self.faults: dict[str, tuple[str, Any]] = {}
        super().__init__(("127.0.0.1", 0), functools.partial(_LogHandler, directory=str(directory)))

    def fault_for(self, path: str) -> tuple[str, Any] | None:
        with self.lock:
            self.requests.append(path)
            for suffix, fault in self.faults.items():
                if path.endswith(suffix):
                    return fault
        return None


class _LogHandler(SimpleHTTPRequestHandler):
    server: _LogServer

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    def guess_type(self, path: Any) -> str:
        """tlog-tiles: the checkpoint is text/plain; tiles and bundles are octet streams."""
        return "text/plain; charset=utf-8" if str(path).endswith("checkpoint") else "application/octet-stream"

    def do_GET(self) -> None:
        fault = self.server.fault_for(self.path.split("?", 1)[0].lstrip("/"))
        if fault is None:
            super().do_GET()
            return
        kind, value = fault
        try:
            if kind == "status":
                self.send_error(int(value))
            elif kind == "body":
                self._send(bytes(value))
            elif kind == "endless":
                self._endless()
            elif kind == "dribble":
                self._dribble(float(value))
            else:
                raise ValueError(f"unknown fault {kind!r}")
        except OSError:  # the client gave up: that is what these faults are for
            pass

    def _send(self, data: bytes) -> None:
        self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _endless(self) -> None:
        """200 without a length, then zeros until the client stops reading (or the cap)."""
        self.send_response(200)
        self.send_header("Connection", "close")
        self.end_headers()
        sent, started, chunk = 0, time.monotonic(), b"\x00" * 65536
        while sent < ENDLESS_CAP_BYTES and time.monotonic() - started < FAULT_SECONDS_CAP:
            if self.server.stopping.is_set():
                return
            self.wfile.write(chunk)
            sent += len(chunk)

    def _dribble(self, interval: float) -> None:
        """The real file with its real length, one byte per `interval` seconds."""
        target = Path(self.translate_path(self.path))
        data = target.read_bytes() if target.is_file() else b"\x00" * (WIDTH * 32)
        self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        started = time.monotonic()
        for byte in data:
            if time.monotonic() - started > FAULT_SECONDS_CAP:
                return
            self.wfile.write(bytes([byte]))
            self.wfile.flush()
            if self.server.stopping.wait(interval):
                return


@dataclass
class ServedLog:
    """A running server: unpacks as `base_url, stop`; `inject`/`heal` faults, `requests` seen."""

    base_url: str
    stop: Callable[[], None]
    server: _LogServer = field(repr=False)

    def __iter__(self) -> Iterator[Any]:
        return iter((self.base_url, self.stop))

    @property
    def requests(self) -> list[str]:
        with self.server.lock:
            return list(self.server.requests)

    def inject(self, suffix: str, kind: str, value: Any = None) -> None:
        """Fault for paths ending in `suffix`: ("status", 404), ("body", b"..."),
        ("dribble", seconds per byte) or ("endless", None)."""
        with self.server.lock:
            self.server.faults[suffix] = (kind, value)

    def heal(self) -> None:
        with self.server.lock:
            self.server.faults.clear()


def serve(directory: Path) -> ServedLog:
    """Serve `directory` on 127.0.0.1:<free port> in a thread until `stop()` is called."""
    server = _LogServer(directory)
    thread = threading.Thread(
        target=functools.partial(server.serve_forever, poll_interval=0.05), name="tlog-server", daemon=True
    )
    thread.start()
    host, port = server.server_address[:2]

    def stop() -> None:
        server.stopping.set()
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)

    return ServedLog(base_url=f"http://{host!s}:{port}", stop=stop, server=server)
