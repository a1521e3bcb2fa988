"""Learning checks for greedy and beam search (Q14, Q19): what they return, how they relate, and where
beam search is only a heuristic."""
import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import tinygrad_llm as tgl
from tinygrad_llm import nn
from tinygrad_llm.generation import beam_search, greedy_decode, length_penalty_factor, sequence_log_prob
from tinygrad_llm.nn.seq2seq_model import EncodedSource, Seq2SeqCache, Seq2SeqModel
from tinygrad_llm.tensor import Tensor

pytestmark = pytest.mark.seq2seq

PAD, BOS, EOS = 0, 1, 2
TOKENS = dict(bos_id=BOS, eos_id=EOS)
seeds = st.integers(0, 2**31 - 1)


def peaked_model(kind: str, seed: int, vocab: int = 7, scale: float = 1.5):
    """A random model whose next-token distributions are peaked (N(0, scale) weights) so that EOS comes early."""
    tgl.manual_seed(seed)
    model = (nn.TransformerEncoderDecoder(vocab, 6, 8, embed_dim=8, num_heads=2, num_encoder_layers=1,
                                          num_decoder_layers=1, mlp_ratio=2) if kind == "transformer"
             else nn.RecurrentEncoderDecoder(vocab, "gru", embed_dim=6, hidden_dim=8)).double()
    rng = np.random.default_rng(seed)
    for p in model.parameters():
        p.data[...] = rng.normal(0, scale, p.shape)
    return model


def random_sources(seed: int, batch: int = 3, length: int = 5, vocab: int = 7):
    rng = np.random.default_rng(seed)
    source = rng.integers(3, vocab, (batch, length))
    padding = np.arange(length)[None, :] >= rng.integers(1, length + 1, batch)[:, None]
    return np.where(padding, PAD, source), padding


@pytest.mark.parametrize("kind", ["transformer", "gru"])
@given(seed=seeds)
@settings(max_examples=10)
def test_beam_of_width_one_is_greedy_search(kind, seed):
    model = peaked_model(kind, seed % 10_000)
    source, padding = random_sources(seed)
    greedy = greedy_decode(model, source, padding, max_length=8, **TOKENS)
    beam = beam_search(model, source, padding, beam_width=1, max_length=8, **TOKENS)
    assert beam.tokens == greedy.tokens
    np.testing.assert_allclose(beam.scores, greedy.scores, atol=1e-9)
    assert (beam.finished == greedy.finished).all()


@pytest.mark.parametrize("kind", ["transformer", "gru"])
@given(seed=seeds, width=st.integers(1, 5))
@settings(max_examples=10)
def test_reported_scores_are_the_teacher_forced_log_probabilities(kind, seed, width):
    """The score of a finished output equals log p(tokens + EOS | source) computed in one teacher-forced pass,
    so the step-by-step search and the cache did their bookkeeping right."""
    model = peaked_model(kind, seed % 10_000)
    source, padding = random_sources(seed)
    for decoded in (greedy_decode(model, source, padding, max_length=8, **TOKENS),
                    beam_search(model, source, padding, beam_width=width, max_length=8, **TOKENS)):
        assert all(EOS not in tokens for tokens in decoded.tokens)
        done = np.flatnonzero(decoded.finished)
        if len(done):
            direct = sequence_log_prob(model, source[done], [decoded.tokens[i] for i in done], padding[done], **TOKENS)
            np.testing.assert_allclose(decoded.scores[done], direct, atol=1e-9)


