"""The metadata keys every format writes: one source of truth for their names.

Recording-level fields go to the top level of every frame's JSON (``Recording.metadata``);
per-frame fields under ``frame`` (``Recording.frame_metadata``). A field the file does
not state is absent, never null-filled nor defaulted. A quantity whose unit cannot be
converted keeps its value and its unit (``position_x`` with ``position_unit``).

=========================  =========================================================
key                        value
=========================  =========================================================
``source``                 str: path of the recording's main file
``_source_filename``       str: its base name
``series``                 int: series (OME Image, position) within the main file
``format``                 str: one of :data:`FORMAT_NAMES`
``files``                  int: number of files holding the recording's planes
``uuid``                   str: OME UUID of the main file
``date_acquired``          str: ISO 8601 date and time the acquisition started
``image_name``             str: the recording's name as the vendor gives it
``scale_x/_y/_z``          float: pixel size and z step, in ``scale_unit`` (``"um"``)
``time_increment``         float: time between frames, in ``t_unit`` (``"s"``)
``size_x/y/z/c/t``         int: sizes of the recording
``n_frames``               int: number of frames (``size_t * size_z``)
``dtype``                  str: numpy name of the pixel type
``channels``               list of dicts: ``name``, wavelengths (nm), ``fluor``, ...
``frame_rate_hz``          float
``zoom``                   float
``objective``              str
``objective_na``           float
``objective_magnification``  float
``laser_power``            list of ``{"laser": str | None, "value": float, "unit": str}``
``laser_wavelength_nm``    float
``pmt_gain``               list of ``{"channel": str, "value": float}`` (+ ``unit``)
``dwell_time_us``          float
``bit_depth``              int
``lines_per_frame``        int
``pixels_per_line``        int
``calibration``            dict: ImageJ's linear calibration (``function``, ``coefficients``,
                           ``unit``, ``applied``)
=========================  =========================================================

Per frame: ``index``, ``t_index``, ``z_index``, ``c_index`` (one channel selected),
``t`` (s since the start), ``position_x/y/z`` (µm, or in ``position_unit`` when they
cannot be converted), ``exposure_s``, ``uuid`` (of the file(s) holding the frame's
planes, multi-file recordings only) and vendor per-frame values that vary
(``timestamp_s``, ``frame_number``, ...).
"""

from __future__ import annotations

# -- recording level ----------------------------------------------------------------
SOURCE = "source"
SOURCE_FILENAME = "_source_filename"
SERIES = "series"
FORMAT = "format"
FILES = "files"
UUID = "uuid"
DATE_ACQUIRED = "date_acquired"
IMAGE_NAME = "image_name"
SCALE_X = "scale_x"
SCALE_Y = "scale_y"
SCALE_Z = "scale_z"
SCALE_UNIT = "scale_unit"
TIME_INCREMENT = "time_increment"
T_UNIT = "t_unit"
SIZE_X = "size_x"
SIZE_Y = "size_y"
SIZE_Z = "size_z"
SIZE_C = "size_c"
SIZE_T = "size_t"
N_FRAMES = "n_frames"
DTYPE = "dtype"
CHANNELS = "channels"
FRAME_RATE_HZ = "frame_rate_hz"
ZOOM = "zoom"
OBJECTIVE = "objective"
OBJECTIVE_NA = "objective_na"
OBJECTIVE_MAGNIFICATION = "objective_magnification"
LASER_POWER = "laser_power"
LASER_WAVELENGTH_NM = "laser_wavelength_nm"
PMT_GAIN = "pmt_gain"
DWELL_TIME_US = "dwell_time_us"
BIT_DEPTH = "bit_depth"
LINES_PER_FRAME = "lines_per_frame"
PIXELS_PER_LINE = "pixels_per_line"
CALIBRATION = "calibration"

#: Units of the scale and time fields.
UM = "um"
SECONDS = "s"

# -- per frame ----------------------------------------------------------------------
INDEX = "index"
T_INDEX = "t_index"
Z_INDEX = "z_index"
C_INDEX = "c_index"
T = "t"
POSITION_X = "position_x"
POSITION_Y = "position_y"
POSITION_Z = "position_z"
POSITION_UNIT = "position_unit"
EXPOSURE_S = "exposure_s"
TIMESTAMP_S = "timestamp_s"
FRAME_NUMBER = "frame_number"

#: OME's unit of a position stated without a unit attribute.
REFERENCE_FRAME = "reference frame"

# -- format names (the ``format`` field, and the registry names) ----------------------
FORMAT_SCANIMAGE = "scanimage"
FORMAT_PRAIRIE = "prairie-view"
FORMAT_THORIMAGE = "thorimage"
FORMAT_MICROMANAGER = "micro-manager"
FORMAT_OME_TIFF = "ome-tiff"
FORMAT_IMAGEJ = "imagej"
FORMAT_TIFF = "tiff"
FORMAT_SYNTHETIC = "synthetic"
FORMAT_NAMES = (
    FORMAT_SCANIMAGE,
    FORMAT_PRAIRIE,
    FORMAT_THORIMAGE,
    FORMAT_MICROMANAGER,
    FORMAT_OME_TIFF,
    FORMAT_IMAGEJ,
    FORMAT_TIFF,
    FORMAT_SYNTHETIC,
)


def finite_float(text: str | None) -> float | None:
    """A vendor's number as written (``"0.928"``), or None when absent, not a number or
    not finite: such a field is left out rather than guessed."""
    if text is None:
        return None
    try:
        value = float(text)
    except ValueError:
        return None
    return value if value == value and abs(value) != float("inf") else None
