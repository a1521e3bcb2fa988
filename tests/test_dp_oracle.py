"""Our RDP accountant against Opacus's (the reference implementation of DP-SGD accounting for PyTorch):
the same epsilon within 1% on the same (sample rate, sigma, steps, delta, orders). Skips without Opacus."""
import pytest

from tinygrad_llm.responsible.rdp_accountant import DEFAULT_ORDERS, RDPAccountant

opacus_accountants = pytest.importorskip("opacus.accountants")

pytestmark = [pytest.mark.responsible, pytest.mark.oracle]


@pytest.mark.parametrize("sample_rate, sigma, steps, delta", [
    (256 / 60000, 1.1, 14040, 1e-5),  # Opacus's and TF Privacy's MNIST setting, 60 epochs
    (0.01, 1.0, 1000, 1e-5),
    (0.004, 4.0, 100, 1e-6),
    (0.1, 0.8, 50, 1e-5),
    (0.5, 2.0, 20, 1e-3),
])
def test_epsilon_agrees_with_opacus_within_one_percent(sample_rate, sigma, steps, delta):
    ours = RDPAccountant()
    theirs = opacus_accountants.RDPAccountant()
    ours.step(sample_rate, sigma, steps=steps)
    for _ in range(steps):
        theirs.step(noise_multiplier=sigma, sample_rate=sample_rate)
    expected = theirs.get_epsilon(delta, alphas=list(DEFAULT_ORDERS))  # Opacus's defaults add fractional orders
    assert ours.epsilon(delta) == pytest.approx(expected, rel=0.01)
