"""`--bin N`: N x N block means, cropping, rounding, metadata, and a binned recording."""

from __future__ import annotations

import numpy as np
import pytest

from toile.binning import (
    BinnedRecording,
    bin_frame,
    binned_metadata,
    binned_shape,
    check_factor,
    maybe_binned,
)


def _reference(image: np.ndarray, n: int) -> np.ndarray:
    """Block means by reshaping, in float64."""
    *lead, h, w = image.shape
    h, w = h // n * n, w // n * n
    cropped = image[..., :h, :w].astype(np.float64)
    blocks = cropped.reshape(*lead, h // n, n, w // n, n)
    return blocks.mean(axis=(-3, -1))


@pytest.mark.parametrize("shape", [(10, 7), (2, 9, 12)])
@pytest.mark.parametrize("n", [1, 2, 3])
def test_integer_frames_are_block_means_rounded_in_their_dtype(shape, n):
    rng = np.random.default_rng(n)
    image = rng.integers(0, 65535, size=shape, dtype=np.uint16)
    binned = bin_frame(image, n)
    expected = np.rint(_reference(image, n)).astype(np.uint16)
    assert binned.dtype == np.uint16 and binned.shape == binned_shape(shape, n)
    np.testing.assert_array_equal(binned, expected)
    assert binned.flags.c_contiguous and binned is not image


def test_rounding_is_to_nearest_and_float_frames_keep_their_dtype():
    image = np.array([[1, 2], [2, 2]], dtype=np.uint8)  # mean 1.75 -> 2
    assert bin_frame(image, 2).tolist() == [[2]]
    assert bin_frame(np.array([[0, 1], [0, 1]], dtype=np.int16), 2).tolist() == [[0]]  # 0.5 -> 0
    floats = np.arange(16, dtype=np.float32).reshape(4, 4)
    binned = bin_frame(floats, 2)
    assert binned.dtype == np.float32
    np.testing.assert_allclose(binned, _reference(floats, 2), rtol=1e-7)


def test_metadata_scales_the_pixel_size_and_records_the_crop():
    metadata = {"scale_x": 0.5, "scale_y": 0.25, "size_x": 7, "size_y": 10, "dtype": "uint16"}
    binned = binned_metadata(metadata, (10, 7), 3)
    assert binned["scale_x"] == 1.5 and binned["scale_y"] == 0.75
    assert binned["size_x"] == 2 and binned["size_y"] == 3
    assert binned["binning"] == {
        "factor": 3,
        "method": "mean",
        "source_size_x": 7,
        "source_size_y": 10,
        "cropped_x": 1,
        "cropped_y": 1,
    }
    exact = binned_metadata({"scale_x": 1.0}, (8, 8), 2)
    assert "cropped_x" not in exact["binning"] and "scale_y" not in exact
    assert metadata["scale_x"] == 0.5  # the input is not changed


def test_bad_factors_and_too_small_frames():
    with pytest.raises(ValueError, match="bin must be an integer of at least 1, got 0"):
        check_factor(0)
    with pytest.raises(ValueError, match="at least 1"):
        check_factor(True)
    with pytest.raises(ValueError, match="a 4 x 3 frame is smaller than the 4 x 4 bin"):
        binned_shape((4, 3), 4)


def test_a_binned_recording_reads_binned_frames(tmp_path):
    from toile.formats import discover, open_source
    from toile.synthetic import MovieSpec, generate_frames
    from toile.writers import write_ome_tiff

    frames = list(generate_frames(MovieSpec(frames=4, height=17, width=12, channels=2, seed=2)))
    path = write_ome_tiff(tmp_path / "rec.ome.tif", frames, channels=["a", "b"])
    [source] = discover([str(path)], tmp_path)
    with open_source(source) as recording:
        assert maybe_binned(recording, 1) is recording
        binned = BinnedRecording(recording, 4)
        assert binned.frame_shape == (2, 4, 3)
        assert binned.metadata["binning"]["cropped_y"] == 1
        assert binned.metadata["binning"]["cropped_x"] == 0
        out = np.empty(binned.frame_shape, binned.dtype)
        for index, frame, frame_metadata in binned:
            np.testing.assert_array_equal(frame, bin_frame(frames[index], 4))
            assert frame_metadata == recording.frame_metadata(index)
        assert binned.read_frame(3, out) is out
        np.testing.assert_array_equal(out, bin_frame(frames[3], 4))
        with pytest.raises(ValueError, match="out must be"):
            binned.read_frame(0, np.empty((4, 3), binned.dtype))


# --------------------------------------------------------------------------------------
# --bin in an export


def _recording(tmp_path, height=17, width=12, frames=5):
    from toile.synthetic import MovieSpec, generate_frames
    from toile.writers import write_ome_tiff

    movie = list(generate_frames(MovieSpec(frames=frames, height=height, width=width, seed=4)))
    return write_ome_tiff(tmp_path / "rec.ome.tif", movie), movie


def test_export_with_bin_writes_binned_frames_and_says_so(tmp_path):
    from click.testing import CliRunner

    import toile
    from toile.cli import main

    path, movie = _recording(tmp_path)
    out = tmp_path / "ds"
    result = CliRunner().invoke(
        main, ["export", "frames", str(path), str(out), "--bin", "2", "--no-progress"]
    )
    assert result.exit_code == 0, result.output
    dataset = toile.open(out)
    [recording] = dataset.manifest.recordings
    assert recording["frame_shape"] == [8, 6]
    assert dataset.manifest.raw["options"]["bin"] == 2
    frames = list(dataset)
    for frame, source in zip(frames, movie, strict=True):
        np.testing.assert_array_equal(frame.image, bin_frame(source, 2))
    metadata = frames[0].metadata
    assert metadata["binning"] == {
        "factor": 2,
        "method": "mean",
        "source_size_x": 12,
        "source_size_y": 17,
        "cropped_x": 0,
        "cropped_y": 1,
    }
    assert metadata["size_x"] == 6 and metadata["size_y"] == 8


def test_with_uint8_binning_comes_first(tmp_path):
    from toile.config import make_config
    from toile.export import export_frames

    path, movie = _recording(tmp_path)
    out = tmp_path / "ds"
    export_frames(
        make_config([str(path)], out, bin_factor=3, to_uint8=True, workers=1, progress=False)
    )
    import toile

    frames = list(toile.open(out))
    binned = np.stack([bin_frame(f, 3) for f in movie])
    high = int(binned.max())
    assert frames[0].metadata["normalization"]["high"] == [high]
    expected = np.floor(255 * binned.astype(np.float64) / high).astype(np.uint8)
    np.testing.assert_array_equal(np.stack([f.image for f in frames]), expected)


def test_bin_larger_than_the_frame_is_an_input_error(tmp_path):
    from click.testing import CliRunner

    from toile.cli import main

    path, _ = _recording(tmp_path, height=8, width=8)
    result = CliRunner().invoke(
        main, ["export", "frames", str(path), str(tmp_path / "ds"), "--bin", "9"]
    )
    assert result.exit_code == 1
    assert f"Error: {path}: cannot bin by 9: a 8 x 8 frame is smaller" in result.output
    assert not (tmp_path / "ds").exists()


def test_bin_in_yaml_and_make_config(tmp_path):
    from toile.config import build_config, make_config
    from toile.errors import ConfigError, ConfigFileError

    config_file = tmp_path / "c.yaml"
    config_file.write_text("inputs: [a.tif]\nbin: 2\n")
    assert build_config([], tmp_path / "o", {}, config_file).bin_factor == 2
    assert build_config([], tmp_path / "o", {"bin_factor": 4}, config_file).bin_factor == 4
    config_file.write_text("inputs: [a.tif]\nbin: 0\n")
    with pytest.raises(ConfigFileError, match="line 2: bin: must be at least 1, got 0"):
        build_config([], tmp_path / "o", {}, config_file)
    config_file.write_text("inputs: [a.tif]\nbin: two\n")
    with pytest.raises(ConfigFileError, match="line 2: bin: expected an integer"):
        build_config([], tmp_path / "o", {}, config_file)
    assert make_config(["a.tif"], tmp_path / "o", bin_factor=1).bin_factor is None
    with pytest.raises(ConfigError, match="bin must be an integer of at least 1"):
        make_config(["a.tif"], tmp_path / "o", bin_factor=-2)