@given(seed=seeds)
@settings(max_examples=10)
def test_a_beam_holding_every_prefix_finds_the_most_probable_sequence(seed):
    """Exhaustive search over every sequence of up to 3 tokens (vocab 4 + EOS) vs a beam of width 4 ** 2:
    the beam never drops a prefix, so it returns the argmax, which is at least as probable as greedy's output."""
    vocab, max_length = 5, 3
    model = peaked_model("gru", seed % 10_000, vocab=vocab, scale=1.0)
    source, padding = random_sources(seed, batch=1, vocab=vocab)
    words = range(vocab)
    candidates = [list(c) for n in range(max_length) for c in itertools.product(words, repeat=n) if EOS not in c]
    scores = sequence_log_prob(model, np.repeat(source, len(candidates), 0), candidates,
                               np.repeat(padding, len(candidates), 0), **TOKENS)
    beam = beam_search(model, source, padding, beam_width=vocab ** 2, max_length=max_length, **TOKENS)
    greedy = greedy_decode(model, source, padding, max_length=max_length, **TOKENS)
    if beam.finished[0]:
        assert beam.scores[0] == pytest.approx(scores.max(), abs=1e-9)
    assert beam.scores[0] >= greedy.scores[0] - 1e-9 or not greedy.finished[0]


class PrefixTableCache(Seq2SeqCache):
    def __init__(self, batch_size):
        super().__init__(batch_size)
        self.prefixes = [[] for _ in range(batch_size)]

    def reorder(self, rows):
        self.prefixes = [list(self.prefixes[r]) for r in rows]
        self.batch_size = len(rows)


class PrefixTableModel(Seq2SeqModel):
    """A 'model' whose next-token distribution is looked up by the prefix (the source is ignored); any prefix
    not in the table ends with certainty. Built to show a case where beam search loses to greedy."""

    vocab_size = 6  # PAD, BOS, EOS, a=3, b=4, c=5

    def __init__(self, table):
        self.table = table

    def encode(self, source, source_padding=None):
        source, padding = self.check_source(source, source_padding)
        return EncodedSource(Tensor(np.zeros(source.shape + (1,))), padding)

    def new_cache(self, encoded):
        return PrefixTableCache(encoded.batch_size)

    def decode(self, decoder_input, encoded, cache=None):
        ids = self.check_decoder_input(decoder_input, encoded, cache)
        prefixes = cache.prefixes if cache is not None else [[] for _ in ids]
        rows = []
        for prefix, row in zip(prefixes, ids):
            out = []
            for token in row:
                if token != BOS:
                    prefix.append(int(token))
                probabilities = np.full(self.vocab_size, 1e-12)
                for next_token, p in self.table.get(tuple(prefix), {EOS: 1.0}).items():
                    probabilities[next_token] = p
                out.append(np.log(probabilities))
            rows.append(out)
        if cache is not None:
            cache.length += ids.shape[1]
        return Tensor(np.array(rows))


def test_a_wider_beam_can_end_below_greedy():
    """Beam search is not exact search. Greedy: a (0.4), then a (0.34), then EOS (1.0): p = 0.136. A beam of 2
    keeps a and b; after b every next token is likely (0.5), so b-a and b-b push greedy's a-a out, and then they
    barely end: the best beam has p = 0.175 * 0.98 / 3 = 0.057 < 0.136. A beam of 3 also keeps c, which ends at
    once with p = 0.25: better than both, so quality is not even monotonic in the width."""
    a, b, c = 3, 4, 5
    spread = {EOS: 0.02, a: 0.98 / 3, b: 0.98 / 3, c: 0.98 / 3}
    table = {(): {a: 0.4, b: 0.35, c: 0.25}, (a,): {a: 0.34, b: 0.33, c: 0.33}, (b,): {a: 0.5, b: 0.5},
             (a, a): {EOS: 1.0}, (b, a): spread, (b, b): spread}
    model = PrefixTableModel(table)
    source = np.array([[3]])
    greedy = greedy_decode(model, source, max_length=5, **TOKENS)
    beam = beam_search(model, source, beam_width=2, max_length=5, **TOKENS)
    assert greedy.tokens == [[a, a]] and np.exp(greedy.scores[0]) == pytest.approx(0.4 * 0.34)
    assert beam.tokens[0][:2] == [b, a] and np.exp(beam.scores[0]) == pytest.approx(0.35 * 0.5 * 0.98 / 3)
    assert beam.scores[0] < greedy.scores[0]
    wider = beam_search(model, source, beam_width=3, max_length=5, **TOKENS)   # keeps c, which ends at once
    assert wider.tokens == [[c]] and np.exp(wider.scores[0]) == pytest.approx(0.25)


