"""The configuration of a discriminator search (:class:`DiscriminatorSearchConfig`): the run fields
of :class:`tinysr.search.core.config.ConfigFile` and the GAN fine-tuning of its proxy task."""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass

from tinysr.search.core.config import ConfigFile, _proxy
from tinysr.train.config import GanConfig, from_mapping


#: Generator-search fields a discriminator search has no use for (no Mult-Adds limit, no latency).
GENERATOR_ONLY = ("n_feats", "input_size", "max_mult_adds", "latency", "psnr_min", "psnr_max", "alpha", "beta")
#: Strategies of a (single-objective) discriminator search.
D_STRATEGIES = ("reinforce", "random")


#: GanConfig fields a discriminator search sets itself (and leaves out of its config record).
GAN_FIXED = ("discriminator", "d_genotype", "val_images", "val_size", "val_lpips_net")


def _gan(value, source: str) -> GanConfig:
    if isinstance(value, dict):
        fixed = sorted(set(value) & set(GAN_FIXED))
        if fixed:
            raise ValueError(f"{source}: {', '.join(fixed)} cannot be set in a discriminator search (the candidates "
                             "are the discriminators; validation comes from the proxy section, LPIPS from lpips_net)")
    return GanConfig.from_dict(value, source)


@dataclass
class DiscriminatorSearchConfig(ConfigFile):
    """A discriminator search (``tinysr search discriminator``), TPSR Sec. 3.3: the generator search's
    run fields (``run_dir``, ``storage``, ``seed``, ``scale``, ``strategy``, ``strategy_options``,
    ``evaluations``, ``max_candidates``, ``round_size``, ``proxy``, ``backend``, ``workers``,
    ``threads``, ``address``: as in the module doc) and::

        generator: tpsr_x4        # the fixed pre-trained generator: a checkpoint or a model with bundled weights
        gan: {recipe: tpsr, ...}  # GAN fine-tuning (tinysr.train.config.GanConfig fields; recipe defaults)
        eval_every: 20            # validation LPIPS every this many steps (and at the end)
        lpips_net: vgg            # vgg (the paper's) | alex: the LPIPS of the reward

    The proxy section's ``lr`` / ``lr_min`` are G's Adam rate and cosine floor in the fine-tuning,
    ``gan.d_lr`` D's; ``proxy.patch_size * scale`` is the discriminator's input side (a multiple of
    32). The reward is ``-min`` of the last three validation LPIPS (:mod:`tinysr.search.discriminator.proxy`);
    no constraints, no weight sharing; strategies ``reinforce`` or ``random``.
    """

    run_dir: str = "runs/search-d"
    evaluations: int = 20
    round_size: int = 2
    generator: str = "tpsr_x4"
    gan: GanConfig | None = None  # the tpsr recipe when not given
    eval_every: int = 20
    lpips_net: str = "vgg"

    @classmethod
    def from_dict(cls, data: dict, source: str = "search config") -> "DiscriminatorSearchConfig":
        if isinstance(data, dict):
            wrong = [k for k in GENERATOR_ONLY if k in data]
            if wrong:
                raise ValueError(f"{source}: {', '.join(wrong)} belong to a generator search; a discriminator search "
                                 "has no Mult-Adds limit or latency targets")
        cfg = from_mapping(cls, data, source, {"proxy": _proxy, "gan": _gan})
        if cfg.gan is None:
            cfg.gan = _gan({}, f"{source}: gan")
        cfg.validate(source)
        return cfg

    def to_dict(self) -> dict:
        out = dataclasses.asdict(dataclasses.replace(self, gan=None))
        out["gan"] = {k: v for k, v in dataclasses.asdict(self.gan).items() if k not in GAN_FIXED}
        return json.loads(json.dumps(out))

    def validate(self, source: str = "search config"):
        self._validate_run(source)
        if self.strategy not in D_STRATEGIES:
            raise ValueError(f"{source}: a discriminator search has one objective (the reward): strategy must be "
                             f"{' or '.join(D_STRATEGIES)}, got {self.strategy!r}")
        if self.eval_every < 1:
            raise ValueError(f"{source}: eval_every must be at least 1, got {self.eval_every}")
        if self.lpips_net not in ("vgg", "alex"):
            raise ValueError(f"{source}: lpips_net must be vgg or alex, got {self.lpips_net!r}")
        side = self.proxy.patch_size * self.scale
        if side % 32:
            raise ValueError(f"{source}: the discriminator's input (proxy.patch_size x scale = {side} px) must be a "
                             "multiple of 32 (its 5 reductions halve it 5 times)")
        if self.proxy.lr_min > self.gan.d_lr:
            raise ValueError(f"{source}: proxy.lr_min {self.proxy.lr_min} exceeds gan.d_lr {self.gan.d_lr} "
                             "(both nets' cosine schedules end at lr_min)")
