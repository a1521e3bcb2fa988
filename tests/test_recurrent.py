"""Learning checks for the recurrent cells, layers and language model (Q08, Q09; M20-M22).

What they pin down:
- each cell and a 2-layer stack backpropagate correctly (float64 gradient checks) and equal PyTorch's
  RNN/LSTM/GRU with the same weights, values and gradients (oracle);
- running a sequence in chunks with the state carried over equals running it whole, and detach_state
  stops the gradient at the chunk boundary (truncated BPTT);
- a sample's outputs depend only on that sample: the check that catches swapped batch and time axes (M22);
- the language model is causal, cached token-by-token decoding equals the full forward pass, its initial
  loss is ln V, and it learns;
- gating keeps gradients alive over 50 steps where a tanh RNN's vanish (Q09).
"""
import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import tinygrad_llm as tgl
from tinygrad_llm import nn
from tinygrad_llm.nn import functional as F
from tinygrad_llm.nn.recurrent_layers import detach_state
from tinygrad_llm.nn.rnn_cells import map_state, state_parts
from tinygrad_llm.testing import gradcheck

pytestmark = pytest.mark.lm

CELLS = [nn.RNNCell, nn.LSTMCell, nn.GRUCell]
LAYERS = [nn.RNN, nn.LSTM, nn.GRU]
KINDS = ["rnn", "lstm", "gru"]


def leaf(array) -> tgl.Tensor:
    return tgl.tensor(np.array(array, dtype=np.float64), requires_grad=True)


def random_state(layer, batch, rng, dtype=np.float64):
    """An initial state in the layer's format: (num_layers, B, H), or a pair of them for the LSTM."""
    parts = [tgl.tensor(rng.standard_normal((layer.num_layers, batch, layer.hidden_size)).astype(dtype), requires_grad=True)
             for _ in layer.cell_class.state_names]
    return layer.cell_class.pack_state(parts)


def flat(state) -> tgl.Tensor:
    """All tensors of a state side by side, so one gradient check or comparison covers h and c."""
    return tgl.cat(list(state_parts(state)), axis=-1)


# ============================================================================ gradient checks
@pytest.mark.parametrize("cell_class", CELLS)
def test_cell_gradients_match_finite_differences(cell_class):
    """Inputs, previous state and all four weights of one step."""
    tgl.manual_seed(0)
    cell = cell_class(3, 2).double()
    rng = np.random.default_rng(1)
    x = leaf(rng.standard_normal((2, 3)))
    state = [leaf(rng.standard_normal((2, 2))) for _ in cell.state_names]

    def one_step(x, *state_then_weights):
        return flat(cell(x, cell.pack_state(list(state_then_weights[:len(state)]))))

    gradcheck(one_step, x, *state, *cell.parameters())


@pytest.mark.parametrize("layer_class", [nn.LSTM, nn.GRU, nn.RNN])
def test_two_layer_stack_gradients_match_finite_differences(layer_class):
    """Backpropagation through time, through both layers and the initial state, over 3 steps."""
    tgl.manual_seed(0)
    layer = layer_class(3, 2, num_layers=2).double()
    rng = np.random.default_rng(2)
    x = leaf(rng.standard_normal((2, 3, 3)))
    state = list(state_parts(random_state(layer, 2, rng)))

    def run(x, *state_then_weights):
        output, final = layer(x, layer.cell_class.pack_state(list(state_then_weights[:len(state)])))
        return tgl.cat([output.reshape(-1), flat(final).reshape(-1)])

    gradcheck(run, x, *state, *layer.parameters())


# ============================================================================ shapes and the layout
@given(kind=st.sampled_from(LAYERS), batch=st.integers(1, 4), steps=st.integers(1, 4), inputs=st.integers(1, 4),
       hidden=st.integers(1, 4), seed=st.integers(0, 2**16))
