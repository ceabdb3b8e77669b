"""Any ONNX model on the network: ModelInfer through a coordinator and nodes against a bare
ONNX Runtime session, and the time a new node takes to fetch and load a 90 MB model from a peer.

    python benchmarks/bench_infer.py [--rows 256] [--runs 3] [--threads 2]

1. A coordinator and one node serving it (verification off, so the figure is the path's own)
   run the shipped image classifier (PaddleOCR's text direction); `--rows` crops of 3 × 48 × 192 go
   through the Open Inference Protocol's gRPC ModelInfer, best of `--runs`, against the same
   batch in a bare session with the node's threads, in this process. Printed: rows/s of each and
   their ratio (the goal is ≥ 0.9).
2. A model of 90 MB (one fp32 matrix, written with onnx.helper) is registered (stored on both
   nodes); a third node starts and fetches it from them over libp2p, checks and loads it:
   printed, the fetch's MB/s (from the node's log) and the time until it serves the model.
"""

from __future__ import annotations

import argparse
import contextlib
import re
import tempfile
import time
from pathlib import Path

import grpc
import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

from tokenweave.cli import LocalCluster
from tokenweave.models import default_cache_dir, prepare_model, text_direction_model
from tokenweave.v1 import inference_pb2, inference_pb2_grpc

IMAGE_MODEL = "text-direction"


def big_model(path: Path, megabytes: int = 90) -> Path:
    """x float32 [N, 1024] → relu(x @ W), W of `megabytes` MB."""
    columns = megabytes * 1024 * 1024 // (4 * 1024)
    weight = np.random.default_rng(0).normal(size=(1024, columns)).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["h"]), helper.make_node("Relu", ["h"], ["y"])],
        "big",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 1024])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", columns])],
        [numpy_helper.from_array(weight, "w")],
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    return path


