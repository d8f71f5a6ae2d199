"""Upscaling videos with PyAV (FFmpeg's libraries): decode, upscale every frame, encode.

Three threads overlap: the decoder (demux, decode, YUV -> RGB), the model (tiled upscale, and the
``outscale`` resize) and the writer (RGB -> YUV, encode, mux), joined by bounded queues, so memory
stays bounded whatever the length. torch, LiteRT, ONNX Runtime and FFmpeg release the GIL.

What is not the picture is kept: audio and subtitle streams are copied packet for packet (not
re-encoded) where the output container holds their codec; every frame keeps its timestamp (variable
frame rates stay variable), the frame rate, the sample aspect ratio, the colour tags (matrix, range,
primaries, transfer) and the display matrix (rotation metadata is carried over, not applied: the
frames are upscaled as stored and players rotate them as they rotated the source). Limited-range
YUV is converted with its range and matrix and written back limited (full stays full), in the
source's pixel format where the encoder takes it. The output is written to a temporary file next to
the destination and renamed at the end: an error or Ctrl-C leaves nothing half-written.
"""
from __future__ import annotations

import queue
import struct
import threading
import time
import warnings
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import numpy as np

VIDEO_EXTENSIONS = (".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi", ".ts", ".mts", ".m2ts", ".flv", ".mpg",
                    ".mpeg", ".wmv", ".ogv", ".3gp")
#: --codec auto: the first of these this FFmpeg build has and the output container holds
ENCODER_PREFERENCE = ("libx264", "libopenh264", "libx265", "libvpx-vp9", "libsvtav1", "libvpx", "mpeg4")
#: default CRF of the encoders that have one (x264/x265 18-20: visually lossless; VP9/AV1 on their scales)
DEFAULT_CRF = {"libx264": 18, "libx265": 20, "libvpx-vp9": 24, "libsvtav1": 28}
#: bits per output pixel and frame for encoders without a CRF mode (libopenh264, mpeg4, ...)
FALLBACK_BITS_PER_PIXEL = 0.15
QUEUE_FRAMES = 4  # frames in flight between two threads


class VideoReadError(ValueError):
    """A video could not be read or has nothing to upscale; the message names the file."""


def is_video(path) -> bool:
    return Path(path).suffix.lower() in VIDEO_EXTENSIONS


def _open_input(path: Path):
    import av

    if not path.is_file():
        raise VideoReadError(f"{path}: no such file")
    if path.stat().st_size == 0:
        raise VideoReadError(f"{path}: empty file (0 bytes)")
    try:
        return av.open(str(path), "r")
    except (av.FFmpegError, OSError, ValueError) as e:
        raise VideoReadError(f"{path}: cannot read video ({_av_message(e)})") from None


def _av_message(e: Exception) -> str:
    text = getattr(e, "strerror", None) or str(e)
    return f"{type(e).__name__}: {text}"


def available_encoder(name: str) -> bool:
    import av

    try:
        av.codec.Codec(name, "w")
        return True
    except (av.FFmpegError, ValueError, KeyError):
        return False


def choose_encoder(output_suffix: str, requested: str | None = None) -> str:
    """The video encoder for a container: ``requested`` (checked), else the first of
    :data:`ENCODER_PREFERENCE` that this FFmpeg build has and the container holds."""
    import io

    import av

    fmt = _container_format(output_suffix)
    with av.open(io.BytesIO(), "w", format=fmt) as probe:
        supported = probe.supported_codecs
    if requested and requested != "auto":
        if not available_encoder(requested):
            raise ValueError(f"--codec {requested}: this FFmpeg build has no such video encoder")
        codec = av.codec.Codec(requested, "w")
        if codec.type != "video":
            raise ValueError(f"--codec {requested}: not a video encoder")
        if requested not in supported and codec.name not in supported:
            raise ValueError(f"--codec {requested}: a {output_suffix} file cannot hold it")
        return requested
    for name in ENCODER_PREFERENCE:
        if available_encoder(name) and (name in supported or av.codec.Codec(name, "w").name in supported):
            return name
    raise ValueError(f"no video encoder of this FFmpeg build can write a {output_suffix} file; try .mp4 or .mkv")


