"""The discriminator search (TPSR, Sec. 3.3) on the generator search's driver: E_D, GAN fine-tuning
of a fixed generator with each candidate discriminator (:mod:`~tinysr.search.discriminator.proxy`),
its config (:mod:`~tinysr.search.discriminator.config`) and the search
(:mod:`~tinysr.search.discriminator.search`)."""