def raw_stream_mb_per_s(size: int) -> float:
    """MB/s of `size` bytes over one py-libp2p stream (TCP + Noise + Yamux, as the block
    exchange dials) between two hosts on loopback: what a fetch could reach at most."""
    import multiaddr
    import trio
    from libp2p import new_host
    from libp2p.crypto.secp256k1 import create_new_key_pair
    from libp2p.crypto.x25519 import create_new_key_pair as x25519_pair
    from libp2p.custom_types import TProtocol
    from libp2p.network.config import ConnectionConfig
    from libp2p.network.stream.exceptions import StreamEOF
    from libp2p.peer.peerinfo import info_from_p2p_addr
    from libp2p.security.noise.transport import PROTOCOL_ID as NOISE
    from libp2p.security.noise.transport import Transport

    protocol, chunk = TProtocol("/bench/raw/1.0.0"), b"\0" * 65536

    def host() -> object:
        keys = create_new_key_pair()
        noise = Transport(keys, noise_privkey=x25519_pair().private_key)
        return new_host(
            key_pair=keys,
            sec_opt={NOISE: noise},
            muxer_preference="YAMUX",
            connection_config=ConnectionConfig(min_connections=0, low_watermark=0),
        )

    async def send(stream: object) -> None:
        for _ in range(size // len(chunk)):
            await stream.write(chunk)  # type: ignore[attr-defined]
        await stream.close()  # type: ignore[attr-defined]

    seconds = 0.0

    async def main() -> None:
        nonlocal seconds
        server, client = host(), host()
        listen = [multiaddr.Multiaddr("/ip4/127.0.0.1/tcp/0")]
        with trio.CancelScope() as everything:  # the hosts' background tasks end with it
            async with server.run(listen_addrs=listen), client.run(listen_addrs=listen):  # type: ignore[attr-defined]
                server.set_stream_handler(protocol, send)  # type: ignore[attr-defined]
                address = multiaddr.Multiaddr(f"{server.get_addrs()[0]}")  # type: ignore[attr-defined]
                await client.connect(info_from_p2p_addr(address))  # type: ignore[attr-defined]
                started = time.perf_counter()
                stream = await client.new_stream(server.get_id(), [protocol])  # type: ignore[attr-defined]
                received = 0
                with contextlib.suppress(StreamEOF):  # the sender closed: all of it came
                    while data := await stream.read(1 << 20):
                        received += len(data)
                seconds = time.perf_counter() - started
                assert received == size - size % len(chunk), f"{received} of {size} bytes came"
                everything.cancel()

    trio.run(main)
    return size / seconds / 1e6


def model_infer(cluster: LocalCluster, images: np.ndarray) -> float:
    """Seconds for one ModelInfer of `images` through the cluster."""
    assert cluster.ca is not None
    credentials = grpc.ssl_channel_credentials(cluster.ca.read_bytes())
    options = [("grpc.max_send_message_length", 256 << 20),
               ("grpc.max_receive_message_length", 256 << 20)]  # fmt: skip
    with grpc.secure_channel(cluster.address, credentials, options) as channel:
        stub = inference_pb2_grpc.GRPCInferenceServiceStub(channel)
        request = inference_pb2.ModelInferRequest(model_name=IMAGE_MODEL)
        request.inputs.add(name="x", datatype="FP32", shape=list(images.shape))
        request.raw_input_contents.append(images.tobytes())
        started = time.perf_counter()
        stub.ModelInfer(request, metadata=[("authorization", f"Bearer {cluster.api_key}")])
        return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=256)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    cache = default_cache_dir()
    prepare_model("all-minilm-l6-v2", cache)
    images = np.random.default_rng(0).uniform(-1, 1, (args.rows, 3, 48, 192)).astype(np.float32)
    options = ort.SessionOptions()
    options.intra_op_num_threads = args.threads
    bare = ort.InferenceSession(str(text_direction_model()), options)
    bare.run(None, {"x": images[:8]})
    bare_s = min(_timed(lambda: bare.run(None, {"x": images})) for _ in range(args.runs))
    with tempfile.TemporaryDirectory(prefix="bench-infer-") as tmp:
        cluster = LocalCluster(
            root=Path(tmp),
            model_cache=cache,
            coordinator_args=("--verify-fraction", "0", "--vetting-results", "0"),
            node_args=("--threads", str(args.threads), "--calibration-windows", "1"),
        )  # fmt: skip
        try:
            cluster.start(1)  # holds the models' blocks; started before them, serves neither
            with cluster.client(timeout=600) as client:
                client.add_model(text_direction_model(), IMAGE_MODEL)
            cluster.add_node()  # fetches the image model from the first and serves it
            cluster.wait_for_nodes(2)
            model_infer(cluster, images[:8])
            network_s = min(model_infer(cluster, images) for _ in range(args.runs))
            with cluster.client(timeout=600) as client:
                client.add_model(big_model(Path(tmp) / "big.onnx"), "big")
            started = time.monotonic()
            node = cluster.add_node()  # the third: fetches the 90 MB model from the others
            pattern = re.compile(r"model big: (\d+) bytes fetched from peers in ([\d.]+) s")
            fetched = None
            while fetched is None and time.monotonic() - started < 600:
                time.sleep(0.2)
                log = node.log_path.read_text()
                fetched = pattern.search(log)
                if "model big not served" in log:
                    break
            while "registered with" not in node.log_path.read_text():
                time.sleep(0.2)
            serving_s = time.monotonic() - started
        finally:
            cluster.stop()
    print(f"ModelInfer, {args.rows} rows of 3x48x192, {args.threads} threads, best of {args.runs}")
    print(f"  bare session           {args.rows / bare_s:8.0f} rows/s")
    print(f"  coordinator + 1 node   {args.rows / network_s:8.0f} rows/s"
          f"  ({bare_s / network_s:.2f}x the bare session)")  # fmt: skip
    if fetched:
        size, seconds = int(fetched.group(1)), float(fetched.group(2))
        rate, raw = size / seconds / 1e6, raw_stream_mb_per_s(size)
        print(f"90 MB model: fetched from peers at {rate:.1f} MB/s ({seconds:.1f} s), "
              f"{rate / raw:.2f}x one raw py-libp2p stream ({raw:.1f} MB/s, same run); the new "
              f"node served it {serving_s:.1f} s after it started")  # fmt: skip
    else:
        print("90 MB model: the new node did not fetch it (see its log)")


def _timed(work: object) -> float:
    started = time.perf_counter()
    work()  # type: ignore[operator]
    return time.perf_counter() - started


if __name__ == "__main__":
    main()
