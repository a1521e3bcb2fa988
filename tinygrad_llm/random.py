"""One seeded random generator for the whole library: `tgl.manual_seed(0)` fixes initialisation,
dropout masks, data order and sampling at once, so a run can be repeated exactly."""
import numpy as np

_generator = np.random.default_rng(0)


def manual_seed(seed: int) -> np.random.Generator:
    global _generator
    _generator = np.random.default_rng(seed)
    return _generator


def generator() -> np.random.Generator:
    """The library's current generator (read it at call time: manual_seed replaces it)."""
    return _generator
