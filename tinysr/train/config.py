"""Training configuration: a YAML or TOML file plus ``key=value`` overrides."""
from __future__ import annotations

import dataclasses
import json
import math
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class TrainConfig:
    model: str = "tpsr_x4"  # registry name
    genotype: str | None = None  # TPSR-family only: train this cell instead of the default
    train_data: list[str] = field(default_factory=list)  # folders of HR images
    val_data: str | None = None  # benchmark folder (HR/ + LR_bicubic/X{s}/) or HR images
    out_dir: str = "runs/tpsr_x4"
    patch_size: int = 48  # LR patch side
    batch_size: int = 16
    steps: int = 100_000
    lr: float = 1e-3
    betas: tuple[float, float] = (0.9, 0.999)
    scheduler: str = "cosine"  # cosine | step | multistep
    lr_min: float = 1e-6  # cosine floor
    lr_step: int = 50_000  # step schedule: every lr_step steps ...
    lr_gamma: float = 0.5  # ... multiply the rate by lr_gamma (step and multistep)
    lr_milestones: list[int] = field(default_factory=list)  # multistep schedule: multiply by lr_gamma at each
    val_every: int = 1000
    ckpt_every: int = 500
    seed: int = 0
    workers: int = 1
    threads: int = 0  # torch intra-op threads (0: torch's default)
    init_from: str | None = None  # checkpoint whose matching tensors initialise the model (e.g. x2 -> x4)
    icnr: bool = False  # ICNR-initialise the convolutions feeding a PixelShuffle at model creation (before init_from)
    repeat: int = 20  # dataset repetitions per epoch (only affects epoch bookkeeping)
    gan: GanConfig | None = None  # stage two (GAN fine-tuning) when given; see GanConfig
    qat: QATConfig | None = None  # quantization-aware training of the init_from network when given; see QATConfig

    @classmethod
    def from_file(cls, path: str | Path) -> "TrainConfig":
        path = Path(path)
        text = path.read_text()
        if path.suffix.lower() == ".toml":
            import tomllib

            data = tomllib.loads(text)
        else:
            import yaml

            data = yaml.safe_load(text) or {}
        return cls.from_dict(data, source=str(path))

    @classmethod
    def from_dict(cls, data: dict, source: str = "config") -> "TrainConfig":
        """The config from a mapping. With a ``gan:`` section, its recipe's training defaults (lr,
        betas, schedule) fill the top-level keys the mapping does not give."""
        if isinstance(data, dict) and isinstance(data.get("gan"), dict):
            recipe = _recipe(data["gan"].get("recipe", GanConfig.recipe), f"{source}: gan")
            data = {**recipe["train"], **data}
        cfg = from_mapping(cls, data, source, nested={"gan": lambda v, src: None if v is None else GanConfig.from_dict(v, src),
                                                      "qat": lambda v, src: None if v is None else QATConfig.from_dict(v, src)})
        cfg.validate()
        return cfg

    def override(self, pairs: list[str]) -> "TrainConfig":
        """Apply ``key=value`` overrides; values are parsed as YAML (numbers, lists, null)."""
        import yaml

        data = dataclasses.asdict(self)
        for pair in pairs:
            if "=" not in pair:
                raise ValueError(f"override {pair!r}: expected key=value")
            key, value = pair.split("=", 1)
            if key.startswith("qat."):  # a key of the qat: section (qat.freeze_after=500)
                if data.get("qat") is None:
                    raise ValueError(f"override {pair!r}: this config has no qat: section (add one, or --qat)")
                sub = key[len("qat."):]
                if sub not in data["qat"]:
                    raise ValueError(f"override {pair!r}: unknown qat key {sub!r}; known: {', '.join(sorted(data['qat']))}")
                data["qat"][sub] = _typed(sub, yaml.safe_load(value), f"override {pair!r}", QATConfig)
                continue
            if key.startswith("gan."):  # a key of the gan: section (gan.adversarial_weight=1e-3)
                if data.get("gan") is None:
                    raise ValueError(f"override {pair!r}: this config has no gan: section")
                sub = key[len("gan."):]
                if sub not in data["gan"]:
                    raise ValueError(f"override {pair!r}: unknown gan key {sub!r}; known: {', '.join(sorted(data['gan']))}")
                try:
                    parsed = yaml.safe_load(value)
                except yaml.YAMLError:
                    parsed = value
                if _hint(sub, GanConfig) in (str, str | None) and parsed is not None and not isinstance(parsed, str):
                    parsed = value
                data["gan"][sub] = _typed(sub, parsed, f"override {pair!r}", GanConfig)
                continue
            if key not in data:
                raise ValueError(f"override {pair!r}: unknown key {key!r}")
            try:
                parsed = yaml.safe_load(value)
            except yaml.YAMLError:
                parsed = value  # kept as text: the type check below names it if text is not what the key takes
            if _hint(key) in (str, str | None) and parsed is not None and not isinstance(parsed, str):
                parsed = value  # a text field keeps the text as given (out_dir=2024, not the number 2024)
            data[key] = _typed(key, parsed, f"override {pair!r}")
        return TrainConfig.from_dict(data, "overrides")

    def validate(self):
        if isinstance(self.train_data, str):
            self.train_data = [self.train_data]
        self.betas = tuple(self.betas)
        if self.scheduler not in SCHEDULERS:
            raise ValueError(f"scheduler must be one of {', '.join(SCHEDULERS)}, got {self.scheduler!r}")
        if sorted(self.lr_milestones) != self.lr_milestones or any(m <= 0 for m in self.lr_milestones):
            raise ValueError(f"lr_milestones must be increasing positive steps, got {self.lr_milestones}")
        for name in ("patch_size", "batch_size", "steps", "val_every", "ckpt_every"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        if self.icnr and self.gan is not None:
            raise ValueError("icnr initialises a new generator (the L1 stage); the GAN stage starts from the "
                             "init_from checkpoint: set icnr in the L1 run's config")
        if self.qat is not None:
            if self.gan is not None:
                raise ValueError("qat: quantization-aware training is an L1 fine-tune; a config has a gan: or a qat: "
                                 "section, not both")
            if self.icnr:
                raise ValueError("qat: fine-tunes the init_from network; icnr initialises a new one")
            if not self.init_from:
                raise ValueError("qat: needs init_from: the trained fp32 network to fine-tune (a checkpoint or a "
                                 "model with bundled weights)")
            self.qat.validate()
        from ..models import get_entry

        self.model = get_entry(self.model, kind="generator").name  # tpsr-x4 -> tpsr_x4; an unknown name suggests the nearest

    def to_dict(self) -> dict:
        return json.loads(json.dumps(dataclasses.asdict(self)))


SCHEDULERS = ("cosine", "step", "multistep")


@dataclass
class QATConfig:
    """The ``qat:`` section: quantization-aware training in the exporter's int8 scheme
    (:class:`tinysr.export.qat.QATModel`), starting from the ``init_from`` network."""

    freeze_after: int = 0  # steps after which the activation ranges stop moving (0: they move to the end)
    averaging: float = 0.01  # moving-average constant of the activation range observers

    @classmethod
    def from_dict(cls, data, source: str = "qat") -> "QATConfig":
        cfg = from_mapping(cls, data or {}, source)
        cfg.validate(source)
        return cfg

    def validate(self, source: str = "qat") -> None:
        if self.freeze_after < 0:
            raise ValueError(f"{source}: freeze_after must be 0 (never) or a positive step, got {self.freeze_after}")
        if not 0 < self.averaging <= 1:
            raise ValueError(f"{source}: averaging must be in (0, 1], got {self.averaging}")
ADVERSARIAL_LOSSES = ("standard", "relativistic")  # Eq. 8 of TPSR / SRGAN; ESRGAN's relativistic average
PIXEL_LOSSES = ("l1", "mse")

#: The published GAN recipes. ``train``: the top-level defaults (generator optimiser and schedule);
#: ``gan``: the ``gan:`` section's defaults. ``source``: where each number comes from.
RECIPES = {
    "tpsr": {
        "source": ("TPSR (Lee, Kim, Cho; ECCV 2020) Eq. 7-8 and Algorithm 1 lines 27-33: L_G = alpha L1 + lambda "
                   "L_vgg + gamma L_adv with the standard GAN loss of Eq. 8 and the searched discriminator template. "
                   "The paper's text gives no weights; chosen here: ESRGAN's balance of the three terms "
                   "(alpha 1e-2, lambda 1, gamma 5e-3) and its optimiser (Adam 1e-4, betas 0.9/0.99), with the "
                   "perceptual term on an earlier VGG16 layer (relu2_2; the paper used an earlier layer on its proxy "
                   "task) measured with L1, as ESRGAN does."),
        "train": {"lr": 1e-4, "betas": [0.9, 0.99], "scheduler": "step", "lr_step": 50_000, "lr_gamma": 0.5},
        "gan": {"adversarial_loss": "standard", "discriminator": "tpsr_d", "pixel_loss": "l1", "pixel_weight": 1e-2,
                "perceptual_layer": "relu2_2", "perceptual_criterion": "l1", "perceptual_weight": 1.0,
                "adversarial_weight": 5e-3, "d_lr": 1e-4, "d_betas": [0.9, 0.99], "ema": 0.0},
    },
    "esrgan": {
        "source": ("ESRGAN (Wang et al. 2018) as published in BasicSR options/train/ESRGAN/train_ESRGAN_x4.yml: "
                   "L1 1e-2, perceptual 1.0 (VGG19 conv5_4 before ReLU, L1; VGG16 conv5_3 here, VGG19 is not "
                   "available offline), relativistic average GAN 5e-3, Adam 1e-4 betas (0.9, 0.99) for G and D, "
                   "MultiStepLR [50k, 100k, 200k, 300k] x 0.5, EMA 0.999, VGG-style D on 128-px patches."),
        "train": {"lr": 1e-4, "betas": [0.9, 0.99], "scheduler": "multistep",
                  "lr_milestones": [50_000, 100_000, 200_000, 300_000], "lr_gamma": 0.5},
        "gan": {"adversarial_loss": "relativistic", "discriminator": "vgg_d128", "pixel_loss": "l1",
                "pixel_weight": 1e-2, "perceptual_layer": "conv5_3", "perceptual_criterion": "l1",
                "perceptual_weight": 1.0, "adversarial_weight": 5e-3, "d_lr": 1e-4, "d_betas": [0.9, 0.99],
                "ema": 0.999},
    },
    "srgan": {
        "source": ("SRGAN (Ledig et al. 2017) as the MESRGAN report trains it in stage 2: MSE + 1e-3 adversarial "
                   "(standard GAN loss) + 6e-3 VGG (MSE on VGG19 relu5_4 in the paper; VGG16 relu5_3 here), Adam "
                   "1e-4 halved every 50k, VGG-style D."),
        "train": {"lr": 1e-4, "betas": [0.9, 0.999], "scheduler": "step", "lr_step": 50_000, "lr_gamma": 0.5},
        "gan": {"adversarial_loss": "standard", "discriminator": "vgg_d128", "pixel_loss": "mse", "pixel_weight": 1.0,
                "perceptual_layer": "relu5_3", "perceptual_criterion": "mse", "perceptual_weight": 6e-3,
                "adversarial_weight": 1e-3, "d_lr": 1e-4, "d_betas": [0.9, 0.999], "ema": 0.0},
    },
    "mesrgan": {
        "source": ("MESRGAN report, stage 2: MSE + 1e-3 adversarial + 6e-3 VGG (VGG16 relu5_3 here), Adam 1e-4 "
                   "halved every 50k, batch 16; the relativistic average loss of ESRGAN, which MESRGAN builds on."),
        "train": {"lr": 1e-4, "betas": [0.9, 0.999], "scheduler": "step", "lr_step": 50_000, "lr_gamma": 0.5},
        "gan": {"adversarial_loss": "relativistic", "discriminator": "vgg_d128", "pixel_loss": "mse",
                "pixel_weight": 1.0, "perceptual_layer": "relu5_3", "perceptual_criterion": "mse",
                "perceptual_weight": 6e-3, "adversarial_weight": 1e-3, "d_lr": 1e-4, "d_betas": [0.9, 0.999],
                "ema": 0.0},
    },
}


def _recipe(name, source: str) -> dict:
    if name not in RECIPES:
        raise ValueError(f"{source}: recipe must be one of {', '.join(RECIPES)}, got {name!r}")
    return RECIPES[name]


@dataclass
class GanConfig:
    """Stage two, the ``gan:`` section of a training config: L_G = pixel_weight * pixel loss +
    perceptual_weight * VGG16 feature loss + adversarial_weight * adversarial loss; the
    discriminator has its own Adam (``d_lr``, ``d_betas``) and its own schedule of the top-level kind.
    Keys not given take the recipe's value (:data:`RECIPES`); ``source`` is filled from the recipe."""

    recipe: str = "tpsr"
    source: str = ""
    discriminator: str = "tpsr_d"  # registry name of a discriminator, or a discriminator checkpoint
    d_genotype: str | None = None  # searched-template discriminators: the genotype ('conv3>rconv3 ...')
    spectral_norm: bool = False
    adversarial_loss: str = "standard"  # standard | relativistic
    pixel_loss: str = "l1"  # l1 | mse
    pixel_weight: float = 1e-2
    perceptual_layer: str = "relu2_2"  # a VGG16 layer: relu1_2 ... relu5_3, conv1_1 ... conv5_3
    perceptual_criterion: str = "l1"
    perceptual_weight: float = 1.0
    adversarial_weight: float = 5e-3
    d_lr: float = 1e-4
    d_betas: tuple[float, float] = (0.9, 0.99)
    ema: float = 0.0  # decay of an exponential moving average of G (0: off); best.pt then holds the average
    val_images: int = 10  # training images held out (by file, fixed seed) for validation; never the test sets
    val_size: int = 0  # LR side of the validation centre crops (0: whole images)
    val_lpips_net: str = "alex"  # vgg | alex: the LPIPS that chooses best.pt (both are logged)
    max_psnr_drop: float | None = None  # best.pt only among validations within this many dB of the
    #                                     initial generator's validation PSNR (null: LPIPS alone decides)
    max_grid_ratio: float | None = None  # best.pt only among validations whose grid residual (tinysr.metrics.grid)
    #                                      is at most this multiple of the initial generator's (null: off)
    vgg_weights: str | None = None  # VGG16 trunk (torchvision format); default: found like LPIPS's

    @classmethod
    def from_dict(cls, data, source: str = "gan") -> "GanConfig":
        if not isinstance(data, dict):
            raise ValueError(f"{source}: expected a mapping, got {data!r}")
        recipe = _recipe(data.get("recipe", cls.recipe), source)
        merged = {**recipe["gan"], "source": recipe["source"], **data}
        cfg = from_mapping(cls, merged, source)
        cfg.validate(source)
        return cfg

    def validate(self, source: str = "gan") -> None:
        self.d_betas = tuple(self.d_betas)
        _recipe(self.recipe, source)
        choices = {"adversarial_loss": ADVERSARIAL_LOSSES, "pixel_loss": PIXEL_LOSSES,
                   "perceptual_criterion": PIXEL_LOSSES, "val_lpips_net": ("vgg", "alex")}
        for key, allowed in choices.items():
            if getattr(self, key) not in allowed:
                raise ValueError(f"{source}: {key} must be one of {', '.join(allowed)}, got {getattr(self, key)!r}")
        from .losses import VGG16_LAYERS

        if self.perceptual_layer not in VGG16_LAYERS:
            raise ValueError(f"{source}: perceptual_layer must be a VGG16 layer ({', '.join(VGG16_LAYERS)}), "
                             f"got {self.perceptual_layer!r}")
        for key in ("pixel_weight", "perceptual_weight", "adversarial_weight"):
            if not math.isfinite(getattr(self, key)) or getattr(self, key) < 0:
                raise ValueError(f"{source}: {key} must be a number >= 0, got {getattr(self, key)}")
        if not (math.isfinite(self.d_lr) and self.d_lr > 0):
            raise ValueError(f"{source}: d_lr must be a positive number, got {self.d_lr}")
        if not 0 <= self.ema < 1:
            raise ValueError(f"{source}: ema must be in [0, 1) (0: off), got {self.ema}")
        if self.max_psnr_drop is not None and not (math.isfinite(self.max_psnr_drop) and self.max_psnr_drop >= 0):
            raise ValueError(f"{source}: max_psnr_drop must be a number >= 0 (dB) or null, got {self.max_psnr_drop}")
        if self.max_grid_ratio is not None and not (math.isfinite(self.max_grid_ratio) and self.max_grid_ratio >= 0):
            raise ValueError(f"{source}: max_grid_ratio must be a number >= 0 (a multiple of the initial "
                             f"generator's grid residual) or null, got {self.max_grid_ratio}")
        if self.val_images < 1 or self.val_size < 0:
            raise ValueError(f"{source}: val_images must be >= 1 and val_size >= 0, got {self.val_images}, {self.val_size}")


def _hint(key: str, cls=None):
    return typing.get_type_hints(cls or TrainConfig)[key]


_WHAT = {int: "an integer", float: "a number", str: "a string", bool: "true or false", list[str]: "a list of strings",
         list[int]: "a list of integers", dict: "a mapping", tuple[float, float]: "two numbers, e.g. [0.9, 0.999]"}


def from_mapping(cls, data, source: str, nested: dict | None = None):
    """The dataclass ``cls`` from a mapping (a config file's section), every value typed by
    :func:`typed_field`; ``nested``: ``{key: (value, source) -> object}`` for sections of their own.
    One-line ``ValueError`` for a non-mapping, unknown keys (listing the known ones) or a bad value."""
    if not isinstance(data, dict):
        raise ValueError(f"{source}: expected a mapping, got {data!r}")
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(map(str, set(data) - known))
    if unknown:
        raise ValueError(f"{source}: unknown key(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
    nested = nested or {}
    return cls(**{key: nested[key](value, f"{source}: {key}") if key in nested else _typed(key, value, source, cls)
                  for key, value in data.items()})


def typed_field(cls, key: str, value, source: str):
    """``value`` as the type the dataclass ``cls`` declares for field ``key``; else a one-line error
    naming key, value and the expected type (shared by every config dataclass)."""
    return _typed(key, value, source, cls)


def _typed(key: str, value, source: str, cls=None):
    """``value`` as the type the field ``key`` declares; else a one-line error naming key, value and type."""
    hint = _hint(key, cls)
    optional = typing.get_origin(hint) in (typing.Union, types.UnionType)
    if optional:
        if value is None:
            return None
        hint = next(a for a in typing.get_args(hint) if a is not type(None))
    try:
        return _convert(hint, value)
    except (TypeError, ValueError, OverflowError):
        what = _WHAT[hint]
        raise ValueError(f"{source}: {key} must be {what}{' or null' if optional else ''}, got {value!r}") from None


def _convert(hint, value):
    if hint is bool:
        if not isinstance(value, bool):
            raise TypeError
        return value
    if isinstance(value, bool):  # YAML's yes/no/true: never a number or a text here
        raise TypeError
    if hint is int:
        number = float(value)  # also '1e5' (YAML reads it as text) and 100000.0
        if not number.is_integer():
            raise ValueError
        return value if isinstance(value, int) else int(number)
    if hint is float:
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise TypeError
        return value
    if hint == list[str]:
        items = [value] if isinstance(value, str) else value
        if not isinstance(items, list) or not all(isinstance(v, str) for v in items):
            raise TypeError
        return items
    if hint in (list[int], list[float]):
        if not isinstance(value, (list, tuple)):
            raise TypeError
        return [_convert(typing.get_args(hint)[0], v) for v in value]
    if hint is dict:
        if not isinstance(value, dict):
            raise TypeError
        return dict(value)
    if hint == tuple[float, float]:
        if not isinstance(value, (list, tuple)) or len(value) != 2:
            raise TypeError
        return tuple(_convert(float, v) for v in value)
    raise TypeError(f"no conversion for {hint}")
