"""One registry: registered names build registered families, and checkpoints name a family."""
import pytest
import torch

from tinysr.checkpoint import ModelLoadError, load_model, model_from_checkpoint, save_checkpoint
from tinysr.models import build_family, create_model, get_entry, list_families, list_models, register_model

SMALL = {"esrgan_x4": {"num_blocks": 1}, "mesrgan_x4": {"num_blocks": 1}, "srresnet_x4": {"num_blocks": 1}}


@pytest.mark.parametrize("name", list_models())
def test_every_model_round_trips_through_its_family(tmp_path, name):
    model = create_model(name, **SMALL.get(name, {})).eval()
    assert model.family == get_entry(name).family and model.family in list_families()
    rebuilt = build_family(model.family, model.config())
    assert type(rebuilt) is type(model) and rebuilt.config() == model.config()
    save_checkpoint(tmp_path / "m.pt", model)
    loaded = load_model(str(tmp_path / "m.pt"))
    x = torch.rand(1, 3, 8, 8)
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))


def test_unknown_family_is_a_clear_error():
    with pytest.raises(ModelLoadError, match="unknown model family 'unet'; known: abpn, edsr, espcn, esrgan, fsrcnn, quicksrnet, "
                       "sesr, srgan, tpsr, trilevel, xlsr; searched_discriminator, vgg_discriminator"):
        model_from_checkpoint({"format": "tinysr-checkpoint-v1", "family": "unet", "config": {}, "state_dict": {}})
    with pytest.raises(ValueError, match="family 'unet' is not registered"):
        register_model("unet_x4", family="unet", scale=4, description="")(lambda: None)
    assert "unet_x4" not in list_models()
