"""The discriminator search (TPSR, ECCV 2020, Sec. 3.3): the generator search's driver over S_D.

:class:`DiscriminatorSearch` is :class:`tinysr.search.generator.driver.Search` with the discriminator as
its problem: the strategy samples the 10 decisions of
:class:`~tinysr.search.core.space.DiscriminatorSpace`, every candidate is accepted (no Mult-Adds
limit, no latency), there is no weight sharing (:class:`NoWeightStore`), a candidate is
evaluated by E_D (:mod:`tinysr.search.discriminator.proxy`: fine-tune the fixed pre-trained generator
against it, reward ``-min`` of the last three validation LPIPS) on any backend, and its trial
weights are the fine-tuned discriminator (``RUN/trials/cNNNNNN.pt``, loadable with
``tinysr.checkpoint.load_model(path, kind="discriminator")``). Rounds, the run store, the atomic
checkpoint and the resume after a kill (replaying the strategy's stream with the finished trials
as a cache) are the driver's.

The run meta adds ``kind: discriminator``, ``space`` (the space's identity), ``generator`` (the
spec and a sha256 of its weights: a resume with other generator weights is refused),
``lpips_net``, ``eval_every`` and ``reference`` (the registered ``tpsr_d`` genotype). COMPLETE
trials record ``psnr``, ``reward``, ``lpips``, ``lpips_step``, ``lpips_history``, ``train_s``,
``val_s``, ``eval_s``, ``final_losses`` and ``weights``.
"""
from __future__ import annotations

import hashlib

from tinysr.checkpoint import load_model, model_record

from tinysr.search.core import run_store
from tinysr.search.discriminator.config import DiscriminatorSearchConfig
from tinysr.search.generator.driver import Search, _Candidate
from tinysr.search.discriminator.proxy import DiscriminatorJob, _perceptual, lpips_model, reward_of_history
from tinysr.search.core.space import TPSR_D_SPACE


class NoWeightStore:
    """The weight store of a search without weight sharing: every candidate starts afresh."""

    def get(self, genotype) -> None:
        return None

    def offer(self, genotype, state_dict, score) -> bool:
        return False  # nothing is kept: see the class doc

    def state(self) -> None:
        return None

    @classmethod
    def from_state(cls, state, source: str = "weight store") -> "NoWeightStore":
        if state is not None:
            raise ValueError(f"{source}: holds a weight store; a discriminator search shares no weights")
        return cls()


def _sha256(state_dict: dict) -> str:
    h = hashlib.sha256()
    for k, v in state_dict.items():
        h.update(k.encode())
        h.update(v.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


class DiscriminatorSearch(Search):
    """A discriminator search run (see the module doc)."""

    space = TPSR_D_SPACE
    config_class = DiscriminatorSearchConfig
    store_class = NoWeightStore

    def _prepare(self) -> None:
        cfg = self.cfg
        g = load_model(cfg.generator)
        if getattr(g, "scale", cfg.scale) != cfg.scale:
            raise ValueError(f"generator {cfg.generator} is a x{g.scale} network; this search is x{cfg.scale}")
        state = {k: v.detach().clone() for k, v in g.state_dict().items()}
        self.generator = (model_record(g), state)
        self.generator_sha256 = _sha256(state)
        lpips_model(cfg.lpips_net)  # missing weights: one line now, not in every evaluation
        _perceptual(cfg.gan)

    def _new_meta(self) -> dict:
        from tinysr.models.discriminators import DEFAULT_D_GENOTYPE

        cfg = self.cfg
        return {"format": run_store.RUN_FORMAT, "kind": "discriminator", "strategy": cfg.strategy,
                "objectives": ["reward"], "directions": list(self.strategy.directions),
                "space": self.space.identity(), "scale": cfg.scale,
                "generator": {"spec": cfg.generator, "sha256": self.generator_sha256},
                "lpips_net": cfg.lpips_net, "eval_every": cfg.eval_every,
                "d_input_size": cfg.proxy.patch_size * cfg.scale, "data": self.data.fingerprint(),
                "reference": {"genotype": str(DEFAULT_D_GENOTYPE)}, "config": cfg.to_dict()}

    def _resume_meta(self, meta: dict) -> None:
        if meta.get("generator", {}).get("sha256") != self.generator_sha256:
            raise ValueError(f"{self.run_dir}: the generator's weights ({self.cfg.generator}) changed since the run "
                             "started")

    def _new_store(self) -> NoWeightStore:
        return NoWeightStore()

    def _ready(self) -> None:
        self.reward = reward_of_history  # the evaluation applies it; recorded here for the reader

    def _check(self, genotype) -> tuple[bool, str, dict]:
        return True, "", {}  # no constraint on a discriminator

    def _attrs(self, c: _Candidate, round_: int) -> dict:
        return {"candidate": c.number, "round": round_, "genotype": str(c.genotype)}

    def _figures_of(self, rec) -> dict:
        return {}

    def _job(self, c: _Candidate) -> DiscriminatorJob:
        return DiscriminatorJob(str(c.genotype), self.generator, self.cfg.to_dict()["gan"], self.cfg.eval_every,
                                self.cfg.lpips_net)

    def _score(self, c: _Candidate, value) -> dict:
        c.psnr, c.reward, c.state_dict = value.psnr, value.reward, value.state_dict
        return {"psnr": c.psnr, "reward": c.reward, "lpips": value.lpips, "lpips_step": value.step,
                "lpips_history": value.history, "train_s": value.train_s, "val_s": value.val_s,
                "eval_s": value.train_s + value.val_s, "final_losses": value.final_losses}

    def _model(self, c: _Candidate):
        from tinysr.models.discriminators import SearchedDiscriminator

        model = SearchedDiscriminator(c.genotype, input_size=self.cfg.proxy.patch_size * self.cfg.scale,
                                      spectral_norm=self.cfg.gan.spectral_norm)
        model.load_state_dict(c.state_dict)
        return model

    def _best_text(self, b: _Candidate) -> list[str]:
        return [f"best R {b.reward:.4g}", f"LPIPS {-b.reward:.4f}", f"PSNR {b.psnr:.2f}"]

    def summary(self) -> dict:
        out = super().summary()
        if out["best"] is not None:
            out["best"]["lpips"] = -out["best"]["reward"]
        return out


def run_discriminator_search(cfg: DiscriminatorSearchConfig, resume: bool = False, progress: bool = True,
                             backend=None) -> dict:
    """Start (or with ``resume`` continue) the discriminator search of ``cfg``; returns the run's summary."""
    return DiscriminatorSearch(cfg, resume=resume, progress=progress).run(backend)
