"""The generator search (TPSR, ECCV 2020, Sec. 3.2; Algorithm 1, generator part): the reward with
latency targets (:mod:`~tinysr.search.generator.reward`), the proxy task of a candidate cell
(:mod:`~tinysr.search.generator.proxy`), weight sharing (Eq. 5:
:mod:`~tinysr.search.generator.weight_store`), its config (:mod:`~tinysr.search.generator.config`)
and the driver whose rounds, records, checkpoint and resume the discriminator search reuses
(:mod:`~tinysr.search.generator.driver`)."""
