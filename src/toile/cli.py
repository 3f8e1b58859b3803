"""The ``toile`` command line. Commands only build a config and call the library.

Heavy modules (numpy, tifffile, webdataset, atdata) are imported inside the
commands so that ``toile --help`` starts quickly.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn

import click

from toile import __version__

#: Exit codes, documented in the README.
EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_PARTIAL = 3
EXIT_INTERRUPTED = 130


def _setup_logging(verbose: bool) -> None:
    from toile.logs import configure_logging

    configure_logging(verbose)


def _run(action: Callable[[], Any]) -> Any:
    """Run a library call, turning toile's errors into one-line CLI errors."""
    from toile.errors import ConfigError, ConfigFileError, ToileError

    try:
        return action()
    except KeyboardInterrupt:
        _exit_interrupted("toile: interrupted")
    except ConfigFileError as error:
        raise click.ClickException(str(error)) from None
    except ConfigError as error:
        raise click.UsageError(str(error)) from None
    except ToileError as error:
        from toile.export import ExportInterrupted

        if isinstance(error, ExportInterrupted):
            _exit_interrupted(f"toile: {error}")
        raise click.ClickException(str(error)) from None


def _exit_interrupted(message: str) -> NoReturn:
    click.echo(message, err=True)
    # CPython 3.12 marks a KeyboardInterrupt raised in string-compiled code (a
    # dataclass being created by an import, say) as unhandled even once it is caught,
    # and under `python -m` then ends the process by SIGINT, not with this exit code.
    # Evaluating any string clears the mark.
    exec("None")  # noqa: S102
    sys.exit(EXIT_INTERRUPTED)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version", "-V", prog_name="toile")
def main() -> None:
    """toile: microscopy TIFF recordings to sharded WebDataset archives.

    \b
    Examples:
      toile export test-frames /tmp/demo
      toile export frames /data/mouse_123/TSeries-001/ /output/dataset --verbose
      toile export frames config.yaml /output/dataset
      toile info /output/dataset
      toile verify /output/dataset
    """


@main.group()
def export() -> None:
    """Export recordings (or a synthetic movie) to WebDataset shards.

    \b
    Examples:
      toile export frames /data/TSeries-03152024-001/ /output/dataset --verbose
      toile export frames "/data/*/recording*/" /output/dataset --uint8 --pds
      toile export frames config.yaml /output/dataset --workers 4
      toile export test-frames /tmp/demo
      toile export test-recording /tmp/rec.ome.tif --frames 300
    """


def _given(ctx: click.Context, name: str) -> bool:
    source = ctx.get_parameter_source(name)
    return source is not None and source.name == "COMMANDLINE"


#: Options of both export commands, defined once.
_STEM = click.option(
    "--stem", help="Stem of the shard names (default: the output directory's name)."
)


class _ByteSize(click.ParamType):
    """A byte count: ``38000000``, ``38MB``, ``850M`` (10^6) or ``1GiB`` (2^30)."""

    name = "SIZE"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> int:
        from toile.config import parse_byte_size

        try:
            size = parse_byte_size(value)
        except ValueError as error:
            self.fail(str(error), param, ctx)
        if size < 1:
            self.fail(f"{value!r} is not a positive number of bytes", param, ctx)
        return size


