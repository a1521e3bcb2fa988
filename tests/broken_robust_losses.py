"""A deliberately broken robust loss, named after its bug; test_robust_losses.py proves that its checks catch it."""
from tinygrad_llm.nn.functional import _reduce
from tinygrad_llm.tensor import where


def huber_loss_constant_outside_delta(prediction, target, delta: float = 1.0, reduction: str = "mean"):
    """M56: 0.5 e^2 inside delta and the constant delta outside. The loss jumps at |e| = delta (from delta^2 / 2
    to delta), and every error beyond delta gets a gradient of 0, so a fit that starts far away never moves."""
    error = (prediction - prediction._operand(target)).abs()
    return _reduce(where(error.data <= delta, 0.5 * error * error, delta), reduction, "huber_loss")  # BUG: constant
