"""`tinysr upscale` on videos: frames, sizes, timestamps, audio and subtitles kept, bad inputs, batches."""
from fractions import Fraction

import numpy as np
import pytest
from PIL import Image

av = pytest.importorskip("av")

from conftest import rng_image  # noqa: E402
from tinysr.cli.main import main  # noqa: E402


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    """A random-init TPSR x4 checkpoint (the weights do not matter here, only the plumbing)."""
    import torch

    from tinysr.checkpoint import save_checkpoint
    from tinysr.models import create_model

    torch.manual_seed(0)
    p = tmp_path_factory.mktemp("model") / "m.pt"
    save_checkpoint(p, create_model("tpsr_x4"))
    return p


def make_clip(path, w=32, h=24, n=8, fps=25, *, codec="libx264", pix_fmt="yuv420p", rotation=None, pts=None,
              audio=True, color=None, subtitles=None):
    """A moving pattern (n frames), optionally a 440 Hz AAC tone, a display rotation, explicit
    timestamps in ms (variable frame rate), colour tags (range, colorspace) and an SRT track."""
    tb = Fraction(1, 1000) if pts else Fraction(1, fps)
    with av.open(str(path), "w") as c:
        v = c.add_stream(codec, rate=fps)
        v.width, v.height, v.pix_fmt = w, h, pix_fmt
        v.codec_context.time_base = tb
        if rotation is not None:
            v.set_display_rotation(rotation)
        if color:
            v.codec_context.color_range, v.codec_context.colorspace = color
        a = None
        if audio:
            a = c.add_stream("aac", rate=48000)
            a.layout = "mono"
        s = None
        if subtitles is not None:
            with av.open(str(subtitles)) as srt:
                s = c.add_stream_from_template(srt.streams.subtitles[0])
                sub_packets = [p for p in srt.demux() if p.size]
        yy, xx = np.mgrid[0:h, 0:w]
        for i in range(n):
            img = np.stack([(xx * 8 + i * 12) % 256, (yy * 10 + i * 6) % 256, ((xx + yy) * 4) % 256], 2)
            f = av.VideoFrame.from_ndarray(img.astype(np.uint8), "rgb24")
            if color:
                from av.video.reformatter import ColorRange, Colorspace

                f = f.reformat(format=pix_fmt, dst_colorspace=Colorspace.ITU709, dst_color_range=ColorRange.MPEG)
            f.pts, f.time_base = (pts[i] if pts else i), tb
            for p in v.encode(f):
                c.mux(p)
        for p in v.encode():
            c.mux(p)
        if a is not None:
            t = np.arange(round(48000 * (pts[-1] / 1000 if pts else n / fps))) / 48000
            tone = (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
            for k in range(0, len(tone), 1024):
                f = av.AudioFrame.from_ndarray(tone[None, k:k + 1024], format="flt", layout="mono")
                f.sample_rate, f.pts = 48000, k
                for p in a.encode(f):
                    c.mux(p)
            for p in a.encode():
                c.mux(p)
        if s is not None:
            for p in sub_packets:
                p.stream = s
                c.mux(p)
    return path


def probe(path):
    """Frames (pts in seconds, rotation), size, pix_fmt, rate, duration, and each other stream's packets."""
    with av.open(str(path)) as c:
        v = c.streams.video[0]
        info = {"size": (v.codec_context.width, v.codec_context.height), "pix_fmt": v.codec_context.pix_fmt,
                "rate": v.average_rate, "duration": c.duration / 1e6, "codec": v.codec_context.name,
                "range": v.codec_context.color_range, "colorspace": v.codec_context.colorspace}
        frames = [(float(f.time), f.rotation) for f in c.decode(v)]
        c.seek(0)
        others = {}
        for p in c.demux([s for s in c.streams if s.type != "video"]):
            if p.size:
                others.setdefault(p.stream.type, []).append((bytes(p), float(p.pts * p.time_base)))
    info["times"] = [t for t, _ in frames]
    info["rotations"] = {r for _, r in frames}
    info["others"] = others
    return info


def run(argv, ckpt):
    return main(["upscale", *map(str, argv), "--model", str(ckpt), "-q"])


def test_frames_size_timing_and_audio_copied_bit_exactly(tmp_path, ckpt, capsys):
    src = make_clip(tmp_path / "clip.mp4", n=10)
    assert run([src, "-o", tmp_path / "clip_x4.mp4"], ckpt) == 0
    a, b = probe(src), probe(tmp_path / "clip_x4.mp4")
    assert len(b["times"]) == 10 and b["size"] == (128, 96) and b["codec"] == "h264"
    assert b["times"] == a["times"] and b["rate"] == a["rate"] == 25
    assert abs(b["duration"] - a["duration"]) <= 1 / 25
    assert len(a["others"]["audio"]) > 10 and b["others"]["audio"] == a["others"]["audio"]  # bytes and times
    out = capsys.readouterr().out
    assert "clip.mp4 (32x24) ->" in out and "(128x96)" in out and "encoder libx264" in out
    assert "copied #1 audio (aac)" in out
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clip.mp4", "clip_x4.mp4"]  # no temporaries


def test_odd_size_keeps_its_444_pixel_format(tmp_path, ckpt):
    src = make_clip(tmp_path / "odd.mkv", w=33, h=25, n=4, pix_fmt="yuv444p", audio=False)
    assert run([src, "-o", tmp_path / "odd_x4.mkv"], ckpt) == 0
    b = probe(tmp_path / "odd_x4.mkv")
    assert b["size"] == (132, 100) and b["pix_fmt"] == "yuv444p" and len(b["times"]) == 4


def test_rotation_is_carried_over_as_metadata(tmp_path, ckpt):
    src = make_clip(tmp_path / "rot.mp4", n=4, rotation=90, audio=False)
    assert probe(src)["rotations"] == {90}
    assert run([src, "-o", tmp_path / "rot_x4.mp4"], ckpt) == 0
    b = probe(tmp_path / "rot_x4.mp4")
    assert b["rotations"] == {90} and b["size"] == (128, 96)  # stored as coded, shown rotated


def test_variable_frame_rate_timestamps_are_kept(tmp_path, ckpt):
    pts = [0, 40, 60, 140, 150, 300, 340, 360]
    src = make_clip(tmp_path / "vfr.mp4", n=8, pts=pts)
    assert run([src, "-o", tmp_path / "vfr_x4.mp4"], ckpt) == 0
    a, b = probe(src), probe(tmp_path / "vfr_x4.mp4")
    assert a["times"] == [t / 1000 for t in pts] and b["times"] == a["times"]
    assert b["others"]["audio"] == a["others"]["audio"]


def test_subtitles_are_copied(tmp_path, ckpt):
    srt = tmp_path / "s.srt"
    srt.write_text("1\n00:00:00,000 --> 00:00:00,200\nhello\n\n2\n00:00:00,200 --> 00:00:00,300\nworld\n\n")
    src = make_clip(tmp_path / "sub.mkv", n=8, subtitles=srt)
    assert run([src, "-o", tmp_path / "sub_x4.mkv"], ckpt) == 0
    a, b = probe(src), probe(tmp_path / "sub_x4.mkv")
    assert len(a["others"]["subtitle"]) == 2 and b["others"]["subtitle"] == a["others"]["subtitle"]
    assert b["others"]["audio"] == a["others"]["audio"]


def test_limited_range_converts_with_its_range_and_matrix():
    from av.video.reformatter import ColorRange, Colorspace

    from tinysr.video import _FrameInfo, frame_to_rgb, rgb_to_frame

    def yuv_frame(y, rng):
        f = av.VideoFrame(4, 4, "yuv420p")
        for plane, value in zip(f.planes, (y, 128, 128)):
            plane.update(bytes([value]) * plane.buffer_size)
        f.color_range = rng
        return f

    assert frame_to_rgb(yuv_frame(16, ColorRange.MPEG), False).max() == 0  # limited black
    assert frame_to_rgb(yuv_frame(235, ColorRange.MPEG), False).min() == 255  # limited white
    assert frame_to_rgb(yuv_frame(16, ColorRange.JPEG), False).max() == 16  # full range: 16 stays 16
    assert frame_to_rgb(yuv_frame(16, 0), False).max() == 0  # untagged YUV: limited
    white = np.full((4, 4, 3), 255, np.uint8)
    for rng, luma in ((ColorRange.MPEG, 235), (ColorRange.JPEG, 255)):
        info = _FrameInfo(0, Fraction(1, 25), "yuv420p", 1, int(rng), 1, 1, None, 0)
        out = rgb_to_frame(white, info, "yuv420p")
        assert set(out.to_ndarray()[:4].ravel().tolist()) == {luma}  # the Y plane
    # BT.709 and BT.601 differ on saturated colours: the tag is used both ways
    red = np.zeros((4, 4, 3), np.uint8)
    red[..., 0] = 255
    y709 = rgb_to_frame(red, _FrameInfo(0, Fraction(1), "yuv420p", 1, 1, 1, 1, None, 0), "yuv420p")
    y601 = rgb_to_frame(red, _FrameInfo(0, Fraction(1), "yuv420p", 5, 1, 5, 6, None, 0), "yuv420p")
    assert abs(int(y709.to_ndarray()[0, 0]) - 63) <= 1 and abs(int(y601.to_ndarray()[0, 0]) - 81) <= 1
    assert Colorspace.ITU709  # the enum exists in this PyAV


def test_limited_range_bt709_tags_survive(tmp_path, ckpt):
    from av.video.reformatter import ColorRange

    src = make_clip(tmp_path / "tv.mp4", n=4, audio=False, color=(ColorRange.MPEG, 1))
    assert probe(src)["colorspace"] == 1
    assert run([src, "-o", tmp_path / "tv_x4.mp4"], ckpt) == 0
    b = probe(tmp_path / "tv_x4.mp4")
    assert b["colorspace"] == 1 and b["range"] in (0, int(ColorRange.MPEG))  # limited (0: untagged = limited)


def test_outscale_on_video_rounds_to_the_chroma_grid(tmp_path, ckpt, capsys):
    src = make_clip(tmp_path / "c.mp4", w=30, h=22, n=3, audio=False)
    assert run([src, "-o", tmp_path / "c2.mp4", "--outscale", "2"], ckpt) == 0
    assert probe(tmp_path / "c2.mp4")["size"] == (60, 44)
    assert run([src, "-o", tmp_path / "c15.mp4", "--outscale", "1.5"], ckpt) == 0
    assert probe(tmp_path / "c15.mp4")["size"] == (46, 34)  # 45x33, rounded up for 4:2:0


def test_codec_and_crf_choices(tmp_path, ckpt, capsys):
    from tinysr.video import choose_encoder

    assert choose_encoder(".mp4") == "libx264"
    assert choose_encoder(".webm") in ("libvpx-vp9", "libsvtav1", "libvpx")
    src = make_clip(tmp_path / "c.mp4", n=3, audio=False)
    assert run([src, "-o", tmp_path / "m.mp4", "--codec", "mpeg4"], ckpt) == 0
    assert probe(tmp_path / "m.mp4")["codec"] == "mpeg4" and "encoder mpeg4" in capsys.readouterr().out
    assert run([src, "-o", tmp_path / "q.mp4", "--crf", "30", "--preset", "ultrafast"], ckpt) == 0
    capsys.readouterr()
    for argv, words in [(["--codec", "mpeg4", "--crf", "20"], "no CRF mode"), (["--codec", "nope264"], "no such"),
                        (["--crf", "99"], "--crf 99")]:
        assert run([src, "-o", tmp_path / "x.mp4", *argv], ckpt) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("tinysr: error: ") and words in err[0], err
    assert not (tmp_path / "x.mp4").exists()


def _bad_videos(tmp_path):
    good = make_clip(tmp_path / "good.mp4", n=6)
    data = good.read_bytes()
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "garbage.mp4").write_bytes(bytes(range(256)) * 20)
    (bad / "truncated.mp4").write_bytes(data[:len(data) // 2])  # index (moov) at the end: lost
    faststart = tmp_path / "fs.mp4"  # index first: the truncation is seen from it
    with av.open(str(good)) as i, av.open(str(faststart), "w", options={"movflags": "faststart"}) as o:
        streams = {s.index: o.add_stream_from_template(s) for s in i.streams}
        for p in i.demux():
            if p.size:
                p.stream = streams[p.stream.index]
                o.mux(p)
    (bad / "truncated_fs.mp4").write_bytes(faststart.read_bytes()[:faststart.stat().st_size * 2 // 3])
    with av.open(str(good)) as i, av.open(str(bad / "audio_only.mp4"), "w") as o:
        a = o.add_stream_from_template(i.streams.audio[0])
        for p in i.demux(i.streams.audio[0]):
            if p.size:
                p.stream = a
                o.mux(p)
    m4 = make_clip(tmp_path / "m4.avi", n=3, codec="mpeg4", audio=False)
    (bad / "unknown_codec.avi").write_bytes(m4.read_bytes().replace(b"FMP4", b"ZQX9"))
    (bad / "empty.mp4").write_bytes(b"")
    return good, bad


@pytest.mark.parametrize("name, words", [
    ("garbage.mp4", "cannot read video"), ("truncated.mp4", "cannot read video"),
    ("truncated_fs.mp4", "truncated file"), ("audio_only.mp4", "no video stream"),
    ("unknown_codec.avi", "unsupported video codec"), ("empty.mp4", "empty file")])
def test_bad_videos_are_one_line_and_write_nothing(tmp_path, ckpt, capsys, name, words):
    _, bad = _bad_videos(tmp_path)
    out = tmp_path / "out"
    out.mkdir()
    assert run([bad / name, "-o", out / "x.mp4"], ckpt) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"tinysr: error: {bad / name}: ") and words in err[0], err
    assert list(out.iterdir()) == []


def test_a_batch_of_images_videos_and_bad_files_goes_on(tmp_path, ckpt, capsys):
    good, bad = _bad_videos(tmp_path)
    d = tmp_path / "in"
    d.mkdir()
    Image.fromarray(rng_image(20, 24)).save(d / "a.png")
    (d / "b.mp4").write_bytes(good.read_bytes())
    (d / "c.mp4").write_bytes((bad / "truncated_fs.mp4").read_bytes())
    (d / "notes.txt").write_text("neither")
    assert run([d, "-o", tmp_path / "out", "--suffix", "x4"], ckpt) == 2
    captured = capsys.readouterr()
    err = captured.err.strip().splitlines()
    assert len(err) == 2 and "c.mp4: truncated file" in err[0] and "1 of 3 files failed" in err[1], err
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a_x4.png", "b_x4.mp4"]
    assert probe(tmp_path / "out" / "b_x4.mp4")["size"] == (128, 96)
    assert Image.open(tmp_path / "out" / "a_x4.png").size == (96, 80)


def test_interrupt_leaves_no_partial_output(tmp_path, ckpt, monkeypatch, capsys):
    """Ctrl-C in the middle (here raised by the model on the 3rd frame): exit 130, nothing written."""
    import tinysr.runtimes as runtimes

    real = runtimes.make_runner

    def interrupting(*a, **k):
        runner = real(*a, **k)
        calls = [0]
        inner = runner.__call__

        class Interrupting:
            scale, fixed_size, name = runner.scale, None, runner.name

            def __call__(self, x):
                calls[0] += 1
                if calls[0] == 3:
                    raise KeyboardInterrupt
                return inner(x)
        return Interrupting()

    monkeypatch.setattr(runtimes, "make_runner", interrupting)
    src = make_clip(tmp_path / "clip.mp4", n=8)
    out = tmp_path / "out"
    out.mkdir()
    assert run([src, "-o", out / "clip_x4.mp4"], ckpt) == 130
    assert "interrupted" in capsys.readouterr().err and list(out.iterdir()) == []


def test_bench_video_reports_compute_pipeline_ratio_and_fps(tmp_path, capsys):
    import json

    out = tmp_path / "b.json"
    assert main(["bench", "--video", "32x24", "--frames", "4", "-q", "--json", str(out)]) == 0
    text = capsys.readouterr().out
    assert "whole video / model compute =" in text and "libx264" in text
    r = json.loads(out.read_text())
    assert r["frames"] == 4 and r["output_size"] == [128, 96] and r["ratio"] > 0
    assert [row["what"] for row in r["rows"]] == ["model compute alone", "whole video (decode + upscale + encode)"]
    assert all(row["fps"] > 0 for row in r["rows"]) and r["copied"] == ["#1 audio (aac)"]