_SHARD_SIZE = click.option(
    "--shard-size",
    type=_ByteSize(),
    help="Maximum size of each shard file: bytes, or with a unit such as 38MB, 850M "
    "(10^6 bytes) or 1GiB (2^30 bytes). Default 850MB.",
)
_PDS = click.option(
    "--pds", is_flag=True, help="Cap shards at 38000000 bytes (the Bluesky PDS blob limit)."
)
_UINT8 = click.option(
    "--uint8",
    "to_uint8",
    is_flag=True,
    help="Map pixels to uint8, one mapping per recording and channel.",
)
_COMPRESSED = click.option(
    "--compressed", is_flag=True, help="Write gzip-compressed shards (.tar.gz)."
)
_FORMAT = click.option(
    "--format",
    "format_",
    type=click.Choice(["npy", "atdata"]),
    default="npy",
    show_default=True,
    help="Sample encoding: npy (.npy + .json) or atdata (toile.schema.Frame as msgpack).",
)
_OVERWRITE = click.option(
    "--overwrite", is_flag=True, help="Replace an existing dataset with the same stem."
)
_PROGRESS = click.option(
    "--progress/--no-progress", default=None, help="Show a progress bar (default: on a terminal)."
)
_VERBOSE = click.option("-v", "--verbose", is_flag=True, help="Print what was found and done.")
_WORKERS = click.option(
    "--workers",
    type=click.IntRange(min=1),
    help=(
        "Worker processes, each writing whole shards (default: chosen from the shard plan); "
        "for --compressed or --uint8 on this machine, the threads of the one pass (default: "
        "the cores)."
    ),
)
_EXECUTOR = click.option(
    "--executor",
    type=click.Choice(["inline", "processes", "dask"]),
    help="Where shards are written: this process, local processes, or a Dask cluster "
    "(default: inline for one worker, processes otherwise).",
)
_SCHEDULER = click.option(
    "--scheduler",
    metavar="ADDRESS",
    help="Address of a running Dask scheduler (tcp://host:8786); implies --executor dask.",
)
_SCHEDULER_FILE = click.option(
    "--scheduler-file",
    type=click.Path(path_type=Path),
    help="Scheduler file of a running Dask cluster (e.g. written by dask-jobqueue's "
    "SLURMRunner); implies --executor dask.",
)


def _movie_options(frames: int) -> Callable[[Callable], Callable]:
    """The size, channels and seed of a synthetic movie (test-frames, test-recording)."""
    options = [
        click.option(
            "--frames",
            type=click.IntRange(min=1),
            default=frames,
            show_default=True,
            help="Frames per recording.",
        ),
        click.option(
            "--height",
            type=click.IntRange(min=8),
            default=256,
            show_default=True,
            help="Frame height in pixels.",
        ),
        click.option(
            "--width",
            type=click.IntRange(min=8),
            default=256,
            show_default=True,
            help="Frame width in pixels.",
        ),
        click.option(
            "--channels",
            type=click.IntRange(1, 2),
            default=1,
            show_default=True,
            help="Channels (2 adds a structural marker).",
        ),
        click.option(
            "--seed",
            type=int,
            default=0,
            show_default=True,
            help="Random seed; the same seed gives the same bytes.",
        ),
    ]

    def apply(command: Callable) -> Callable:
        for option in reversed(options):
            command = option(command)
        return command

    return apply