def _container_format(suffix: str) -> str:
    import av

    formats = {".mkv": "matroska", ".webm": "webm", ".mp4": "mp4", ".m4v": "mp4", ".mov": "mov", ".avi": "avi",
               ".ts": "mpegts", ".mts": "mpegts", ".m2ts": "mpegts", ".flv": "flv", ".mpg": "mpeg",
               ".mpeg": "mpeg", ".wmv": "asf", ".ogv": "ogg", ".3gp": "3gp"}
    fmt = formats.get(suffix.lower())
    if fmt is None or fmt not in av.formats_available:
        raise ValueError(f"unsupported video output extension {suffix!r}; use one of {', '.join(VIDEO_EXTENSIONS)}")
    return fmt


def even_size(w: int, h: int, pix_fmt: str) -> tuple[int, int]:
    """The size rounded up to what the pixel format's chroma subsampling needs (4:2:0 even sides,
    4:2:2 an even width, 4:1:1 a width of a multiple of 4)."""
    sub_w = sub_h = 1
    if any(k in pix_fmt for k in ("420", "nv12", "nv21")):
        sub_w = sub_h = 2
    elif any(k in pix_fmt for k in ("422", "nv16", "nv20")):
        sub_w = 2
    elif "411" in pix_fmt:
        sub_w = 4
    elif "440" in pix_fmt:
        sub_h = 2
    return -(-w // sub_w) * sub_w, -(-h // sub_h) * sub_h


def output_pix_fmt(encoder: str, source_fmt: str) -> str:
    """The source's pixel format where the encoder takes it; else 4:2:0 at the source's depth."""
    import av

    formats = [f.name for f in (av.codec.Codec(encoder, "w").video_formats or [])]
    if not formats:
        return "yuv420p"
    if source_fmt in formats:
        return source_fmt
    deep = _bit_depth(source_fmt) > 8
    for cand in (("yuv420p10le", "yuv420p") if deep else ("yuv420p",)):
        if cand in formats:
            return cand
    return formats[0]


def _bit_depth(pix_fmt: str) -> int:
    import av

    try:
        return max(c.bits for c in av.VideoFormat(pix_fmt).components)
    except (ValueError, AttributeError):
        return 8


@dataclass
class VideoReport:
    src: Path
    dst: Path
    in_size: tuple[int, int]
    out_size: tuple[int, int]
    seconds: float
    frames: int
    encoder: str
    copied: list[str] = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)
    rotation: int = 0

    @property
    def detail(self) -> str:
        fps = self.frames / self.seconds if self.seconds > 0 else 0.0
        parts = [f"{self.frames} frames, {fps:.2f} fps", f"encoder {self.encoder}"]
        if self.copied:
            parts.append("copied " + ", ".join(self.copied))
        if self.rotation:
            parts.append(f"rotation {self.rotation} deg kept as metadata")
        return "; ".join(parts)


@dataclass
class _FrameInfo:
    pts: int | None
    time_base: Fraction
    fmt: str
    colorspace: int
    color_range: int
    color_primaries: int
    color_trc: int
    display_matrix: bytes | None
    rotation: int


_END = object()


class _Failed:
    def __init__(self, exc: BaseException):
        self.exc = exc


def _put(q: queue.Queue, item, stop: threading.Event) -> bool:
    while not stop.is_set():
        try:
            q.put(item, timeout=0.1)
            return True
        except queue.Full:
            continue
    return False


def _get(q: queue.Queue):
    while True:  # a timeout keeps the main thread responsive to Ctrl-C
        try:
            return q.get(timeout=0.2)
        except queue.Empty:
            continue


def _sws_colorspace(av_colorspace: int):
    """AVColorSpace (a frame's tag) -> swscale's matrix (None: unspecified, swscale's default BT.601)."""
    from av.video.reformatter import Colorspace

    return {1: Colorspace.ITU709, 4: Colorspace.FCC, 5: Colorspace.ITU601, 6: Colorspace.SMPTE170M,
            7: Colorspace.SMPTE240M, 9: Colorspace.BT2020, 10: Colorspace.BT2020}.get(int(av_colorspace or 2))


