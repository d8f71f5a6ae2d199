"""Architecture search: four rooms, one subpackage each.

``tinysr.search.core``
    What the searches share: the spaces as decisions, the strategies (and their registry), the
    Optuna run store and its report, the backends, the config fields of a run.
``tinysr.search.generator``
    The TPSR generator search (ECCV 2020, Sec. 3.2): reward with latency targets, proxy task,
    weight sharing, config and the driver (rounds, records, checkpoint, resume).
``tinysr.search.discriminator``
    The TPSR discriminator search (Sec. 3.3) on the generator search's driver.
``tinysr.search.trilevel``
    The differentiable trilevel search (sparsestmax, the supernet, the run).

Imports run one way: core below the three searches (the discriminator search reuses the
generator's driver); :mod:`tinysr.data.proxy` (the held-out proxy data) below all of them and below
:mod:`tinysr.train`. ``import tinysr.search`` imports neither Optuna nor Ray; the names below are
the library's public API.

A search repeats: a *strategy* proposes decision vectors of the generator space; each is
decoded to a :class:`~tinysr.genotype.Genotype`; *constraints* reject candidates over the
Mult-Adds limit (or a hard latency budget) before any training; an accepted candidate is built,
initialised from the *weight store*, trained, scored, offered back to the store, and its
*reward* told to the strategy. A driver, its run store and the CLI are built on these pieces::

    from tinysr.models.tpsr import CellSR
    from tinysr.search import (TPSR_SPACE, Constraints, LatencyTarget, Reward, WeightStore,
                               make_strategy)

    constraints = Constraints(max_mult_adds=4e9, targets=[      # limits of this example run
        LatencyTarget.from_profile("epyc", 80.0, "profiles/host-amd-epyc-litert-1t.json")])
    # PSNR_norm: 0 at the bicubic PSNR of the validation set, 1 at a reference network's
    reward = Reward.for_constraints(constraints, psnr_min=bicubic_psnr, psnr_max=reference_psnr)
    strategy = make_strategy("reinforce", seed=0)
    store = WeightStore(scale=4, n_feats=16)
    for decisions in strategy.ask(4):
        genotype = TPSR_SPACE.decode(decisions)
        ok, reason, figures = constraints.check(genotype)   # figures recorded either way
        if not ok:
            strategy.tell([(decisions, None)])                # rejected: see strategies' doc
            continue
        model = store.init_model(CellSR(genotype, 4, 16))
        psnr = train_and_validate(model)                      # the driver's training
        store.offer(genotype, model.state_dict(), psnr)       # Eq. 5
        strategy.tell([(decisions, reward(psnr, figures))])
    checkpoint = strategy.state_dict()                        # JSON-ready; exact resume

Modules:

:mod:`tinysr.search.core.space`
    The paper's space S_G = Op x Z_1 x ... x Op x Z_10 as 20 integer decisions
    ``(op_0, src_0, ..., op_9, src_9)`` (``src_i``: 0 = cell input, ``j + 1`` = node ``j``), the
    same as named parameters (``op_i`` = operation name, ``src_i`` = ``"in"`` or ``"j"``),
    encode / decode / validate, :func:`space_size` (``16**10 * 10!``) and uniform sampling
    with a ``numpy.random.Generator``.

:mod:`tinysr.search.generator.reward`
    :class:`Constraints` (Mult-Adds limit, latency targets; Mult-Adds and latency are injected
    ``genotype -> float`` callables, by default :func:`tinysr.models.tpsr.mult_adds` and
    latency-table predictions), ``check(genotype) -> (ok, reason, figures)``, and
    :class:`Reward`, MnasNet's ``PSNR_norm * prod_t (LAT_t / T_t) ** w_t`` (``w = alpha`` under
    budget, ``beta`` over; defaults -0.07 / -0.07; ``alpha = 0, beta = -1`` is the near-hard
    form). ``PSNR_norm = (psnr - psnr_min) / (psnr_max - psnr_min)`` clamped at 0; by default
    the raw PSNR in dB (the paper's reward without latency targets). With latency targets use
    ``psnr_min`` = the bicubic PSNR of the validation set and ``psnr_max`` = a reference
    network's: the normalisation sets the exchange rate between dB and latency.

:mod:`tinysr.search.core.strategies`
    ``ask(n)`` / ``tell(results)`` / ``state_dict()`` / ``load_state_dict()``. ``random``
    (uniform: the baseline) and ``reinforce`` (REINFORCE over independent per-decision logits,
    moving-average baseline, entropy bonus, one Adam update per ``batch_size`` results;
    rejected candidates enter with the worst accepted reward seen so far by default). The
    learning rate and batch size defaults are tuned on the surrogate benchmark in
    ``tests/test_search_core.py`` (ENAS-pytorch's lr 3.5e-4 leaves the policy near uniform within
    a few thousand samples); baseline decay and entropy weight are ENAS-pytorch's. A strategy
    declares its ``objectives`` / ``directions``: one maximised reward by default; the
    multi-objective ``nsga2`` and ``tpe`` take ``(psnr, latency)`` per result and keep no single
    best.

:mod:`tinysr.search.core.optuna_strategy`
    ``nsga2`` (:class:`NSGA2Strategy`, Optuna's NSGA-II) and ``tpe`` (:class:`TPEStrategy`,
    Optuna's multi-objective TPE) over ``(psnr, latency)`` (maximise / minimise), for the whole
    Pareto front (``pareto_front()``) rather than one latency budget. An in-memory Optuna study
    per strategy, separate from any run store; exact resume from the JSON state (every trial,
    the samplers' system attributes, and per-ask samplers seeded from the checkpointed
    generator). Needs ``optuna`` when built, not when imported.

:mod:`tinysr.search.generator.weight_store`
    :class:`WeightStore`: weights per (node, operation), replaced by a trained candidate's only
    if its score beats every earlier candidate that used that operation at that node (Eq. 5;
    ties keep the earlier weights); the skeleton comes from the best candidate so far. Builds
    ``CellSR`` state dicts that load with ``strict=True``; saves atomically.

:mod:`tinysr.search.generator.proxy`
    The proxy task: :class:`ProxyTask` (patch size, steps, batch, learning rate, held-out
    validation images), :class:`ProxyData` (decoded once per worker; deterministic batches),
    :func:`train_steps` (L1 training on any iterable of batches, in-memory data included),
    :func:`validation_psnr`, :func:`bicubic_psnr`, :func:`evaluate_candidate`.

:mod:`tinysr.search.generator.config`, :mod:`tinysr.search.generator.driver`, :mod:`tinysr.search.core.backends`
    (and :mod:`tinysr.search.core.config`, :mod:`tinysr.search.core.registry`)
    The search run: :class:`~tinysr.search.generator.config.SearchConfig` (one YAML file),
    :func:`~tinysr.search.generator.driver.run_search` (rounds of ask / constraint check / parallel
    evaluation / Eq. 5 offers / tell / atomic checkpoint; exact resume after a kill) and the
    backends that evaluate (in-process, local process pool, Ray).

:mod:`tinysr.search.discriminator.proxy`, :mod:`tinysr.search.discriminator.search`
    The discriminator search on the same machinery: :class:`~tinysr.search.core.space.DiscriminatorSpace`
    (the 10 decisions of :class:`~tinysr.models.discriminators.DiscriminatorGenotype`, named
    ``op_b`` / ``rop_b``), E_D (:func:`~tinysr.search.discriminator.proxy.evaluate_discriminator`: GAN
    fine-tuning of a fixed pre-trained generator with the candidate, reward ``-min`` of the last
    three validation LPIPS), :class:`~tinysr.search.discriminator.search.DiscriminatorSearch` (the driver's
    rounds, run store, backends and resume; no constraints, no weight sharing) and
    :class:`~tinysr.search.discriminator.config.DiscriminatorSearchConfig`.

:mod:`tinysr.search.core.run_store`, :mod:`tinysr.search.core.report`
    The run store (one Optuna study per run, its schema written once) and what reads it:
    leaderboard, Pareto-front and reward plots, export of a candidate as a checkpoint.
"""
from tinysr.data.proxy import ProxyData, ProxyTask, bicubic_psnr, validation_psnr
from tinysr.search.core.optuna_strategy import NSGA2Strategy, OptunaStrategy, TPEStrategy
from tinysr.search.core.registry import STRATEGIES, make_strategy
from tinysr.search.core.space import (CELL_INPUT_PARAM, TPSR_D_SPACE, TPSR_PLUS_SPACE, TPSR_SPACE, DiscriminatorSpace,
                                      GeneratorSpace, PlusSpace, decode, encode, space_size)
