import numpy as np
import pytest

from tinysr.data.bicubic import downscale, imresize


def _u8(path):
    return np.asarray(__import__("PIL.Image", fromlist=["Image"]).open(path))


@pytest.mark.parametrize("dataset", ["Set5", "Set14"])
@pytest.mark.parametrize("factor", [2, 4])
def test_reproduces_every_benchmark_lr_file_bit_exactly(bench, dataset, factor):
    hr_dir = bench / dataset / ("HR_X2" if factor == 2 and (bench / dataset / "HR_X2").is_dir() else "HR")
    files = sorted(hr_dir.glob("*.png"))
    assert files
    for f in files:
        lr = _u8(bench / dataset / "LR_bicubic" / f"X{factor}" / f.name)
        ours = downscale(_u8(f), factor)
        assert ours.dtype == np.uint8 and ours.shape == lr.shape, f.name
        assert np.array_equal(ours, lr), f"{f.name}: {np.count_nonzero(ours != lr)} pixels differ"


def test_float_input_is_not_rounded_and_constant_images_stay_constant():
    img = np.full((20, 24, 3), 0.3)
    out = imresize(img, 0.5)
    assert out.shape == (10, 12, 3) and np.allclose(out, 0.3)
    up = imresize(img, output_shape=(40, 48))
    assert np.allclose(up, 0.3)


def test_rejects_bad_shapes():
    with pytest.raises(ValueError):
        imresize(np.zeros((2, 2, 2, 2)), 0.5)
