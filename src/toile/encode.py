"""Turn one frame and its metadata into the members of a WebDataset sample.

Two encodings:

* ``npy`` (default): ``<key>.npy`` (standard ``.npy`` bytes) and ``<key>.json``
  (the metadata dict), decodable by stock ``webdataset.WebDataset(url).decode()``.
* ``atdata``: ``<key>.msgpack``, a packed :class:`toile.schema.Frame`, readable
  with ``atdata.Dataset[toile.schema.Frame](url)``.

Sample keys are made by :mod:`toile.names` (re-exported here).
"""

from __future__ import annotations

import io
import json
from functools import lru_cache

import numpy as np

from toile.names import KEY_PREFIX, MIN_FRAME_DIGITS, frame_digits, sample_key

__all__ = ["KEY_PREFIX", "MIN_FRAME_DIGITS", "frame_digits", "sample_key"]

#: Metadata key holding the per-frame fields.
FRAME_KEY = "frame"
#: Metadata key holding the uint8 mapping.
NORMALIZATION_KEY = "normalization"

#: One tar member: its name and the byte buffers that make up its content, in order.
Member = tuple[str, list[bytes | memoryview]]


@lru_cache(maxsize=64)
def npy_header(shape: tuple[int, ...], dtype_str: str) -> bytes:
    """The ``.npy`` (version 1.0) header for a C-ordered array of this shape and dtype."""
    buffer = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        buffer, {"descr": dtype_str, "fortran_order": False, "shape": shape}
    )
    return buffer.getvalue()


def npy_bytes(image: np.ndarray) -> list[bytes | memoryview]:
    """``.npy`` file content as [header, data] without copying the pixels."""
    image = np.ascontiguousarray(image)
    header = npy_header(tuple(image.shape), np.lib.format.dtype_to_descr(image.dtype))
    return [header, memoryview(image).cast("B")]


def _json_default(value: object) -> object:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"metadata value of type {type(value).__name__} is not JSON-serialisable")


def dump_json(value: object) -> str:
    """Canonical JSON for metadata: sorted keys, compact, UTF-8 text."""
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=_json_default
    )


class SampleEncoder:
    """Encodes the frames of one recording; the movie metadata is serialised once."""

    def __init__(
        self, encoding: str, movie_metadata: dict, normalization: dict | None = None
    ) -> None:
        if encoding not in ("npy", "atdata"):
            raise ValueError(f"unknown encoding {encoding!r}")
        self.encoding = encoding
        movie = dict(movie_metadata)
        movie.pop(FRAME_KEY, None)
        if normalization is not None:
            movie[NORMALIZATION_KEY] = normalization
        self._movie = movie
        # Sorted movie JSON without its closing brace; the frame dict is appended last.
        body = dump_json(movie)[:-1]
        self._json_prefix = body + ("," if len(body) > 1 else "") + f'"{FRAME_KEY}":'

    def metadata(self, frame_metadata: dict) -> dict:
        """The combined metadata dict of one frame."""
        return {**self._movie, FRAME_KEY: frame_metadata}

    def metadata_json(self, frame_metadata: dict) -> bytes:
        return (self._json_prefix + dump_json(frame_metadata) + "}").encode("utf-8")

    def members(self, key: str, image: np.ndarray, frame_metadata: dict) -> list[Member]:
        """The (name, bytes) members of one sample, in the order they are written."""
        if self.encoding == "npy":
            return [
                (f"{key}.npy", npy_bytes(image)),
                (f"{key}.json", [self.metadata_json(frame_metadata)]),
            ]
        from toile.samples import pack_frame  # the bytes of toile.schema.Frame, without atdata

        return [(f"{key}.msgpack", pack_frame(image, self.metadata(frame_metadata)))]
