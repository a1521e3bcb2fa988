"""Proof that the learning checks bite: every check passes on the library and fails on each broken
implementation of the same thing (tests/broken_variants.py, named after the bug)."""
import pytest

import tinygrad_llm as tgl
import tinygrad_llm.autograd as autograd
from tinygrad_llm.nn import functional as F

import broken_variants as broken
import learning_checks as checks

# The broken variants overflow on purpose (that is how they are caught); their NumPy warnings are expected.
pytestmark = [pytest.mark.broken, pytest.mark.filterwarnings("ignore::RuntimeWarning")]

# (check, the library's implementation, [broken implementations the check must catch])
CASES = [
    (checks.check_softmax, F.softmax, [broken.softmax_without_max_subtraction, broken.softmax_over_wrong_axis]),
    (checks.check_log_softmax, F.log_softmax, [broken.log_softmax_as_log_of_softmax]),
    (checks.check_cross_entropy, F.cross_entropy, [broken.cross_entropy_summed_not_averaged]),
    (checks.check_cross_entropy_ignores_padding, F.cross_entropy, [broken.cross_entropy_without_ignore_index]),
    (checks.check_broadcast_add_gradient, lambda a, b: a + b, [broken.add_without_broadcast_reduction]),
    (checks.check_matmul, lambda a, b: a @ b, [broken.matmul_backward_wrong_transpose]),
    (checks.check_activation_gradient, F.gelu, [broken.gelu_with_relu_derivative]),
    (checks.check_layer_norm, F.layer_norm, [broken.layer_norm_with_unbiased_variance]),
    (checks.check_dropout, F.dropout, [broken.dropout_without_rescaling]),
    (checks.check_sgd, tgl.optim.SGD, [broken.SGDMomentumBeforeWeightDecay]),
    (checks.check_adam, tgl.optim.Adam, [broken.AdamWithoutBiasCorrection]),
    (checks.check_adamw, tgl.optim.AdamW, [broken.AdamWWithL2FoldedIntoGradient]),
    (checks.check_clip_grad_norm, tgl.optim.clip_grad_norm_, [broken.clip_grad_norm_per_tensor]),
]

PASSING = [pytest.param(check, impl, id=check.__name__) for check, impl, _ in CASES]
BROKEN = [pytest.param(check, bug, id=f"{check.__name__}-catches-{bug.__name__}") for check, _, bugs in CASES for bug in bugs]


@pytest.mark.parametrize("check, implementation", PASSING)
def test_check_passes_on_the_library(check, implementation):
    check(implementation)


@pytest.mark.parametrize("check, broken_implementation", BROKEN)
def test_check_catches_the_broken_variant(check, broken_implementation):
    with pytest.raises(Exception):
        check(broken_implementation)


def test_reused_tensor_check_passes_on_the_library():
    checks.check_reused_tensor_gradient()


def test_reused_tensor_check_catches_an_engine_that_overwrites_gradients(monkeypatch):
    monkeypatch.setattr(autograd, "accumulate", broken.accumulate_overwrites)
    with pytest.raises(Exception):
        checks.check_reused_tensor_gradient()


def test_there_are_at_least_twelve_broken_variants():
    assert len(BROKEN) + 1 >= 12
