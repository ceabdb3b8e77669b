"""The one tensor codec: round trips, and refusal of bytes that do not fit their shape."""

from __future__ import annotations

import numpy as np
import pytest

from tokenweave import tensors
from tokenweave.errors import InvalidArgumentError
from tokenweave.v1 import tensor_pb2


@pytest.mark.parametrize("dtype", sorted(tensors.DTYPES))
def test_every_dtype_round_trips(dtype: str) -> None:
    array = (np.arange(24) % 3).astype(dtype).reshape(2, 3, 4)
    back = tensors.from_proto(tensors.to_proto(array))
    assert back.dtype == np.dtype(dtype)
    np.testing.assert_array_equal(back, array)


def test_named_tensors_pack_deterministically() -> None:
    named = {"b": np.ones((2, 2), np.float32), "a": np.array(7, np.int64)}
    data = tensors.pack(named)
    assert data == tensors.pack(dict(reversed(named.items())))
    back = tensors.unpack(data)
    assert list(back) == ["a", "b"]
    assert back["a"].shape == ()
    np.testing.assert_array_equal(back["b"], named["b"])


def test_bytes_are_little_endian() -> None:
    assert tensors.to_bytes([1], "uint32") == b"\x01\x00\x00\x00"
    assert tensors.from_bytes(b"\x01\x00\x00\x00", "uint32")[0] == 1


@pytest.mark.parametrize(
    ("tensor", "message"),
    [
        (tensor_pb2.Tensor(dtype="float32", shape=[3], data=b"\0" * 8), "needs 12 bytes"),
        (tensor_pb2.Tensor(dtype="float32", shape=[10**12], data=b""), "needs"),
        (tensor_pb2.Tensor(dtype="float32", shape=[1], data=b"\0" * 5), "whole number"),
        (tensor_pb2.Tensor(dtype="object", shape=[1], data=b"\0"), "is not one of"),
        (tensor_pb2.Tensor(dtype="uint8", shape=[1] * 9, data=b"\0"), "at most 8"),
        (tensor_pb2.Tensor(dtype="float32", shape=[0, 2**63], data=b""), "is not valid"),
    ],
)
def test_malformed_tensors_are_refused(tensor: tensor_pb2.Tensor, message: str) -> None:
    with pytest.raises(InvalidArgumentError, match=message):
        tensors.from_proto(tensor, "x")


def test_garbage_is_not_a_tensor_map() -> None:
    with pytest.raises(InvalidArgumentError, match="not a TensorMap"):
        tensors.unpack(b"\xff\xff\xff")


def test_tensor_files_load_without_pickles_or_bombs() -> None:
    import io
    import zipfile

    good = tensors.npz_bytes({"x": np.arange(6, dtype=np.float32).reshape(2, 3)})
    np.testing.assert_array_equal(tensors.load_file("a.npz", good)["x"], np.arange(6).reshape(2, 3))
    buffer = io.BytesIO()
    np.save(buffer, np.ones(3, np.int64))
    assert list(tensors.load_file("b.npy", buffer.getvalue())) == [""]
    pickled = io.BytesIO()
    np.save(pickled, np.array([{"evil": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(InvalidArgumentError, match=r"not an \.npy array"):
        tensors.load_file("p.npy", pickled.getvalue())
    complex_ = io.BytesIO()
    np.save(complex_, np.ones(2, np.complex64))
    with pytest.raises(InvalidArgumentError, match="holds complex64; supported"):
        tensors.load_file("c.npy", complex_.getvalue())
    bomb = io.BytesIO()
    with zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("x.npy", b"\0" * (65 * 1024 * 1024))  # a few KB, compressed
    assert len(bomb.getvalue()) < 1 << 20
    with pytest.raises(InvalidArgumentError, match="inflates to 68157440 bytes; the limit"):
        tensors.load_file("bomb.npz", bomb.getvalue())
    many = tensors.npz_bytes({f"a{i}": np.zeros(1, np.uint8) for i in range(257)})
    with pytest.raises(InvalidArgumentError, match="holds 257 arrays; the limit is 256"):
        tensors.load_file("many.npz", many)
    with pytest.raises(InvalidArgumentError, match=r"not an \.npz archive"):
        tensors.load_file("junk.npz", b"PK not a zip")


def test_rows_of_an_npy_file_are_read_by_range() -> None:
    import io

    array = np.arange(5 * 3, dtype=np.int32).reshape(5, 3)
    buffer = io.BytesIO()
    np.save(buffer, array)
    data = buffer.getvalue()
    ranges: list[tuple[int, int]] = []

    def read(start: int, end: int) -> bytes:
        ranges.append((start, end))
        return data[start:end]

    np.testing.assert_array_equal(tensors.npy_rows("a.npy", len(data), read, 1, 3), array[1:3])
    assert ranges[-1][1] - ranges[-1][0] == 2 * 3 * 4, "only the two rows' bytes"
    with pytest.raises(InvalidArgumentError, match="rows 4:9 are not in the file"):
        tensors.npy_rows("a.npy", len(data) - 4, read, 4, 9)
    fortran = io.BytesIO()
    np.save(fortran, np.asfortranarray(array))
    whole = fortran.getvalue()
    rows = tensors.npy_rows("f.npy", len(whole), lambda a, b: whole[a:b], 2, 4)
    np.testing.assert_array_equal(rows, array[2:4])
