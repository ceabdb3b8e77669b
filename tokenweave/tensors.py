"""The one codec for arrays on the wire and on disk: bytes + dtype + shape.

Every array that crosses a process boundary (task payloads and outputs, job results, token ids
in the database) goes through here, as a `tokenweave.v1.Tensor` or as raw little-endian bytes
with a known dtype. Decoding checks that the bytes fit the declared shape exactly and that the
dtype is one of the few the network speaks, so a peer cannot make us allocate what it did not send.
"""

from __future__ import annotations

import io
import math
import struct
import zipfile
from collections.abc import Callable, Mapping, Sequence

import numpy as np
import numpy.typing as npt

from tokenweave.errors import InvalidArgumentError, clip
from tokenweave.v1 import tensor_pb2

#: numpy dtype names the network speaks, each stored little-endian.
DTYPES: dict[str, np.dtype[np.generic]] = {
    name: np.dtype(name).newbyteorder("<")
    for name in ("float32", "float16", "int64", "int32", "uint32", "uint8", "bool")
}
#: The dtype name of a tensor of byte strings (numpy: an object array of `bytes`; on the wire,
#: each element's length as uint32 little-endian, then its bytes, as the Open Inference
#: Protocol's BYTES).
STRING = "bytes"
#: Dimensions a tensor may have.
MAX_RANK = 8


def dtype_name(array: npt.NDArray[np.generic]) -> str:
    """The network's name for an array's element type ("bytes" for strings)."""
    return STRING if array.dtype.kind in "OSU" else array.dtype.name


def pack_strings(values: Sequence[bytes]) -> bytes:
    """Byte strings as the BYTES wire form: each one's length (uint32 LE), then its bytes."""
    return b"".join(struct.pack("<I", len(v)) + v for v in values)


def unpack_strings(data: bytes, what: str = "strings") -> list[bytes]:
    values, offset = [], 0
    while offset < len(data):
        if offset + 4 > len(data):
            raise InvalidArgumentError(f"{what}: the byte strings end inside a length")
        (length,) = struct.unpack_from("<I", data, offset)
        offset += 4
        if offset + length > len(data):
            raise InvalidArgumentError(f"{what}: a byte string runs past the data")
        values.append(data[offset : offset + length])
        offset += length
    return values


def _as_bytes(value: object) -> bytes:
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode("utf-8")
    raise InvalidArgumentError(f"a string tensor holds a {type(value).__name__}")


def _dtype(name: str) -> np.dtype[np.generic]:
    try:
        return DTYPES[name]
    except KeyError:
        raise InvalidArgumentError(
            f"tensor dtype {clip(name)} is not one of {', '.join(DTYPES)}"
        ) from None


def to_bytes(array: npt.ArrayLike, dtype: str) -> bytes:
    """`array` as row-major little-endian `dtype` bytes."""
    return np.ascontiguousarray(array, dtype=_dtype(dtype)).tobytes()


def from_bytes(
    data: bytes, dtype: str, shape: tuple[int, ...] | None = None
) -> npt.NDArray[np.generic]:
    """A read-only view of `data` as `dtype` (native byte order values), reshaped to `shape`.

    The length must be a whole number of elements (and match `shape` when given)."""
    kind = _dtype(dtype)
    if len(data) % kind.itemsize:
        raise InvalidArgumentError(
            f"{len(data)} bytes are not a whole number of {dtype} values ({kind.itemsize} bytes)"
        )
    flat = np.frombuffer(data, dtype=kind)
    if shape is None:
        return flat
    if math.prod(shape) != flat.size:
        raise InvalidArgumentError(
            f"tensor of shape {list(shape)} needs {math.prod(shape) * kind.itemsize} bytes of "
            f"{dtype}; {len(data)} were sent"
        )
    try:
        return flat.reshape(shape)
    except ValueError as exc:  # e.g. a zero-size shape with a dimension numpy cannot hold
        raise InvalidArgumentError(f"tensor shape {list(shape)} is not valid: {exc}") from None


def to_proto(array: npt.ArrayLike, dtype: str | None = None) -> tensor_pb2.Tensor:
    """Encode an array (its own dtype, or `dtype`) as a Tensor message."""
    arr = np.asarray(array)
    name = dtype or dtype_name(arr)
    if name == STRING:
        data = pack_strings([_as_bytes(v) for v in arr.ravel().tolist()])
        return tensor_pb2.Tensor(dtype=STRING, shape=list(arr.shape), data=data)
    return tensor_pb2.Tensor(dtype=name, shape=list(arr.shape), data=to_bytes(arr, name))


def from_proto(tensor: tensor_pb2.Tensor, what: str = "tensor") -> npt.NDArray[np.generic]:
    """Decode a Tensor message; INVALID_ARGUMENT naming `what` when it is malformed."""
    if len(tensor.shape) > MAX_RANK:
        raise InvalidArgumentError(f"{what} has {len(tensor.shape)} dimensions; at most {MAX_RANK}")
    shape = tuple(int(d) for d in tensor.shape)
    try:
        if tensor.dtype == STRING:
            return strings_array(unpack_strings(tensor.data), shape)
        return from_bytes(tensor.data, tensor.dtype, shape)
    except InvalidArgumentError as exc:
        raise InvalidArgumentError(f"{what}: {exc.message}") from None


def strings_array(values: Sequence[bytes], shape: tuple[int, ...]) -> npt.NDArray[np.generic]:
    """Byte strings as an object array of `shape`."""
    if math.prod(shape) != len(values):
        raise InvalidArgumentError(
            f"tensor of shape {list(shape)} needs {math.prod(shape)} strings; {len(values)} "
            "were sent"
        )
    array = np.empty(len(values), dtype=object)
    array[:] = values
    return array.reshape(shape)


