"""tinysr: tiny perceptual super-resolution networks, from search to phones."""
__version__ = "0.1.0"
