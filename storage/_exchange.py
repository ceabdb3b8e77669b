"""BlockExchange: nodes serve and fetch blocks over libp2p (TCP + Noise + Yamux).

py-libp2p runs on trio; the rest of tokenweave runs on asyncio. The host therefore lives in its
own thread with its own trio loop, behind a small blocking interface (`fetch`, `peer_id`,
`addrs`); asyncio callers use `asyncio.to_thread(exchange.fetch, ...)`.

Protocol `/tokenweave/blocks/1.0.0`, one block per stream: the client sends the CID's bytes
(varint length first); the server answers one status byte (0: here it is, 1: not found), the
block's varint length and its bytes, then closes. The client refuses blocks larger than
`MAX_BLOCK_BYTES` without reading them, and checks every block against its CID before keeping it.
"""

from __future__ import annotations

import contextlib
import logging
import random
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import multiaddr
import trio
from libp2p import new_host
from libp2p.abc import IHost, INetStream
from libp2p.crypto.secp256k1 import create_new_key_pair
from libp2p.crypto.x25519 import create_new_key_pair as create_x25519_key_pair
from libp2p.custom_types import TProtocol
from libp2p.network.config import ConnectionConfig
from libp2p.peer.peerinfo import PeerInfo, info_from_p2p_addr
from libp2p.security.noise.transport import PROTOCOL_ID as NOISE_PROTOCOL_ID
from libp2p.security.noise.transport import Transport as NoiseTransport

from tokenweave.errors import NotFoundError, UnavailableError
from tokenweave.storage._blockstore import MAX_BLOCK_BYTES, CorruptBlockError
from tokenweave.storage._cancel import CancelFlag
from tokenweave.storage._cid import CID, decode_varint, encode_varint

logger = logging.getLogger(__name__)
# py-libp2p logs expected events as errors (the losing dial of a parallel fetch, a peer that went
# away); the exchange reports what matters itself. Applications that set a level keep theirs.
if logging.getLogger("libp2p").level == logging.NOTSET:
    logging.getLogger("libp2p").setLevel(logging.CRITICAL)

PROTOCOL = TProtocol("/tokenweave/blocks/1.0.0")
FOUND, MISSING = 0, 1
#: Seconds `stop()` gives open connections to close.
CLOSE_TIMEOUT_S = 2.0
#: Tries of one provider for one block when its stream fails to open or breaks.
FETCH_TRIES = 3
#: Seconds a provider has to answer before another is asked too.
HEDGE_S = 0.5

#: Where the exchange reads blocks from to serve them (a BlockStore's `get`).
BlockReader = Callable[[CID], bytes]


class PeerMisbehavedError(CorruptBlockError):
    """A peer served bytes that are not the block asked for, or an oversized block."""


async def _read_exactly(stream: INetStream, n: int) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        try:
            chunk = await stream.read(min(n - len(buf), 1 << 16))
        except EOFError:  # py-libp2p raises StreamEOF (an EOFError) instead of returning b""
            chunk = b""
        if not chunk:
            raise EOFError(f"stream ended after {len(buf)} of {n} bytes")
        buf += chunk
    return bytes(buf)


async def _read_varint(stream: INetStream) -> int:
    raw = bytearray()
    while True:
        byte = await _read_exactly(stream, 1)
        raw += byte
        if not byte[0] & 0x80:
            return decode_varint(bytes(raw), 0)[0]
        if len(raw) > 9:
            raise EOFError("overlong varint")


@dataclass
class ExchangeStats:
    served: int = 0
    fetched: int = 0
    bad_peers: set[str] = field(default_factory=set)