from tinysr.search.core.strategies import (DEFAULT_LR, ENAS_PYTORCH_LR, EvolutionStrategy, RandomStrategy, ReinforceStrategy,
                                          Strategy)
from tinysr.search.generator.proxy import ProxyResult, evaluate_candidate, train_steps
from tinysr.search.generator.reward import Constraints, LatencyTarget, Reward, default_mult_adds, mnas_factor
from tinysr.search.generator.weight_store import PlusWeightStore, WeightStore

__all__ = [
    "CELL_INPUT_PARAM", "TPSR_SPACE", "GeneratorSpace", "decode", "encode", "space_size",
    "TPSR_PLUS_SPACE", "PlusSpace", "PlusWeightStore",
    "TPSR_D_SPACE", "DiscriminatorSpace",
    "Constraints", "LatencyTarget", "Reward", "default_mult_adds", "mnas_factor",
    "DEFAULT_LR", "ENAS_PYTORCH_LR", "STRATEGIES", "EvolutionStrategy", "RandomStrategy", "ReinforceStrategy", "Strategy", "make_strategy",
    "NSGA2Strategy", "OptunaStrategy", "TPEStrategy",
    "WeightStore",
    "ProxyData", "ProxyResult", "ProxyTask", "bicubic_psnr", "evaluate_candidate", "train_steps", "validation_psnr",
]
