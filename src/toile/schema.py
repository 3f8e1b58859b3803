"""Sample types of a toile dataset, as atdata ``PackableSample`` classes.

Downstream code reads a dataset written with ``--format atdata`` as
``atdata.Dataset[toile.schema.Frame](url)`` and views it through the lenses
defined here, e.g. ``dataset.as_type(toile.schema.ImageSample)``.

Importing this module imports atdata (seconds: it pulls in pandas and s3fs),
so toile's own read and write paths never do: they use the plain
:class:`toile.samples.Frame` and its byte-identical codec. That plain class is
registered here as a virtual subclass of :class:`Frame`, so
``isinstance(frame, toile.schema.Frame)`` holds for frames read with
``toile.open``.

This module deliberately does not use ``from __future__ import annotations``:
atdata inspects the field annotations at run time to find ``NDArray`` fields.
"""

import atdata
from numpy.typing import NDArray

from toile import samples

#: Metadata keys read by the ``Frame -> SliceRecordingFrame`` lens.
MOUSE_ID_KEY = "mouse_id"
SLICE_ID_KEY = "slice_id"


@atdata.packable
class Movie:
    """A whole recording in memory: ``frames`` is (T, ...) with per-frame metadata.

    For interactive use and small tests only; export never builds one.
    """

    frames: NDArray
    metadata: dict | None = None
    frame_metadata: list[dict] | None = None


@atdata.packable
class Frame:
    """One frame: ``image`` is (H, W) or (C, H, W); ``metadata`` combines movie and frame fields."""

    image: NDArray
    metadata: dict | None = None


Frame.register(samples.Frame)


@atdata.packable
class SliceRecordingFrame:
    """A frame of a slice recording identified by its mouse and slice."""

    data: NDArray
    mouse_id: int | str
    slice_id: int | str


@atdata.packable
class ImageSample:
    """The bare image, for models that need nothing else."""

    data: NDArray


@atdata.lens
def slice_recording_to_image(source: SliceRecordingFrame) -> ImageSample:
    return ImageSample(data=source.data)


@slice_recording_to_image.putter
def slice_recording_to_image_put(
    view: ImageSample, source: SliceRecordingFrame
) -> SliceRecordingFrame:
    return SliceRecordingFrame(data=view.data, mouse_id=source.mouse_id, slice_id=source.slice_id)


@atdata.lens
def frame_to_image(source: Frame) -> ImageSample:
    return ImageSample(data=source.image)


@frame_to_image.putter
def frame_to_image_put(view: ImageSample, source: Frame) -> Frame:
    return Frame(image=view.data, metadata=source.metadata)


def _metadata_id(frame: Frame, key: str) -> int | str:
    metadata = frame.metadata or {}
    if metadata.get(key) is None:
        raise KeyError(
            f"frame metadata has no {key!r}: set it with a filename_spec template "
            f"that names {{{key}}} (fields present: {sorted(metadata)})"
        )
    return metadata[key]


@atdata.lens
def frame_to_slice_recording(source: Frame) -> SliceRecordingFrame:
    return SliceRecordingFrame(
        data=source.image,
        mouse_id=_metadata_id(source, MOUSE_ID_KEY),
        slice_id=_metadata_id(source, SLICE_ID_KEY),
    )


@frame_to_slice_recording.putter
def frame_to_slice_recording_put(view: SliceRecordingFrame, source: Frame) -> Frame:
    metadata = dict(source.metadata or {})
    metadata[MOUSE_ID_KEY] = view.mouse_id
    metadata[SLICE_ID_KEY] = view.slice_id
    return Frame(image=view.data, metadata=metadata)


__all__ = [
    "Frame",
    "ImageSample",
    "Movie",
    "SliceRecordingFrame",
    "frame_to_image",
    "frame_to_slice_recording",
    "slice_recording_to_image",
]
