"""Parameter: a tensor that a Module registers as learnable (always float, always requires_grad)."""
import numpy as np

from ..dtypes import is_floating
from ..tensor import DEFAULT_FLOAT, Tensor


class Parameter(Tensor):
    def __init__(self, data, requires_grad: bool = True):
        data = data.data if isinstance(data, Tensor) else data
        array = np.array(data)
        if not is_floating(array.dtype):
            array = array.astype(DEFAULT_FLOAT)
        super().__init__(array, requires_grad=requires_grad)

    def __repr__(self):
        return "Parameter containing:\n" + super().__repr__()
