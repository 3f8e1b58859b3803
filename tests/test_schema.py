"""Schema types round-trip through atdata, and the lenses work both ways."""

from __future__ import annotations

import numpy as np
import pytest

from toile.schema import (
    Frame,
    ImageSample,
    Movie,
    SliceRecordingFrame,
    frame_to_image,
    frame_to_slice_recording,
    slice_recording_to_image,
)


def test_frame_round_trip_keeps_pixels_dtype_and_metadata():
    image = np.arange(12, dtype=np.uint16).reshape(3, 4)
    frame = Frame(image=image, metadata={"source": "a.tif", "frame": {"index": 3, "t": 1.5}})
    back = Frame.from_bytes(frame.packed)
    np.testing.assert_array_equal(back.image, image)
    assert back.image.dtype == np.uint16
    assert back.metadata == {"source": "a.tif", "frame": {"index": 3, "t": 1.5}}


def test_movie_round_trip():
    frames = np.random.default_rng(0).random((5, 4, 3)).astype(np.float32)
    movie = Movie(frames=frames, metadata={"n": 5}, frame_metadata=[{"index": i} for i in range(5)])
    back = Movie.from_bytes(movie.packed)
    np.testing.assert_array_equal(back.frames, frames)
    assert back.frame_metadata[4] == {"index": 4}


def test_image_and_slice_round_trip():
    data = np.ones((2, 2), dtype=np.int16)
    back = SliceRecordingFrame.from_bytes(
        SliceRecordingFrame(data=data, mouse_id=7, slice_id="s2").packed
    )
    assert (back.mouse_id, back.slice_id) == (7, "s2")
    np.testing.assert_array_equal(ImageSample.from_bytes(ImageSample(data=data).packed).data, data)


def test_slice_recording_lens_get_and_put_keep_ids():
    source = SliceRecordingFrame(data=np.zeros((2, 2)), mouse_id=3, slice_id="b")
    view = slice_recording_to_image(source)
    assert isinstance(view, ImageSample)
    updated = slice_recording_to_image.put(ImageSample(data=np.ones((2, 2))), source)
    assert (updated.mouse_id, updated.slice_id) == (3, "b")
    np.testing.assert_array_equal(updated.data, np.ones((2, 2)))


def test_frame_lenses():
    frame = Frame(
        image=np.full((2, 3), 5, dtype=np.uint8), metadata={"mouse_id": 12, "slice_id": 4}
    )
    np.testing.assert_array_equal(frame_to_image(frame).data, frame.image)
    slice_frame = frame_to_slice_recording(frame)
    assert (slice_frame.mouse_id, slice_frame.slice_id) == (12, 4)
    put = frame_to_slice_recording.put(
        SliceRecordingFrame(data=frame.image, mouse_id=13, slice_id=5), frame
    )
    assert put.metadata["mouse_id"] == 13
    image_put = frame_to_image.put(ImageSample(data=np.zeros((2, 3))), frame)
    assert image_put.metadata == frame.metadata


def test_frame_to_slice_recording_names_missing_key():
    frame = Frame(image=np.zeros((2, 2)), metadata={"mouse_id": 1})
    with pytest.raises(KeyError, match="slice_id"):
        frame_to_slice_recording(frame)
