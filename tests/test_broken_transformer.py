"""Proof that the attention and GPT learning checks bite: each passes on the library and fails on every broken
variant it is meant to catch (tests/broken_transformer.py, named after the bug)."""
from functools import partial

import pytest
from hypothesis import Phase, settings

from tinygrad_llm import nn

import broken_transformer as broken
import test_attention_layers as attention_checks
import test_gpt as gpt_checks

# The broken variants produce saturated or fully masked softmaxes on purpose; their warnings are expected.
pytestmark = [pytest.mark.broken, pytest.mark.filterwarnings("ignore::RuntimeWarning")]

# (check, the library's class, [broken classes the check must catch])
CASES = [
    (attention_checks.check_matches_naive_attention, nn.MultiHeadAttention,
     [broken.AttentionWithoutScaling, broken.AttentionWithHeadsSplitAcrossTokens,
      broken.AttentionWithCausalMaskOffByOne, broken.AttentionWithSoftmaxOverQueries]),
    (attention_checks.check_single_head_identity, nn.MultiHeadAttention,
     [broken.AttentionWithoutScaling, broken.AttentionWithHeadsSplitAcrossTokens]),
    (attention_checks.check_causal_attention, nn.MultiHeadAttention,
     [broken.AttentionWithCausalMaskOffByOne, broken.AttentionWithSoftmaxOverQueries]),
] + [
    (partial(gpt_checks.check_cached_decoding, positions=positions), nn.GPT,
     [broken.GPTNewTokensAtPositionZero, broken.GPTNewTokensAtLastCachedPosition])
    for positions in gpt_checks.POSITIONS
]


@pytest.fixture(autouse=True)
def no_shrinking():
    """A broken variant fails on nearly every example. Shrinking the failure to a minimal one would cost
    minutes of GPT forward passes, and the proof needs only that it fails."""
    previous = settings.get_current_profile_name()
    settings.register_profile("broken-no-shrink", parent=settings.get_profile(previous),
                              phases=[Phase.explicit, Phase.reuse, Phase.generate])
    settings.load_profile("broken-no-shrink")
    yield
    settings.load_profile(previous)


def _name(check):
    return f"{check.func.__name__}-{check.keywords['positions']}" if isinstance(check, partial) else check.__name__


PASSING = [pytest.param(check, cls, id=_name(check)) for check, cls, _ in CASES]
BROKEN = [pytest.param(check, bug, id=f"{_name(check)}-catches-{bug.__name__}") for check, _, bugs in CASES for bug in bugs]


@pytest.mark.parametrize("check, implementation", PASSING)
def test_check_passes_on_the_library(check, implementation):
    check(implementation)


@pytest.mark.parametrize("check, broken_implementation", BROKEN)
def test_check_catches_the_broken_variant(check, broken_implementation):
    with pytest.raises(AssertionError):
        check(broken_implementation)


def test_every_broken_variant_is_caught_by_some_check():
    kept = {value for name, value in vars(broken).items() if isinstance(value, type) and not name.startswith("_")}
    assert kept == {bug for _, _, bugs in CASES for bug in bugs}