def _range(color_range: int, pix_fmt: str):
    """The YUV range of a frame: its tag, else full for the yuvj formats and limited for the others."""
    from av.video.reformatter import ColorRange

    if pix_fmt.startswith("yuvj"):
        return ColorRange.JPEG
    return ColorRange(color_range) if color_range else ColorRange.MPEG


try:
    from av.video.reformatter import Interpolation as _I

    #: swscale flags of the YUV <-> RGB conversions: without full chroma interpolation and accurate
    #: rounding, limited-range white (Y 235) comes out as 253, not 255
    _ACCURATE = _I.BILINEAR | _I.ACCURATE_RND | _I.FULL_CHR_H_INT | _I.FULL_CHR_H_INP
except ImportError:  # PyAV not installed: tinysr works on images without it
    _ACCURATE = None


def frame_to_rgb(frame, deep: bool) -> np.ndarray:
    """Decoded frame -> H x W x 3 uint8 (uint16 for deep sources), converted with the frame's own
    matrix and range (limited-range YUV 16..235 -> 0..255)."""
    from av.video.reformatter import ColorRange

    rgb = frame.reformat(format="rgb48le" if deep else "rgb24",
                         src_colorspace=_sws_colorspace(frame.colorspace),
                         src_color_range=_range(frame.color_range, frame.format.name),
                         dst_color_range=ColorRange.JPEG, interpolation=_ACCURATE)
    return rgb.to_ndarray()


def rgb_to_frame(rgb: np.ndarray, info: _FrameInfo, pix_fmt: str):
    """H x W x 3 uint8 / uint16 -> a frame in ``pix_fmt`` with the source's matrix and range."""
    import av
    from av.video.reformatter import ColorRange

    frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), "rgb48le" if rgb.dtype == np.uint16 else "rgb24")
    if pix_fmt.startswith(("rgb", "bgr", "gbr")):
        return frame.reformat(format=pix_fmt)
    return frame.reformat(format=pix_fmt, src_color_range=ColorRange.JPEG,
                          dst_colorspace=_sws_colorspace(info.colorspace),
                          dst_color_range=_range(info.color_range, pix_fmt if pix_fmt.startswith("yuvj") else info.fmt),
                          interpolation=_ACCURATE)