def test_eos_ends_a_hypothesis_and_max_length_cuts_one_that_never_ends():
    a = 3
    model = PrefixTableModel({(): {a: 0.9, EOS: 0.1}, (a,): {EOS: 0.6, a: 0.4}})
    source = np.array([[3], [4]])
    for decoded in (greedy_decode(model, source, max_length=4, **TOKENS),
                    beam_search(model, source, beam_width=3, max_length=4, **TOKENS)):
        assert decoded.tokens == [[a], [a]] and decoded.finished.all()
    forever = PrefixTableModel({prefix: {a: 1.0} for prefix in [(), (a,), (a, a), (a, a, a)]})
    cut = beam_search(forever, source[:1], beam_width=2, max_length=3, **TOKENS)
    assert cut.tokens == [[a, a, a]] and not cut.finished[0]


def test_length_penalty_changes_the_ranking():
    a, b = 3, 4
    model = PrefixTableModel({(): {a: 0.3, b: 0.7}, (a,): {EOS: 1.0}, (b,): {a: 0.4, b: 0.3, EOS: 0.3},
                              (b, a): {EOS: 1.0}, (b, b): {EOS: 1.0}})
    source = np.array([[3]])
    _, beams, scores = beam_search(model, source, beam_width=3, max_length=4, return_all=True, **TOKENS)
    # finished: [a] 0.30, [b, a] 0.28, [b] 0.21, [b, b] 0.21: raw ranking puts [a] first
    assert beams[0][0] == [a]
    long_first = beam_search(model, source, beam_width=3, max_length=4, length_penalty=1.0, **TOKENS)
    assert long_first.tokens == [[b, a]]
    assert np.all(np.diff(scores[0]) <= 0)
    # lp(n) = ((5 + n) / 6) ** alpha with n counting EOS: [a] -1.204 / (7/6) = -1.032 < [b, a] -1.273 / (8/6) = -0.955
    np.testing.assert_allclose(length_penalty_factor([2, 3], 1.0), [7 / 6, 8 / 6])
    assert length_penalty_factor([1, 5], 0.0).tolist() == [1.0, 1.0]


@pytest.mark.parametrize("kind", ["transformer", "gru"])
def test_batched_search_equals_one_source_at_a_time(kind):
    model = peaked_model(kind, 11)
    source, padding = random_sources(11, batch=4)
    together = beam_search(model, source, padding, beam_width=3, max_length=8, **TOKENS)
    for row in range(4):
        alone = beam_search(model, source[row:row + 1], padding[row:row + 1], beam_width=3, max_length=8, **TOKENS)
        assert alone.tokens[0] == together.tokens[row]
        assert alone.scores[0] == pytest.approx(together.scores[row], abs=1e-9)


def test_decoding_bad_arguments():
    model = peaked_model("transformer", 0)
    rnn = peaked_model("gru", 0)
    source, padding = random_sources(0)
    with pytest.raises(ValueError, match="beam_width must be a positive integer"):
        beam_search(model, source, padding, beam_width=0, **TOKENS)
    with pytest.raises(ValueError, match="exceeds the model's max_target_length=8"):
        greedy_decode(model, source, padding, max_length=9, **TOKENS)
    with pytest.raises(ValueError, match="no target length limit; pass max_length"):
        beam_search(rnn, source, padding, **TOKENS)
    with pytest.raises(ValueError, match="3 sources"):
        sequence_log_prob(model, source, [[3]], padding, **TOKENS)