def test_layer_is_its_cells_run_step_by_step(kind, batch, steps, inputs, hidden, seed):
    """Output shapes, output[:, t] == the cell's state after step t (the hoisted projection changes nothing),
    h_n is the last output, and batch_first=False on (T, B, I) input gives the same numbers."""
    tgl.manual_seed(seed)
    layer = kind(inputs, hidden).double()
    x = np.random.default_rng(seed).standard_normal((batch, steps, inputs))
    output, final = layer(x)
    assert output.shape == (batch, steps, hidden)
    assert all(part.shape == (1, batch, hidden) for part in state_parts(final))

    cell, state = layer.cells[0], None
    for t in range(steps):
        state = cell(x[:, t], state)
        np.testing.assert_allclose(output.data[:, t], state_parts(state)[0].data, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(flat(final).data[0], flat(state).data, rtol=1e-12, atol=1e-12)

    layer.batch_first = False
    time_major, _ = layer(x.transpose(1, 0, 2))
    np.testing.assert_allclose(time_major.data.transpose(1, 0, 2), output.data, rtol=1e-12, atol=1e-12)


def assert_samples_independent(run, x: np.ndarray, sample: int):
    """Change one sample of a batch-first input: every OTHER sample's output must stay bit-identical."""
    before = run(x)
    changed = x.copy()
    changed[sample] += 1.0
    after = run(changed)
    others = [b for b in range(len(x)) if b != sample]
    assert np.array_equal(before[others], after[others]), (
        f"changing sample {sample} changed the outputs of samples {others}: batch and time are mixed up"
    )
    assert not np.array_equal(before[sample], after[sample]), "the changed sample's own output did not change"


@pytest.mark.parametrize("layer_class", LAYERS)
@given(sample=st.integers(0, 2))
def test_a_sample_depends_only_on_itself(layer_class, sample):
    tgl.manual_seed(0)
    layer = layer_class(4, 5, num_layers=2)
    x = np.random.default_rng(0).standard_normal((3, 6, 4)).astype(np.float32)
    assert_samples_independent(lambda x: layer(x)[0].data, x, sample)


def test_the_independence_check_catches_swapped_batch_and_time():
    """M22: a time-major layer fed batch-first data raises no error (the feature size fits); only the check sees it."""
    tgl.manual_seed(0)
    time_major = nn.LSTM(4, 5, batch_first=False)
    x = np.random.default_rng(0).standard_normal((3, 6, 4)).astype(np.float32)
    with pytest.raises(AssertionError, match="batch and time are mixed up"):
        assert_samples_independent(lambda x: time_major(x)[0].data, x, sample=0)


# ============================================================================ PyTorch as the oracle
def torch_twin(torch, layer):
    """torch.nn.RNN/LSTM/GRU with the weights copied over (the layouts are the same by design)."""
    twin_class = {nn.RNN: torch.nn.RNN, nn.LSTM: torch.nn.LSTM, nn.GRU: torch.nn.GRU}[type(layer)]
    twin = twin_class(layer.input_size, layer.hidden_size, num_layers=layer.num_layers, batch_first=True)
    with torch.no_grad():
        for index, cell in enumerate(layer.cells):
            for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
                getattr(twin, f"{name}_l{index}").copy_(torch.from_numpy(getattr(cell, name).data))
    return twin


@pytest.mark.oracle
@given(kind=st.sampled_from(LAYERS), batch=st.integers(1, 4), steps=st.integers(1, 5), inputs=st.integers(1, 4),
       hidden=st.integers(1, 4), seed=st.integers(0, 2**16))
def test_two_layer_stack_equals_pytorch(kind, batch, steps, inputs, hidden, seed):
    torch = pytest.importorskip("torch")
    tgl.manual_seed(seed)
    layer = kind(inputs, hidden, num_layers=2)
    twin = torch_twin(torch, layer)
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((batch, steps, inputs)).astype(np.float32)
    state = random_state(layer, batch, rng, np.float32)
    upstream_output = rng.standard_normal((batch, steps, hidden)).astype(np.float32)
    upstream_state = rng.standard_normal(flat(state).shape).astype(np.float32)

    ours_x = tgl.tensor(x, requires_grad=True)
    output, final = layer(ours_x, state)
    ((output * upstream_output).sum() + (flat(final) * upstream_state).sum()).backward()

    twin_x = torch.tensor(x, requires_grad=True)
    twin_state = [torch.tensor(p.data, requires_grad=True) for p in state_parts(state)]
    twin_output, twin_final = twin(twin_x, twin_state[0] if len(twin_state) == 1 else tuple(twin_state))
    twin_flat = torch.cat(list(twin_final) if isinstance(twin_final, tuple) else [twin_final], dim=-1)
    ((twin_output * torch.from_numpy(upstream_output)).sum() + (twin_flat * torch.from_numpy(upstream_state)).sum()).backward()

    close = dict(rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(output.data, twin_output.detach().numpy(), **close)
    np.testing.assert_allclose(flat(final).data, twin_flat.detach().numpy(), **close)
    np.testing.assert_allclose(ours_x.grad, twin_x.grad.numpy(), **close)
    for ours, theirs in zip(state_parts(state), twin_state):
        np.testing.assert_allclose(ours.grad, theirs.grad.numpy(), **close)
    for index, cell in enumerate(layer.cells):
        for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
            np.testing.assert_allclose(getattr(cell, name).grad, getattr(twin, f"{name}_l{index}").grad.numpy(),
                                       err_msg=f"d loss / d {name} of layer {index}", **close)


@pytest.mark.oracle
@pytest.mark.parametrize("layer_class", LAYERS)
def test_parameter_count_equals_pytorch(layer_class):
    torch = pytest.importorskip("torch")
    layer = layer_class(7, 5, num_layers=2)
    assert layer.num_parameters() == sum(p.numel() for p in torch_twin(torch, layer).parameters())


def test_parameter_count_of_the_worked_example():
    """Q08: an RNN 128 -> 256 with two biases has 128*256 + 256*256 + 2*256 = 98,816 parameters."""
    assert nn.RNN(128, 256).num_parameters() == 98_816


# ============================================================================ chunks and truncated BPTT
@pytest.mark.parametrize("layer_class", LAYERS)
@given(cuts=st.lists(st.integers(1, 8), min_size=1, max_size=3, unique=True))
def test_chunks_with_carried_state_equal_the_whole_sequence(layer_class, cuts):
    tgl.manual_seed(0)
    layer = layer_class(3, 4, num_layers=2).double()
    x = np.random.default_rng(0).standard_normal((2, 9, 3))
    whole, whole_final = layer(x)
    state, outputs = None, []
    bounds = [0] + sorted(cuts) + [9]
    for start, stop in zip(bounds[:-1], bounds[1:]):
        output, state = layer(x[:, start:stop], state)
        outputs.append(output.data)
    np.testing.assert_allclose(np.concatenate(outputs, axis=1), whole.data, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(flat(state).data, flat(whole_final).data, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("layer_class", LAYERS)
def test_detach_state_stops_the_gradient_at_the_chunk_boundary(layer_class):
    """Truncated BPTT: with detach_state the second chunk's loss sends no gradient into the first chunk
    (its inputs get none, and the weights get exactly what chunk 2 alone gives them); without it, it does."""
    tgl.manual_seed(0)
    layer = layer_class(3, 4, num_layers=2).double()
    rng = np.random.default_rng(0)
    first, second = leaf(rng.standard_normal((2, 4, 3))), rng.standard_normal((2, 4, 3))

    def second_chunk_loss(carry):
        layer.zero_grad()
        first.grad = None
        _, state = layer(first)
        output, _ = layer(second, carry(state))
        output.sum().backward()
        return {name: p.grad.copy() for name, p in layer.named_parameters()}

    truncated = second_chunk_loss(detach_state)
    assert first.grad is None, "the gradient crossed a detached state into the first chunk"
    _, state = layer(first)
    layer.zero_grad()
    layer(second, map_state(lambda t: t.data, state))[0].sum().backward()  # chunk 2 alone, from constant arrays
    alone = {name: p.grad for name, p in layer.named_parameters()}
    for name in alone:
        np.testing.assert_allclose(truncated[name], alone[name], rtol=1e-12, atol=1e-12, err_msg=name)

    full = second_chunk_loss(lambda state: state)
    assert first.grad is not None and np.abs(first.grad).max() > 1e-6, "without detaching, chunk 1 must get a gradient"
    assert any(not np.allclose(full[name], truncated[name]) for name in full)


# ============================================================================ bad input says what to do
@pytest.mark.parametrize("layer_class", LAYERS)
def test_bad_input_gives_a_clear_error(layer_class):
    name = layer_class.__name__
    layer = layer_class(3, 4, num_layers=2)
    layout = r"\(batch, time, features\) because batch_first=True"
    with pytest.raises(ValueError, match=rf"{name}: input must be 3-D {layout}, got shape \(5, 3\)"):
        layer(np.zeros((5, 3), np.float32))
    with pytest.raises(ValueError, match=rf"{name}: input has 7 features .*\(2, 5, 7\).*batch_first=True.*input_size=3"):
        layer(np.zeros((2, 5, 7), np.float32))
    with pytest.raises(ValueError, match=rf"{name}: state h has shape \(2, 5, 4\) but must be .*\(2, 2, 4\).*batch_first"):
        wrong_batch = np.zeros((2, 5, 4), np.float32)
        layer(np.zeros((2, 5, 3), np.float32), layer.cell_class.pack_state([wrong_batch] * len(layer.cell_class.state_names)))
    with pytest.raises(ValueError, match=rf"{name}: .*no time steps"):
        layer(np.zeros((2, 0, 3), np.float32))


def test_lstm_state_must_be_a_pair():
    with pytest.raises(ValueError, match=r"LSTM: the state must be a tuple \(h, c\)"):
        nn.LSTM(3, 4)(np.zeros((2, 5, 3), np.float32), np.zeros((1, 2, 4), np.float32))
    with pytest.raises(ValueError, match=r"GRU: the state must be one tensor h"):
        nn.GRU(3, 4)(np.zeros((2, 5, 3), np.float32), (np.zeros((1, 2, 4)), np.zeros((1, 2, 4))))


@pytest.mark.parametrize("cell_class", CELLS)
def test_cell_rejects_a_sequence(cell_class):
    with pytest.raises(ValueError, match=rf"{cell_class.__name__}: x must have shape \(batch, input_size=3\), got \(2, 5, 3\)"):
        cell_class(3, 4)(np.zeros((2, 5, 3), np.float32))


# ============================================================================ initialisation and dropout
@pytest.mark.parametrize("cell_class", CELLS)
def test_initialisation_is_pytorchs_uniform(cell_class):
    tgl.manual_seed(0)
    cell = cell_class(6, 16, **({"forget_bias": 0.0} if cell_class is nn.LSTMCell else {}))
    for p in cell.parameters():
        assert np.abs(p.data).max() <= 1 / math.sqrt(16)
        assert p.data.std() > 0.5 / math.sqrt(3 * 16)  # really uniform in +-1/sqrt(H) (std bound/sqrt(3)), not zeros


def test_forget_bias_shifts_only_the_forget_gate():
    tgl.manual_seed(0)
    hidden = 8
    cell = nn.LSTMCell(3, hidden, forget_bias=3.0)
    bound = 1 / math.sqrt(hidden)
    forget = cell.bias_ih.data[hidden:2 * hidden]
    others = np.delete(cell.bias_ih.data, np.s_[hidden:2 * hidden])
    assert np.all(np.abs(forget - 3.0) <= bound) and np.all(np.abs(others) <= bound)
    assert nn.LSTM(3, hidden, forget_bias=3.0).cells[0].forget_bias == 3.0


def test_dropout_between_layers_is_active_only_in_training():
    tgl.manual_seed(0)
    layer = nn.GRU(3, 4, num_layers=2, dropout=0.5)
    x = np.random.default_rng(0).standard_normal((2, 5, 3)).astype(np.float32)
    layer.eval()
    first, second = layer(x)[0].data, layer(x)[0].data
    assert np.array_equal(first, second)
    layer.train()
    assert not np.allclose(layer(x)[0].data, first)


# ============================================================================ vanishing gradients (Q09)
def gradient_reach(layer, steps=50, seed=0) -> float:
    """||dL/dx_1|| / ||dL/dx_T|| for a loss on the LAST output: how much of the first input's influence
    survives the trip through T - 1 recurrent steps."""
    x = leaf(np.random.default_rng(seed).standard_normal((4, steps, layer.input_size)))
    output, _ = layer(x)
    (output[:, -1] * tgl.tensor(np.random.default_rng(seed + 1).standard_normal(output.shape[::2]))).sum().backward()
    return float(np.linalg.norm(x.grad[:, 0]) / np.linalg.norm(x.grad[:, -1]))


def test_gates_keep_gradients_alive_where_a_tanh_rnn_loses_them():
    """Q09 CI: over T = 50 an LSTM with forget bias 3 keeps at least 10x more of the first step's
    gradient than a tanh RNN whose recurrent matrix has spectral radius 0.9."""
    tgl.manual_seed(0)
    hidden = 32
    rnn = nn.RNN(8, hidden).double()
    nn.init.orthogonal_(rnn.cells[0].weight_hh, gain=0.9)  # every singular value, so the spectral radius, is 0.9
    assert np.isclose(np.abs(np.linalg.eigvals(rnn.cells[0].weight_hh.data)).max(), 0.9)
    lstm = nn.LSTM(8, hidden, forget_bias=3.0).double()
    rnn_reach, lstm_reach = gradient_reach(rnn), gradient_reach(lstm)
    assert lstm_reach >= 10 * rnn_reach, f"LSTM reach {lstm_reach:.3g} vs RNN {rnn_reach:.3g}"


# ============================================================================ the language model
def small_model(kind, vocab=11, layers=2, seed=0):
    tgl.manual_seed(seed)
    return nn.RecurrentLanguageModel(vocab, cell=kind, embed_dim=6, hidden_dim=8, num_layers=layers)


@pytest.mark.parametrize("kind", KINDS)
@given(position=st.integers(0, 6), seed=st.integers(0, 2**16))
def test_logits_do_not_see_the_future(kind, position, seed):
    model = small_model(kind)
    rng = np.random.default_rng(seed)
    ids = rng.integers(0, 11, (2, 7))
    changed = ids.copy()
    changed[:, position + 1:] = rng.integers(0, 11, changed[:, position + 1:].shape)
    np.testing.assert_array_equal(model(ids).data[:, :position + 1], model(changed).data[:, :position + 1])


@pytest.mark.parametrize("kind", KINDS)
@given(cuts=st.lists(st.integers(1, 8), max_size=4, unique=True))
def test_cached_decoding_equals_the_full_forward_pass(kind, cuts):
    """Feeding the text in pieces (a prompt, then any chunks, down to one token at a time) through the
    cache gives the logits of one pass over the whole text."""
    model = small_model(kind)
    ids = np.random.default_rng(0).integers(0, 11, (3, 9))
    full = model(ids).data
    cache = model.new_cache(3)
    bounds = [0] + sorted(cuts) + [9]
    pieces = []
    for start, stop in zip(bounds[:-1], bounds[1:]):
        pieces.append(model(ids[:, start:stop], cache=cache).data)
        assert cache.length == stop
    np.testing.assert_allclose(np.concatenate(pieces, axis=1), full, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("kind", KINDS)
def test_prompt_then_one_token_at_a_time_equals_the_full_pass(kind):
    model = small_model(kind)
    ids = np.random.default_rng(1).integers(0, 11, (2, 8))
    cache = model.new_cache(2)
    pieces = [model(ids[:, :3], cache=cache).data] + [model(ids[:, t:t + 1], cache=cache).data for t in range(3, 8)]
    np.testing.assert_allclose(np.concatenate(pieces, axis=1), model(ids).data, rtol=1e-5, atol=1e-6)
    assert all(isinstance(part, np.ndarray) for part in state_parts(cache.state)), "the cache holds plain arrays"


@pytest.mark.parametrize("kind", KINDS)
def test_initial_loss_is_log_vocab_size(kind):
    tgl.manual_seed(0)
    vocab = 100
    model = nn.RecurrentLanguageModel(vocab, cell=kind)
    ids = np.random.default_rng(0).integers(0, vocab, (4, 33))
    loss = F.cross_entropy(model(ids[:, :-1]), ids[:, 1:]).item()
    assert abs(loss - math.log(vocab)) < 0.1, f"initial loss {loss:.3f}, ln V = {math.log(vocab):.3f}"


def test_config_rebuilds_the_architecture():
    model = nn.RecurrentLanguageModel(13, cell="gru", embed_dim=5, hidden_dim=7, num_layers=2, dropout=0.1)
    twin = type(model)(**model.config).load_state_dict(model.state_dict())
    model.eval(), twin.eval()
    ids = np.arange(12).reshape(2, 6)
    np.testing.assert_array_equal(model(ids).data, twin(ids).data)
    assert model.max_context is None and isinstance(model, nn.LanguageModel)


def test_unknown_cell_is_a_clear_error():
    with pytest.raises(ValueError, match=r"RecurrentLanguageModel: cell must be one of \['gru', 'lstm', 'rnn'\], got 'transformer'"):
        nn.RecurrentLanguageModel(10, cell="transformer")


def test_a_tiny_lstm_learns_a_repetitive_text():
    """M21: a model is defined, trained and evaluated. A few hundred Adam steps take the loss far below ln V."""
    text = "the cat sat on the mat. " * 12
    vocab = tgl.data.CharTokenizer.train(text)
    ids = vocab.encode(text)
    tgl.manual_seed(0)
    model = nn.RecurrentLanguageModel(vocab.vocab_size, cell="lstm", embed_dim=16, hidden_dim=32)
    optimizer = tgl.optim.Adam(model.parameters(), lr=1e-2)
    rng = np.random.default_rng(0)
    for _ in range(150):
        starts = rng.integers(0, len(ids) - 25, 8)
        windows = np.stack([ids[s:s + 25] for s in starts])
        loss = F.cross_entropy(model(windows[:, :-1]), windows[:, 1:])
        model.zero_grad()
        loss.backward()
        optimizer.step()
    with tgl.no_grad():
        final = F.cross_entropy(model(ids[None, :-1]), ids[None, 1:]).item()
    assert final < 0.15 * math.log(vocab.vocab_size), f"loss {final:.3f} vs ln V = {math.log(vocab.vocab_size):.3f}"