def upscale_video(runner, src, dst, tile: int = 256, overlap: int = 16, outscale: float | None = None,
                  codec: str | None = None, crf: int | None = None, preset: str | None = None,
                  progress: bool = True) -> VideoReport:
    """Upscale the video ``src`` into ``dst`` (its container from the extension); see the module doc."""
    import av
    from tqdm.auto import tqdm

    from .imageio import atomic_write
    from .upscale import resize_output, upscale_array

    src, dst = Path(src), Path(dst)
    encoder = choose_encoder(dst.suffix, codec)
    crf_option = _crf_check(encoder, crf)
    t0 = time.perf_counter()
    inp = _open_input(src)
    handed_over = False
    try:
        vids = [s for s in inp.streams.video if not (s.disposition & av.stream.Disposition.attached_pic)]
        if not vids:
            raise VideoReadError(f"{src}: no video stream (streams: "
                                 f"{', '.join(s.type for s in inp.streams) or 'none'})")
        vin = vids[0]
        if vin.codec_context is None or vin.codec_context.codec is None:
            raise VideoReadError(f"{src}: unsupported video codec ({_codec_label(vin)}): this FFmpeg build "
                                 "has no decoder for it")
        vin.thread_type = "AUTO"
        w, h = vin.codec_context.width, vin.codec_context.height
        if not w or not h:
            raise VideoReadError(f"{src}: the video stream has no frame size (corrupt header?)")
        total = vin.frames or (int(float(vin.duration * vin.time_base) * float(vin.average_rate))
                               if vin.duration and vin.average_rate else None)
        fmt = _container_format(dst.suffix)
        import io
        with av.open(io.BytesIO(), "w", format=fmt) as probe:
            supported = probe.supported_codecs
        _check_complete(src, inp)
        copy, copied, dropped = [], [], []
        for s in inp.streams:
            if s is vin:
                continue
            name = s.codec_context.name if s.codec_context is not None else _codec_label(s)
            label = f"#{s.index} {s.type} ({name})"
            if s.type in ("audio", "subtitle") and name in supported:
                copy.append(s)
                copied.append(label)
            else:
                why = "the output container cannot hold it" if s.type in ("audio", "subtitle") else "not copied"
                dropped.append(f"{label}: {why}")
        for d in dropped:
            warnings.warn(f"{src}: stream {d}")
        rate = vin.average_rate or vin.guessed_rate or vin.base_rate or Fraction(25)
        deep = _bit_depth(vin.codec_context.pix_fmt or "yuv420p") > 8
        handed_over = True
    finally:
        if not handed_over:
            inp.close()

    stop = threading.Event()
    q_frames: queue.Queue = queue.Queue(QUEUE_FRAMES + 4 * max(1, len(copy)))
    q_out: queue.Queue = queue.Queue(QUEUE_FRAMES + 4 * max(1, len(copy)))
    scale = runner.scale

    def decode():
        try:
            first = True
            for packet in inp.demux([vin, *copy]):
                if stop.is_set():
                    return
                if packet.stream is vin:
                    for frame in packet.decode():
                        dm = None
                        if first:
                            for sd in frame.side_data:
                                if getattr(sd.type, "name", "") == "DISPLAYMATRIX":
                                    dm = bytes(sd)
                        info = _FrameInfo(frame.pts, frame.time_base or vin.time_base, frame.format.name,
                                          int(frame.colorspace or 0), int(frame.color_range or 0),
                                          int(frame.color_primaries or 0), int(frame.color_trc or 0),
                                          dm, frame.rotation if first else 0)
                        first = False
                        if not _put(q_frames, ("frame", info, frame_to_rgb(frame, deep)), stop):
                            return
                elif packet.dts is not None and packet.size:
                    if not _put(q_frames, ("packet", packet.stream.index, packet), stop):
                        return
            _put(q_frames, _END, stop)
        except BaseException as e:  # noqa: BLE001 - handed to the writer, which raises it
            _put(q_frames, _Failed(e), stop)

    def infer():
        try:
            while not stop.is_set():
                item = _get(q_frames)
                if item is _END or isinstance(item, _Failed):
                    _put(q_out, item, stop)
                    return
                if item[0] == "frame":
                    _, info, rgb = item
                    depth = 16 if rgb.dtype == np.uint16 else 8
                    x = rgb.astype(np.float32) / (65535.0 if depth == 16 else 255.0)
                    up = upscale_array(runner, x, tile, overlap, bit_depth=depth)
                    item = ("frame", info, up)
                if not _put(q_out, item, stop):
                    return
        except BaseException as e:  # noqa: BLE001
            _put(q_out, _Failed(e), stop)

    state: dict = {}

    def write(tmp):
        with av.open(tmp, "w", format=fmt) as out:
            pending = []
            vout = None
            streams = {}
            frames = 0
            with tqdm(total=total, desc=src.name, unit="frame", disable=not progress, leave=False) as bar:
                while True:
                    item = _get(q_out)
                    if item is _END:
                        break
                    if isinstance(item, _Failed):
                        raise item.exc
                    if item[0] == "packet":
                        if vout is None:
                            pending.append(item[1:])
                            continue
                        _mux_copy(out, streams, *item[1:])
                        continue
                    _, info, up = item
                    if vout is None:
                        pix_fmt = output_pix_fmt(encoder, info.fmt)
                        size = _final_size(w, h, scale, outscale, pix_fmt)
                        vout = _add_video_stream(out, encoder, vin, rate, size, pix_fmt, info, crf_option, preset)
                        for s in copy:
                            streams[s.index] = out.add_stream_from_template(s)
                        state.update(size=size, pix_fmt=pix_fmt, rotation=info.rotation)
                        for index, p in pending:
                            _mux_copy(out, streams, index, p)
                        pending = []
                    up = resize_output(up, state["size"])
                    frame = rgb_to_frame(up, info, state["pix_fmt"])
                    frame.pts = info.pts if info.pts is not None else frames
                    frame.time_base = info.time_base if info.pts is not None else 1 / rate
                    for p in vout.encode(frame):
                        out.mux(p)
                    frames += 1
                    bar.update(1)
            if vout is None:
                raise VideoReadError(f"{src}: no frame could be decoded (corrupt or truncated video stream)")
            for p in vout.encode():
                out.mux(p)
            state["frames"] = frames

    threads = [threading.Thread(target=decode, name="tinysr-decode", daemon=True),
               threading.Thread(target=infer, name="tinysr-infer", daemon=True)]
    for t in threads:
        t.start()
    try:
        atomic_write(dst, write)
    except av.FFmpegError as e:
        raise VideoReadError(f"{src}: {_av_message(e)}") from None
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=5)
        if not threads[0].is_alive():  # else the decoder is stuck in FFmpeg: leave it the container
            inp.close()
    return VideoReport(src, dst, (w, h), state["size"], time.perf_counter() - t0, state["frames"], encoder,
                       copied, dropped, state["rotation"])