@export.command("frames")
@click.argument("inputs", nargs=-1, metavar="INPUT...")
@click.argument("output", type=click.Path(path_type=str))
@_STEM
@_SHARD_SIZE
@_PDS
@_UINT8
@click.option(
    "--uint8-range",
    default="max",
    show_default=True,
    help="uint8 mapping: max, minmax, or percentile:LOW,HIGH (e.g. percentile:0.1,99.9); "
    "implies --uint8.",
)
@_COMPRESSED
@_FORMAT
@click.option("--channel", help="Export one channel only, by name or index; frames become (H, W).")
@click.option(
    "--calibrated",
    is_flag=True,
    help="Apply the file's own pixel calibration (ImageJ c0 + c1 * raw): pixels become "
    "calibrated values of their calibrated type (int16 for ImageJ's signed 16-bit images, "
    "else float32).",
)
@click.option(
    "--bin",
    "bin_factor",
    type=click.IntRange(min=1),
    metavar="N",
    help="Bin every frame N x N (block means; edges that are not a multiple of N are "
    "cropped) before encoding; with --uint8, binning comes first.",
)
@_WORKERS
@_EXECUTOR
@_SCHEDULER
@_SCHEDULER_FILE
@click.option(
    "--on-error",
    type=click.Choice(["fail", "skip"]),
    default="fail",
    show_default=True,
    help="On a recording that cannot be read: stop, or skip it and report it.",
)
@_OVERWRITE
@click.option("--resume", is_flag=True, help="Continue an interrupted export into the same output.")
@click.option(
    "--dry-run",
    is_flag=True,
    help="Find, open and check everything, then print the recordings and the shard plan "
    "instead of writing.",
)
@_PROGRESS
@_VERBOSE
@click.pass_context
def export_frames_command(
    ctx: click.Context, inputs: tuple[str, ...], output: str, **options: Any
) -> None:
    """Convert TIFF recordings into WebDataset shards, one sample per frame.

    INPUT is a recording directory (e.g. a Prairie View T-Series), a directory
    of recordings, a TIFF/OME-TIFF file, a quoted glob, or a YAML config file.
    OUTPUT is the directory that receives the shards and the manifest. Both may
    be URLs (s3://bucket/prefix/dataset, "s3://bucket/raw/**/*.ome.tif") with the
    toile[s3] extra.

    \b
    Examples:
      toile export frames /data/mouse_123/recording_001/ /output/dataset --verbose
      toile export frames "/data/experiment_*/*.tif" /output/dataset --stem exp2024
      toile export frames /data/recordings/ /output/dataset --uint8 --pds
      toile export frames config.yaml /output/dataset --workers 4
    """
    if not inputs:
        raise click.UsageError(
            f"Missing argument 'OUTPUT': only one path was given ({output}); give the "
            f"input(s) and then the output directory, e.g. toile export frames {output} "
            "/output/dataset"
        )
    _setup_logging(options["verbose"])
    options["format"] = options.pop("format_")
    dry = options.pop("dry_run")
    cli_options = {
        name: value
        for name, value in options.items()
        if _given(ctx, name if name != "format" else "format_")
    }

    def action() -> Any:
        from toile.config import build_config
        from toile.export import export_frames

        config_path = None
        if len(inputs) == 1 and inputs[0].lower().endswith((".yaml", ".yml")):
            config_path = Path(inputs[0])
        config = build_config([] if config_path else list(inputs), output, cli_options, config_path)
        if dry:
            from toile.export.run import dry_run

            return dry_run(config)
        return export_frames(config, hold_interrupts_after_commit=True)

    result = _run(action)
    if dry:
        click.echo(result.format())
        return
    from toile.export import release_interrupts

    try:
        _report(result)
    finally:
        # The `toile` program exits next: a late Ctrl-C must not turn success into 130.
        release_interrupts(ignore=Path(sys.argv[0]).name in ("toile", "cli.py"))


def _report(result: Any) -> None:
    click.echo(f"toile: wrote {result.manifest_path}: {result.summary()}", err=True)
    if result.skipped:
        from toile.dataset import skipped_reason

        for entry in result.skipped:
            reason = skipped_reason(entry["source"], entry["error"])
            click.echo(f"toile: skipped {entry['source']}: {reason}", err=True)
        sys.exit(EXIT_PARTIAL)


@export.command("test-frames")
@click.argument("output", type=click.Path(path_type=Path))
@_STEM
@_COMPRESSED
@_movie_options(frames=300)
@click.option(
    "--dtype",
    type=click.Choice(["uint16", "uint8", "float32"]),
    default="uint16",
    show_default=True,
    help="Pixel type.",
)
@click.option(
    "--recordings",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Number of synthetic recordings.",
)
@_SHARD_SIZE
@_PDS
@_UINT8
@_FORMAT
@_WORKERS
@_EXECUTOR
@_SCHEDULER
@_SCHEDULER_FILE
@_OVERWRITE
@_PROGRESS
@_VERBOSE
def export_test_frames_command(output: Path, **options: Any) -> None:
    """Write a synthetic astrocyte calcium-imaging dataset, for trying toile without data.

    The shards have the same layout, keys and metadata schema as
    `export frames`: dim textured background, cells whose fluorescence rises
    and decays, shot noise.

    \b
    Examples:
      toile export test-frames /tmp/demo
      toile export test-frames /tmp/test_dataset --compressed --frames 1000 --seed 7
    """
    _setup_logging(options.pop("verbose"))
    options["format"] = options.pop("format_")

    def action() -> Any:
        from toile.export import export_test_frames

        return export_test_frames(output, **options)

    _report(_run(action))


