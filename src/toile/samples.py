"""Frame samples without atdata: the plain :class:`Frame` record and its msgpack codec.

``--format atdata`` writes each frame as a packed ``toile.schema.Frame``:
a msgpack map ``{"image": <array bytes>, "metadata": <dict>}`` where the
array bytes are atdata's compact layout (dtype string length, dtype string,
ndim, shape as little-endian int64, then the C-ordered pixels). Importing
atdata costs seconds (it pulls in pandas, s3fs and aiobotocore), so toile's
read and write paths pack and unpack that layout here with ``msgpack`` and
numpy alone; the bytes are identical to ``toile.schema.Frame(...).packed``
and stay readable with ``atdata.Dataset[toile.schema.Frame]``.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Any

import numpy as np

#: atdata's legacy array layout is a plain ``.npy`` file; the reader accepts both.
_NPY_MAGIC = b"\x93NUMPY"


@dataclass(slots=True)
class Frame:
    """One frame as read back: ``image`` is (H, W) or (C, H, W); ``metadata`` the combined dict.

    The plain counterpart of the atdata sample type ``toile.schema.Frame``, with the same
    fields; ``isinstance(frame, toile.schema.Frame)`` holds once ``toile.schema`` is imported.
    """

    image: np.ndarray
    metadata: dict | None = None

    @property
    def packed(self) -> bytes:
        """The msgpack bytes of this frame, as ``toile.schema.Frame(...).packed`` gives them."""
        return b"".join(bytes(part) for part in pack_frame(self.image, self.metadata))

    @classmethod
    def from_bytes(cls, data: bytes) -> Frame:
        image, metadata = unpack_frame(data)
        return cls(image=image, metadata=metadata)


def array_header(shape: tuple[int, ...], dtype: np.dtype) -> bytes:
    """atdata's header of an array: dtype string, ndim and shape."""
    dtype_str = dtype.str.encode()
    return (
        struct.pack("<B", len(dtype_str))
        + dtype_str
        + struct.pack(f"<B{len(shape)}q", len(shape), *shape)
    )


def _bin_header(size: int) -> bytes:
    if size < 1 << 8:
        return b"\xc4" + struct.pack(">B", size)
    if size < 1 << 16:
        return b"\xc5" + struct.pack(">H", size)
    if size < 1 << 32:
        return b"\xc6" + struct.pack(">I", size)
    raise ValueError(f"a frame of {size:,} bytes is larger than msgpack's 4 GiB limit")


def pack_frame(image: np.ndarray, metadata: dict | None) -> list[bytes | memoryview]:
    """The packed ``Frame`` as [prefix, pixels, suffix] buffers, without copying the pixels.

    Byte-identical to ``msgpack.packb({"image": atdata_array_bytes, "metadata": metadata})``,
    which is what atdata writes for a ``toile.schema.Frame``.
    """
    import msgpack

    image = np.ascontiguousarray(image)
    if image.dtype == object:
        raise ValueError("cannot pack an object-dtype image")
    header = array_header(tuple(image.shape), image.dtype)
    size = len(header) + image.nbytes
    # fixmap of 2 entries, fixstr "image", bin of the array bytes, fixstr "metadata", value
    prefix = b"\x82\xa5image" + _bin_header(size) + header
    suffix = b"\xa8metadata" + msgpack.packb(metadata)
    return [prefix, memoryview(image).cast("B"), suffix]


def array_from_bytes(data: bytes) -> np.ndarray:
    """An array from atdata's compact layout (or a legacy ``.npy`` buffer), writable."""
    if data[:6] == _NPY_MAGIC:
        import io

        return np.load(io.BytesIO(data), allow_pickle=False)
    if len(data) < 2:
        raise ValueError(f"array buffer too short ({len(data)} bytes)")
    dlen = data[0]
    dtype = np.dtype(data[1 : 1 + dlen].decode())
    ndim = data[1 + dlen]
    offset = 2 + dlen
    shape = struct.unpack_from(f"<{ndim}q", data, offset)
    offset += ndim * 8
    expected = offset + int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if len(data) != expected:
        raise ValueError(
            f"array buffer holds {len(data)} bytes, its header "
            f"({'x'.join(map(str, shape))} {dtype}) needs {expected}"
        )
    return np.frombuffer(data, dtype=dtype, offset=offset).reshape(shape).copy()


def unpack_frame(data: bytes) -> tuple[np.ndarray, dict | None]:
    """(image, metadata) of a packed ``Frame``; ValueError when it is not one."""
    import msgpack

    try:
        fields: Any = msgpack.unpackb(data)
    except Exception as error:  # msgpack raises several unrelated types
        raise ValueError(f"not msgpack data: {error}") from error
    if not isinstance(fields, dict) or not isinstance(fields.get("image"), bytes):
        raise ValueError("not a packed toile.schema.Frame (no 'image' bytes)")
    metadata = fields.get("metadata")
    if metadata is not None and not isinstance(metadata, dict):
        raise ValueError("not a packed toile.schema.Frame ('metadata' is not a map)")
    return array_from_bytes(fields["image"]), metadata