class BlockExchange:
    """A libp2p host serving `reader`'s blocks (none without a reader: a client that only
    fetches); `start()` before use, `stop()` after."""

    def __init__(
        self,
        reader: BlockReader | None = None,
        private_key: bytes | None = None,
        listen: str = "/ip4/127.0.0.1/tcp/0",
        timeout: float = 30.0,
    ) -> None:
        self._reader = reader
        key_pair = create_new_key_pair(private_key)
        noise = NoiseTransport(key_pair, noise_privkey=create_x25519_key_pair().private_key)
        self._host: IHost = new_host(
            key_pair=key_pair,
            sec_opt={NOISE_PROTOCOL_ID: noise},
            muxer_preference="YAMUX",
            # Dial only the providers asked for: py-libp2p's auto-connector would otherwise
            # keep redialling every peer it has met (dead ones too) and stall shutdown.
            connection_config=ConnectionConfig(min_connections=0, low_watermark=0),
        )
        self._listen = multiaddr.Multiaddr(listen)
        self._timeout = timeout
        self._token: trio.lowlevel.TrioToken | None = None
        self._ready = threading.Event()
        self._stop: trio.Event | None = None
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None
        self.stats = ExchangeStats()

    # -- lifecycle ------------------------------------------------------------------------------

    def start(self) -> BlockExchange:
        self._thread = threading.Thread(target=self._run, name="libp2p", daemon=True)
        self._thread.start()
        if not self._ready.wait(self._timeout) or self._error is not None:
            raise UnavailableError(f"libp2p host did not start: {self._error}")
        return self

    def _run(self) -> None:
        try:
            trio.run(self._main)
        except BaseException as exc:  # surfaced by start()
            self._error = exc
            self._ready.set()

    async def _main(self) -> None:
        self._token = trio.lowlevel.current_trio_token()
        self._stop = trio.Event()
        with trio.CancelScope() as everything:
            async with self._host.run(listen_addrs=[self._listen]):
                self._host.set_stream_handler(PROTOCOL, self._serve)
                self._ready.set()
                await self._stop.wait()
                # Close every connection ourselves: the host leaves some sockets open otherwise.
                with trio.move_on_after(CLOSE_TIMEOUT_S):
                    await self._host.get_network().close()
                # Whatever the host still waits for (idle connections' tasks, redials) must not
                # hold up the process: cut it short.
                everything.cancel()

    def stop(self) -> None:
        if self._token is not None and self._stop is not None:
            with contextlib.suppress(trio.RunFinishedError):
                trio.from_thread.run_sync(self._stop.set, trio_token=self._token)
        if self._thread is not None:
            self._thread.join(self._timeout)

    def __enter__(self) -> BlockExchange:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def peer_id(self) -> str:
        return str(self._host.get_id())

    @property
    def addrs(self) -> list[str]:
        """Full multiaddrs, `/ip4/…/tcp/…/p2p/<peer id>`."""
        return [str(a) for a in self._host.get_addrs()]

    # -- serving --------------------------------------------------------------------------------

    async def _serve(self, stream: INetStream) -> None:
        try:
            with trio.fail_after(self._timeout):
                length = await _read_varint(stream)
                if length > 64:
                    raise EOFError(f"a CID of {length} bytes")
                cid = CID.from_bytes(await _read_exactly(stream, length))
                try:
                    if self._reader is None:
                        raise NotFoundError(f"this peer serves no blocks ({cid})")
                    data = await trio.to_thread.run_sync(self._reader, cid)
                except (NotFoundError, CorruptBlockError):
                    await stream.write(bytes([MISSING]))
                else:
                    await stream.write(bytes([FOUND]) + encode_varint(len(data)) + data)
                    self.stats.served += 1
        except Exception as exc:
            logger.info("block request failed: %s: %s", type(exc).__name__, exc)
        finally:
            await stream.close()

    # -- fetching -------------------------------------------------------------------------------

    def fetch(self, cid: CID, providers: Sequence[str], cancel: CancelFlag | None = None) -> bytes:
        """The block from the first provider to answer with the right bytes: one is asked, and
        another each time the last fails or is slower than `HEDGE_S` (hedged requests).

        Providers are full multiaddrs. Raises NotFoundError when none has it,
        PeerMisbehavedError when the only answers were wrong, UnavailableError otherwise, and
        ReadCancelledError as soon as `cancel` is set (the fetch in flight is cut short).
        """
        if self._token is None:
            raise UnavailableError("the block exchange is not started")
        if not providers:
            raise NotFoundError(f"no provider is known for block {cid}")
        if cancel is not None:
            cancel.check()
        result: bytes = trio.from_thread.run(
            self._fetch_any, cid, list(providers), cancel, trio_token=self._token
        )
        return result

    def _cancel_soon(self, scope: trio.CancelScope) -> None:
        """From any thread: cancel `scope` on the trio loop."""
        if self._token is not None:
            with contextlib.suppress(trio.RunFinishedError):
                self._token.run_sync_soon(scope.cancel)

    async def _fetch_any(
        self, cid: CID, providers: list[str], cancel: CancelFlag | None = None
    ) -> bytes:
        found: list[bytes] = []
        failures: list[BaseException] = []

        async def attempt(address: str, cancel: trio.CancelScope) -> None:
            # A stream that fails to open (a busy peer, a race on a fresh connection) is tried
            # again, twice, after a pause; a peer that says it lacks the block, or sends wrong
            # bytes, is not.
            for retry in range(FETCH_TRIES):
                try:
                    data = await self._fetch_one(cid, address)
                except (NotFoundError, PeerMisbehavedError) as exc:
                    failures.append(exc)
                    return
                except Exception as exc:
                    if retry == FETCH_TRIES - 1:
                        failures.append(exc)
                        return
                    await trio.sleep(0.25 * 2**retry)
                    continue
                found.append(data)
                cancel.cancel()
                return

        async def hedged(nursery: trio.Nursery) -> None:
            # One provider at a time, in random order (load spreads over them), the next one
            # started when the last failed or has not answered within HEDGE_S: asking all of
            # them at once moves every block once a provider.
            order = random.sample(providers, len(providers))
            for address in order:
                done = trio.Event()

                async def run(address: str = address, done: trio.Event = done) -> None:
                    try:
                        await attempt(address, nursery.cancel_scope)
                    finally:
                        done.set()

                nursery.start_soon(run)
                with trio.move_on_after(HEDGE_S):
                    await done.wait()

        with trio.move_on_after(self._timeout) as scope:
            forget = cancel.on_cancel(lambda: self._cancel_soon(scope)) if cancel else None
            try:
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(hedged, nursery)
            finally:
                if forget is not None:
                    forget()
        if cancel is not None:
            cancel.check()
        if found:
            self.stats.fetched += 1
            return found[0]
        if scope.cancelled_caught and not failures:
            raise UnavailableError(f"block {cid}: no provider answered in {self._timeout:.0f} s")
        for kind in (PeerMisbehavedError, NotFoundError):
            if failures and all(isinstance(f, kind) for f in failures):
                raise failures[0]
        reasons = "; ".join(f"{type(f).__name__}: {f}" for f in failures)
        raise UnavailableError(
            f"block {cid} could not be fetched from {len(providers)} providers: {reasons}"
        )

    def _forget_failures(self, info: PeerInfo) -> None:
        """A provider this host holds no open connection to gets a fresh dial at the address
        the coordinator gave, and only there: a node that restarted on another port is
        reachable at once, not when the swarm's negative cache of failed peers (filled by dials
        to its old address) expires, and its old addresses are not dialled again. Fetches are
        bounded by their timeout, not by that cache."""
        network = self._host.get_network()
        if any(not c.is_closed for c in network.get_connections(info.peer_id)):
            return
        with contextlib.suppress(Exception):  # addresses it had before: it left them
            self._host.get_peerstore().clear_addrs(info.peer_id)
        if hasattr(network, "unblock_peer"):
            network.unblock_peer(info.peer_id)

    async def _fetch_one(self, cid: CID, address: str) -> bytes:
        info = info_from_p2p_addr(multiaddr.Multiaddr(address))
        self._forget_failures(info)
        await self._host.connect(info)
        stream = await self._host.new_stream(info.peer_id, [PROTOCOL])
        try:
            raw = bytes(cid)
            await stream.write(encode_varint(len(raw)) + raw)
            status = (await _read_exactly(stream, 1))[0]
            if status == MISSING:
                raise NotFoundError(f"peer {info.peer_id} does not have block {cid}")
            length = await _read_varint(stream)
            if length > MAX_BLOCK_BYTES:
                self.stats.bad_peers.add(str(info.peer_id))
                raise PeerMisbehavedError(
                    f"peer {info.peer_id} offered a block of {length} bytes for {cid}; "
                    f"the limit is {MAX_BLOCK_BYTES}"
                )
            data = await _read_exactly(stream, length)
        finally:
            await stream.close()
        if not cid.verify(data):
            self.stats.bad_peers.add(str(info.peer_id))
            raise PeerMisbehavedError(f"peer {info.peer_id} served bytes that are not block {cid}")
        return data