@export.command("test-recording")
@click.argument("output", type=click.Path(path_type=Path))
@click.option(
    "--layout",
    type=click.Choice(["ome-tiff", "prairie-view", "thorimage", "scanimage", "imagej"]),
    default="ome-tiff",
    show_default=True,
    help="ome-tiff: one multi-page file; prairie-view: a T-Series directory, one file per "
    "frame and channel, with its PVScan XML; thorimage: a ThorImageLS folder, one file per "
    "plane, with Experiment.xml; scanimage: a ScanImage BigTIFF file, or an acquisition split "
    "over three files when OUTPUT is a directory; imagej: an ImageJ stack without OME-XML.",
)
@_movie_options(frames=100)
@click.option(
    "--overwrite",
    is_flag=True,
    help="Replace an existing OUTPUT whole (a file, or a directory of files).",
)
def export_test_recording_command(
    output: Path, layout: str, overwrite: bool, **options: Any
) -> None:
    """Write a synthetic recording as a microscope would, to try `export frames` on.

    OUTPUT is a file for ome-tiff and imagej, a directory for prairie-view and thorimage,
    either for scanimage.
    The movie is the same synthetic calcium imaging as `test-frames`.

    \b
    Examples:
      toile export test-recording /tmp/rec.ome.tif
      toile export test-recording /tmp/TSeries-03152024-001 --layout prairie-view --channels 2
      toile export frames /tmp/TSeries-03152024-001 /tmp/dataset --verbose
    """

    def action() -> list[Path]:
        from toile import writers
        from toile.errors import ConfigError
        from toile.synthetic import MovieSpec, generate_frames, movie_metadata

        directory_layouts = ("prairie-view", "thorimage", "scanimage")
        if layout not in directory_layouts and not output.name.lower().endswith((".tif", ".tiff")):
            raise click.BadParameter(
                f"{output}: --layout {layout} writes one file, whose name must end in "
                ".tif or .tiff",
                param_hint="OUTPUT",
            )
        _clear_recording_output(output, overwrite)
        spec = MovieSpec(**options)
        frames = generate_frames(spec)
        names = [c["name"] for c in movie_metadata(spec)["channels"]]
        if layout == "ome-tiff":
            return [writers.write_ome_tiff(output, frames, channels=names)]
        if layout == "prairie-view":
            return writers.write_prairie_series(
                output, frames, n_channels=spec.channels, prefix=output.name
            )
        if layout == "thorimage":
            return writers.write_thorimage(
                output, frames, n_channels=spec.channels, name=output.name
            )
        if layout == "scanimage":
            split = not output.name.lower().endswith((".tif", ".tiff"))
            return writers.write_scanimage(
                output,
                (writers.scanimage_pixels(frame) for frame in frames),
                frames_per_file=-(-spec.frames // 3) if split else None,
                frame_rate=1.0 / spec.time_increment,
                fov_um=spec.pixel_size * spec.width,
            )
        if spec.channels != 1:
            raise ConfigError("--layout imagej writes one channel: use --channels 1")
        return [writers.write_imagej_stack(output, frames)]

    files = _run(action)
    click.echo(f"toile: wrote {len(files)} file(s): {files[0]}", err=True)


def _clear_recording_output(output: Path, overwrite: bool) -> None:
    """Refuse an existing non-empty OUTPUT, or with ``overwrite`` remove it whole.

    A rerun with fewer frames must not leave the old files behind (a later export
    would read them as part of the recording). Only a file, or a directory holding
    files only, is removed; anything else is refused.
    """
    import shutil

    from toile.errors import OutputError

    if not output.exists() or (output.is_dir() and not any(output.iterdir())):
        return
    if not overwrite:
        raise OutputError(f"{output}: exists and is not empty; give --overwrite to replace it")
    if output.is_dir():
        if any(entry.is_dir() for entry in output.iterdir()):
            raise OutputError(
                f"{output}: holds directories, so it is not a recording written by "
                "test-recording; choose another OUTPUT"
            )
        shutil.rmtree(output)
    else:
        output.unlink()


@main.command("info")
@click.argument("dataset", type=click.Path(path_type=str))
@click.option(
    "--json", "as_json", is_flag=True, help="Print one JSON object (stable field names) instead."
)
def info_command(dataset: str, as_json: bool) -> None:
    """Describe a dataset: shards, samples, recordings, metadata fields, skipped inputs.

    DATASET is a dataset directory or its *.manifest.json file, or a URL of
    either (s3://bucket/prefix/dataset, with the toile[s3] extra). The JSON
    fields are documented in toile.dataset.dataset_info.

    \b
    Examples:
      toile info /output/dataset
      toile info /output/dataset/dataset.manifest.json --json
    """

    def action() -> Any:
        from toile.dataset import dataset_info

        return dataset_info(dataset)

    summary = _run(action)
    if as_json:
        import json

        click.echo(json.dumps(summary, indent=2))
    else:
        from toile.dataset import format_info

        click.echo(format_info(summary))


@main.command("verify")
@click.argument("dataset", type=click.Path(path_type=str))
@click.option("-v", "--verbose", is_flag=True, help="Log each shard as it is checked.")
def verify_command(dataset: str, verbose: bool) -> None:
    """Check every shard of a dataset against its manifest and decode every sample.

    DATASET is a dataset directory, its manifest, or a URL of either.

    Prints one line per problem (naming the shard, and the sample key where
    relevant), then a summary line. Exits 0 when all is well, 1 otherwise.

    \b
    Examples:
      toile verify /output/dataset
      toile verify /output/dataset/dataset.manifest.json --verbose
    """
    _setup_logging(verbose)

    def action() -> Any:
        from toile.dataset import verify_dataset

        return verify_dataset(dataset)

    report = _run(action)
    for problem in report.problems:
        click.echo(problem)
    click.echo(f"toile verify: {report.summary()}")
    if not report.ok:
        sys.exit(EXIT_ERROR)


#: Environment variable holding the PDS account's password for `toile publish --pds`.
PDS_PASSWORD_ENV = "TOILE_PDS_PASSWORD"


@main.command("publish")
@click.argument("dataset", type=click.Path(path_type=Path))
@click.option(
    "--index",
    "index_path",
    is_flag=False,
    flag_value="",
    default=None,
    metavar="[PATH]",
    help="Register in an atdata SQLite index (atdata's default, ~/.atdata/index.db, or PATH).",
)
@click.option("--pds", "pds_url", metavar="URL", help="Publish on the ATProto PDS at URL.")
@click.option(
    "--handle", help="Account on the PDS (handle or DID); password from $TOILE_PDS_PASSWORD."
)
@click.option("--name", help="Dataset name (default: the dataset's stem).")
@click.option("--description", help="One-line description of the dataset.")
@click.option(
    "--blob-limit",
    type=click.IntRange(min=1),
    help="The PDS's blob size limit in bytes, when known (checked before any upload).",
)
@click.option("--force", is_flag=True, help="Publish beyond atdata's 1 GB limit per dataset.")
@click.option("--dry-run", is_flag=True, help="Run the checks and print what would be published.")
@_VERBOSE
def publish_command(
    dataset: Path,
    index_path: str | None,
    pds_url: str | None,
    handle: str | None,
    name: str | None,
    description: str | None,
    blob_limit: int | None,
    force: bool,
    dry_run: bool,
    verbose: bool,
) -> None:
    """Share a --format atdata dataset: in an atdata index, or on an ATProto PDS.

    Every shard is checked against the manifest first; the dataset's files are not
    changed. Where it was published is kept in {stem}.published.json beside the manifest.

    \b
    Examples:
      toile publish /output/dataset --index
      toile publish /output/dataset --index /lab/atdata-index.db --name mouse-123
      TOILE_PDS_PASSWORD=... toile publish /output/dataset --pds https://pds.example.org --handle alice.example.org
      toile publish /output/dataset --pds https://pds.example.org --handle alice.example.org --dry-run
    """
    import os

    _setup_logging(verbose)
    if (index_path is None) == (pds_url is None):
        raise click.UsageError("give one of --index [PATH] or --pds URL")
    if pds_url is not None and not handle:
        raise click.UsageError("--pds needs --handle")
    if index_path is not None and (handle or blob_limit or force):
        raise click.UsageError("--handle, --blob-limit and --force go with --pds")

    if index_path is not None:

        def index_action() -> Any:
            from toile.publish import publish_index

            return publish_index(
                dataset, index_path or None, name=name, description=description, dry_run=dry_run
            )

        result = _run(index_action)
        click.echo(f"toile publish: {result.summary()}", err=True)
        return

    assert pds_url is not None and handle is not None
    password = os.environ.get(PDS_PASSWORD_ENV) or None
    if password is None and not dry_run:
        if not sys.stdin.isatty():
            raise click.UsageError(f"set {PDS_PASSWORD_ENV} (no terminal to ask for the password)")
        password = click.prompt(f"Password for {handle}", hide_input=True)

    def on_blob(upload: Any, position: int, count: int) -> None:
        done = (
            f"{upload.size:,} bytes in {upload.seconds:.2f} s ({upload.rate:.1f} MB/s)"
            if upload.uploaded
            else "already on the server"
        )
        click.echo(f"toile publish: [{position}/{count}] {upload.name}: {done}", err=True)

    def pds_action() -> Any:
        from toile.publish import publish_pds

        return publish_pds(
            dataset,
            pds_url,
            handle,
            password,
            name=name,
            description=description,
            dry_run=dry_run,
            blob_limit=blob_limit,
            force=force,
            on_blob=on_blob,
        )

    result = _run(pds_action)
    if dry_run:
        for upload in result.shards:
            click.echo(
                f"toile publish: would upload {upload.name} ({upload.size:,} bytes)", err=True
            )
    click.echo(f"toile publish: {result.summary()}", err=True)


@main.command("preview")
@click.argument("targets", nargs=-1, required=True, metavar="DATASET|INPUT...")
@click.option(
    "-o",
    "--output",
    type=click.Path(path_type=Path),
    default=Path("preview.png"),
    show_default=True,
    help="The PNG file to write.",
)
@click.option(
    "--recording",
    "recordings",
    type=click.IntRange(min=0),
    multiple=True,
    help="Show this recording (its recording_index; repeatable). Default: the first few.",
)
@click.option(
    "--max-recordings",
    type=click.IntRange(min=1),
    default=4,
    show_default=True,
    help="Recordings shown when --recording is not given.",
)
@click.option(
    "--frames",
    "max_frames",
    type=click.IntRange(min=1),
    default=200,
    show_default=True,
    help="Frames read per recording at most, evenly spaced, for projections and traces.",
)
@_VERBOSE
def preview_command(
    targets: tuple[str, ...],
    output: Path,
    recordings: tuple[int, ...],
    max_recordings: int,
    max_frames: int,
    verbose: bool,
) -> None:
    """Draw one picture of a dataset, or of recordings before export.

    For each recording: the first frame, mean and max projections with robust
    contrast (0.5-99.5 percentile), and the mean intensity over time (F, and
    dF/F0 with F0 the 10th percentile of F), titled with its shape, dtype,
    frame rate and pixel size. DATASET is a dataset directory or manifest;
    anything else is read as `export frames` reads its INPUTs.

    \b
    Examples:
      toile preview /output/dataset
      toile preview /output/dataset -o mouse3.png --recording 2 --frames 500
      toile preview /data/TSeries-03152024-001/ -o before.png
    """
    _setup_logging(verbose)

    def action() -> Path:
        from toile.preview import preview

        return preview(
            targets, output, list(recordings) or None, max_frames=max_frames, limit=max_recordings
        )

    written = _run(action)
    click.echo(f"toile: wrote {written}", err=True)


if __name__ == "__main__":  # pragma: no cover
    main()