def _check_complete(src: Path, inp) -> None:
    """A container with an index (MP4, MOV, Matroska with cues...) says where its last packets lie: a
    file shorter than that is truncated. (Without an index, e.g. MPEG-TS, a truncated file just ends
    early and its frames are upscaled.)"""
    size = src.stat().st_size
    need = 0
    for s in inp.streams:
        entries = s.index_entries
        n = len(entries)
        for i in range(max(0, n - 16), n):
            e = entries[i]
            need = max(need, e.pos + e.size)
    if need > size:
        raise VideoReadError(f"{src}: truncated file: {size} bytes of the {need} its index needs "
                             "(an interrupted download or copy?)")


def _codec_label(stream) -> str:
    try:
        return stream.codec_context.name
    except AttributeError:
        return f"codec tag {stream.codec_tag!r}" if getattr(stream, "codec_tag", None) else "unknown codec"


def _crf_check(encoder: str, crf: int | None):
    if crf is None:
        return DEFAULT_CRF.get(encoder)
    if encoder not in DEFAULT_CRF:
        raise ValueError(f"--crf: the {encoder} encoder has no CRF mode (use one of {', '.join(DEFAULT_CRF)})")
    top = 63 if encoder in ("libvpx-vp9", "libsvtav1") else 51
    if not 0 <= crf <= top:
        raise ValueError(f"--crf {crf}: {encoder} takes 0 (best) to {top}")
    return crf


def _final_size(w: int, h: int, scale: int, outscale: float | None, pix_fmt: str) -> tuple[int, int]:
    if outscale is None:
        ow, oh = w * scale, h * scale
    else:
        ow, oh = max(1, round(w * outscale)), max(1, round(h * outscale))
    return even_size(ow, oh, pix_fmt)


def _add_video_stream(out, encoder, vin, rate, size, pix_fmt, info: _FrameInfo, crf, preset):
    options = {}
    if crf is not None:
        options["crf"] = str(crf)
        if encoder == "libvpx-vp9":
            options["b"] = "0"
    if preset:
        if encoder not in ("libx264", "libx265", "libsvtav1"):
            raise ValueError(f"--preset: the {encoder} encoder has no presets")
        options["preset"] = preset
    vout = out.add_stream(encoder, rate=rate, options=options)
    vout.width, vout.height = size
    vout.pix_fmt = pix_fmt
    vout.time_base = vin.time_base
    cc = vout.codec_context
    cc.time_base = info.time_base or vin.time_base
    if crf is None:
        cc.bit_rate = int(FALLBACK_BITS_PER_PIXEL * size[0] * size[1] * float(rate))
    if vin.sample_aspect_ratio:
        vout.sample_aspect_ratio = vin.sample_aspect_ratio
    if not pix_fmt.startswith(("rgb", "bgr", "gbr")):
        cc.color_range = int(_range(info.color_range, pix_fmt if pix_fmt.startswith("yuvj") else info.fmt))
    for attr in ("colorspace", "color_primaries", "color_trc"):
        value = getattr(info, attr)
        if value and value != 2:  # 2: unspecified
            setattr(cc, attr, value)
    if info.display_matrix is not None and len(info.display_matrix) == 36:
        vout.set_display_matrix(list(struct.unpack("<9i", info.display_matrix)))
    return vout


def _mux_copy(out, streams: dict, index: int, packet) -> None:
    packet.stream = streams[index]
    out.mux(packet)