def pack(tensors: Mapping[str, npt.ArrayLike]) -> bytes:
    """Named arrays as the bytes of a TensorMap message."""
    return tensor_pb2.TensorMap(
        tensors={name: to_proto(value) for name, value in tensors.items()}
    ).SerializeToString(deterministic=True)


def unpack(data: bytes, what: str = "tensors") -> dict[str, npt.NDArray[np.generic]]:
    """The arrays of a TensorMap message's bytes."""
    message = tensor_pb2.TensorMap()
    try:
        message.ParseFromString(data)
    except Exception as exc:  # protobuf's DecodeError, and ValueError on bad UTF-8 keys
        raise InvalidArgumentError(f"{what} are not a TensorMap message: {exc}") from None
    return {
        name: from_proto(tensor, f"{what}[{clip(name)}]")
        for name, tensor in sorted(message.tensors.items())
    }


#: A tensor file's arrays (`.npy`: one, named ""; `.npz`: by member) may hold at most this.
MAX_FILE_BYTES = 64 * 1024 * 1024
#: Bytes read to find an `.npy` file's header (numpy writes it in 64-byte multiples, short).
NPY_HEADER_BYTES = 4096
#: Arrays one `.npz` archive may hold.
MAX_FILE_ARRAYS = 256


def load_file(
    name: str, data: bytes, max_bytes: int = MAX_FILE_BYTES
) -> dict[str, npt.NDArray[np.generic]]:
    """The arrays of a `.npy` file (one, named "") or a `.npz` archive (by member, without
    `.npy`), of the dtypes the network speaks. Never unpickles; an archive's members are
    measured before they are inflated (a small compressed file can declare gigabytes)."""
    if name.endswith(".npz"):
        try:
            archive = zipfile.ZipFile(io.BytesIO(data))
            members = archive.infolist()
        except (zipfile.BadZipFile, ValueError) as exc:
            raise InvalidArgumentError(f"{clip(name)} is not an .npz archive: {exc}") from None
        if len(members) > MAX_FILE_ARRAYS:
            raise InvalidArgumentError(
                f"{clip(name)} holds {len(members)} arrays; the limit is {MAX_FILE_ARRAYS}"
            )
        declared = sum(m.file_size for m in members)
        if declared > max_bytes:
            raise InvalidArgumentError(
                f"{clip(name)} inflates to {declared} bytes; the limit is {max_bytes}"
            )
        return {
            m.filename.removesuffix(".npy"): _npy(f"{name}:{m.filename}", archive.read(m))
            for m in members
        }
    if len(data) > max_bytes:
        raise InvalidArgumentError(f"{clip(name)} is {len(data)} bytes; the limit is {max_bytes}")
    return {"": _npy(name, data)}


def npz_bytes(arrays: Mapping[str, npt.ArrayLike]) -> bytes:
    """Named arrays as an `.npz` archive (`load_file` reads it back; never pickled)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, array in arrays.items():
            with archive.open(f"{name}.npy", "w") as member:
                np.lib.format.write_array(member, np.asarray(array), allow_pickle=False)
    return buffer.getvalue()


def _npy(name: str, data: bytes) -> npt.NDArray[np.generic]:
    try:
        array = np.load(io.BytesIO(data), allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise InvalidArgumentError(f"{clip(name)} is not an .npy array: {exc}") from None
    if not isinstance(array, np.ndarray) or array.dtype.newbyteorder("<").name not in DTYPES:
        raise InvalidArgumentError(
            f"{clip(name)} holds {getattr(array, 'dtype', type(array))}; supported: "
            + ", ".join(DTYPES)
        )
    if array.ndim > MAX_RANK:
        raise InvalidArgumentError(f"{clip(name)} has {array.ndim} dimensions; at most {MAX_RANK}")
    return np.ascontiguousarray(array, dtype=DTYPES[array.dtype.name])


def npy_rows(
    name: str, size: int, read: Callable[[int, int], bytes], start: int, end: int
) -> npt.NDArray[np.generic]:
    """Rows [start, end) of the `.npy` file `name` of `size` bytes, reading only its header and
    those rows' bytes through `read(offset, end)` (a file of a dataset, fetched by range)."""
    head = read(0, min(size, NPY_HEADER_BYTES))
    buffer = io.BytesIO(head)
    try:
        version = np.lib.format.read_magic(buffer)
        if version not in ((1, 0), (2, 0)):
            return load_file(name, read(0, size))[""][start:end]  # rare: read it whole
        read_header = (
            np.lib.format.read_array_header_1_0
            if version == (1, 0)
            else np.lib.format.read_array_header_2_0
        )
        shape, fortran, dtype = read_header(buffer)
    except (ValueError, OSError, EOFError) as exc:
        raise InvalidArgumentError(f"{clip(name)} is not an .npy array: {exc}") from None
    if fortran or not shape or dtype.hasobject or dtype.newbyteorder("<").name not in DTYPES:
        return load_file(name, read(0, size))[""][start:end]  # rare: read it whole
    row = math.prod(shape[1:]) * dtype.itemsize
    first = buffer.tell() + start * row
    stop = first + (min(end, shape[0]) - start) * row
    if not 0 <= start <= end or stop > size:
        raise InvalidArgumentError(f"{clip(name)}: rows {start}:{end} are not in the file")
    data = read(first, stop)
    rows = np.frombuffer(data, dtype=dtype).reshape((-1, *shape[1:]))
    return np.ascontiguousarray(rows, dtype=DTYPES[dtype.name])
