"""Learning checks for the GPT (Q12, Q21, Q39): causal, cache-exact, counted, and it trains.

The `check_*` functions take the model class under test, so tests/test_broken_transformer.py can run the
same checks on deliberately broken GPTs (tests/broken_transformer.py) and prove they fail.
"""
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import tinygrad_llm as tgl
from tinygrad_llm import kernels, nn
from tinygrad_llm.nn import functional as F

pytestmark = pytest.mark.attention

POSITIONS = ["learned", "sinusoidal", "rope"]
seeds = st.integers(0, 2**31 - 1)


def make_gpt(gpt_class=nn.GPT, positions="learned", seed=0, vocab_size=11, context_size=12, embed_dim=8,
             num_heads=2, num_layers=2, **kwargs):
    """A random float64 GPT. Every parameter gets N(0, 0.3) noise on top of its initialisation: at GPT-2's
    N(0, 0.02) the attention is almost uniform and a position bug would move the logits by only ~1e-7."""
    tgl.manual_seed(seed)
    model = gpt_class(vocab_size, context_size=context_size, embed_dim=embed_dim, num_heads=num_heads,
                      num_layers=num_layers, positions=positions, **kwargs).double()
    rng = np.random.default_rng(seed)
    for p in model.parameters():
        p.data += rng.normal(0, 0.3, p.shape)
    return model


def cached_logits(model, ids, chunk_sizes):
    """Feed ids through a fresh cache in chunks; check the cache's length and size after every chunk."""
    cache, outputs = model.new_cache(len(ids)), []
    num_layers, embed_dim = model.config["num_layers"], model.config["embed_dim"]
    with tgl.no_grad():
        for size in chunk_sizes:
            outputs.append(model(ids[:, cache.length:cache.length + size], cache=cache).data)
            assert cache.length == sum(o.shape[1] for o in outputs)
            expected_bytes = len(ids) * nn.KVCache.values_per_sequence(num_layers, cache.length, embed_dim) * 8
            assert cache.nbytes == expected_bytes
    return np.concatenate(outputs, axis=1)


# ============================================================================ reusable checks
def check_causal_language_model(gpt_class, positions):
    """logits[:, t] are unchanged when any token after t changes."""
    @settings(max_examples=10, report_multiple_bugs=False)
    @given(st.integers(1, 2), st.integers(2, 12), st.data(), seeds)
    def check(batch, time, data, seed):
        model = make_gpt(gpt_class, positions, seed)
        rng = np.random.default_rng(seed)
        t = data.draw(st.integers(0, time - 2), label="last unchanged position")
        ids = rng.integers(0, 11, (batch, time))
        changed = ids.copy()
        changed[:, t + 1:] = (changed[:, t + 1:] + rng.integers(1, 11, changed[:, t + 1:].shape)) % 11
        with tgl.no_grad():
            before, after = model(ids).data, model(changed).data
        np.testing.assert_allclose(after[:, :t + 1], before[:, :t + 1], atol=1e-12)
        assert np.abs(after[:, t + 1:] - before[:, t + 1:]).max() > 1e-6  # and the later logits do see the change

    check()


def check_cached_decoding(gpt_class, positions):
    """A prompt then one token at a time, or chunks of random sizes: the same logits as one full pass."""
    @settings(max_examples=10, report_multiple_bugs=False)
    @given(st.integers(1, 2), st.integers(1, 12), st.lists(st.integers(1, 5), min_size=1, max_size=12), seeds)
    def check(batch, prompt_length, chunk_sizes, seed):
        model = make_gpt(gpt_class, positions, seed)
        chunks = [prompt_length]
        for size in chunk_sizes:
            chunks.append(min(size, 12 - sum(chunks)))
        chunks = [size for size in chunks if size > 0]
        ids = np.random.default_rng(seed).integers(0, 11, (batch, sum(chunks)))
        with tgl.no_grad():
            full = model(ids).data
        np.testing.assert_allclose(cached_logits(model, ids, chunks), full, atol=1e-10)
        one_at_a_time = [prompt_length] + [1] * (ids.shape[1] - prompt_length)
        np.testing.assert_allclose(cached_logits(model, ids, one_at_a_time), full, atol=1e-10)

    check()


# ============================================================================ causal, cached
@pytest.mark.parametrize("positions", POSITIONS)
def test_logits_never_see_the_future(positions):
    check_causal_language_model(nn.GPT, positions)


@pytest.mark.parametrize("positions", POSITIONS)
def test_cached_decoding_equals_the_full_forward(positions):
    check_cached_decoding(nn.GPT, positions)


@pytest.mark.parametrize("positions", POSITIONS)
def test_cached_decoding_with_padding_equals_the_full_forward(positions):
    model = make_gpt(positions=positions)
    ids = np.random.default_rng(1).integers(0, 11, (2, 9))
    padding = np.zeros(ids.shape, dtype=bool)
    padding[1, :3] = True  # the second sequence is left-padded by 3
    with tgl.no_grad():
        full = model(ids, padding_mask=padding).data
        cache = model.new_cache(2)
        parts = [model(ids[:, :4], cache=cache, padding_mask=padding[:, :4]).data]
        parts += [model(ids[:, t:t + 1], cache=cache).data for t in range(4, 9)]  # no mask: new tokens are real
    np.testing.assert_allclose(np.concatenate(parts, axis=1), full, atol=1e-10)


def test_rotary_positions_make_masked_left_padding_invisible():
    """RoPE scores depend only on distances, so shifting a sequence right by masked padding changes nothing;
    learned positions are absolute, so the same shift changes the logits."""
    ids = np.random.default_rng(2).integers(0, 11, (1, 6))
    padded = np.concatenate([np.zeros((1, 3), dtype=np.int64), ids], axis=1)
    padding = np.arange(9)[None, :] < 3
    for positions, invisible in (("rope", True), ("learned", False)):
        model = make_gpt(positions=positions)
        with tgl.no_grad():
            alone, shifted = model(ids).data, model(padded, padding_mask=padding).data[:, 3:]
        assert np.allclose(alone, shifted, atol=1e-10) == invisible, positions


# ============================================================================ counting
@settings(max_examples=30)
@given(st.integers(1, 40), st.integers(1, 20), st.integers(1, 3), st.sampled_from([2, 4]), st.integers(1, 3),
       st.sampled_from(POSITIONS), st.booleans(), st.booleans())
def test_parameter_count_formula(vocab_size, context_size, num_heads, head_dim, num_layers, positions, tie, bias):
    config = dict(vocab_size=vocab_size, context_size=context_size, embed_dim=num_heads * head_dim, num_heads=num_heads,
                  num_layers=num_layers, positions=positions, tie_weights=tie, bias=bias)
    model = nn.GPT(**config)
    assert model.num_parameters() == nn.GPT.parameter_count(**config) == nn.GPT.parameter_count(**model.config)


def test_nanogpt_baby_config_has_the_known_size():
    """nanoGPT's CPU config (V=65, block 64, 4 layers, 4 heads, d=128) reports 0.80M parameters; it leaves the
    position table (64 x 128) out of its count."""
    config = dict(vocab_size=65, context_size=64, embed_dim=128, num_heads=4, num_layers=4)
    assert nn.GPT.parameter_count(**config) == 809_856
    assert nn.GPT.parameter_count(**config) - 64 * 128 == 801_664


@pytest.mark.parametrize("positions", ["learned", "sinusoidal"])
def test_flops_formula_matches_counted_matrix_products(monkeypatch, positions):
    """Count 2*m*k*n for every matmul and 4*B*H*Tq*Tk*D for every attention call of one forward pass."""
    counted = []
    active = kernels.active()
    matmul, attention_forward = active.matmul, active.attention_forward

    def counting_matmul(a, b):
        counted.append(2 * a.shape[-2] * a.shape[-1] * b.shape[-1] * (a.shape[0] if a.ndim == 3 else 1))
        return matmul(a, b)

    def counting_attention(q, k, v, **options):
        counted.append(4 * q.shape[0] * q.shape[1] * q.shape[2] * k.shape[2] * q.shape[3])
        return attention_forward(q, k, v, **options)

    monkeypatch.setattr(active, "matmul", counting_matmul)
    monkeypatch.setattr(active, "attention_forward", counting_attention)
    config = dict(vocab_size=13, context_size=10, embed_dim=12, num_heads=3, num_layers=2, positions=positions)
    batch = 3
    with tgl.no_grad():
        nn.GPT(**config)(np.zeros((batch, 10), dtype=np.int64))
    assert sum(counted) == batch * 10 * nn.GPT.flops_per_token(**config)


# ============================================================================ the model as a whole
def test_untrained_loss_is_about_ln_vocab():
    tgl.manual_seed(0)
    model = nn.GPT(65, context_size=32, embed_dim=64, num_heads=4, num_layers=2)
    ids = np.random.default_rng(0).integers(0, 65, (8, 33))
    with tgl.no_grad():
        loss = F.cross_entropy(model(ids[:, :-1]), ids[:, 1:]).item()
    assert abs(loss - math.log(65)) < 0.1


@pytest.mark.parametrize("positions", POSITIONS)
@pytest.mark.parametrize("tie_weights", [True, False])
def test_one_step_changes_every_parameter(positions, tie_weights):
    tgl.manual_seed(0)
    model = nn.GPT(17, context_size=8, embed_dim=16, num_heads=2, num_layers=2, positions=positions,
                   tie_weights=tie_weights).double()  # float64: at GPT-2's initialisation q and k get tiny gradients
    before = {name: p.data.copy() for name, p in model.named_parameters()}
    optimizer = tgl.optim.AdamW(model.parameters(), lr=1e-3)
    ids = np.random.default_rng(0).integers(0, 17, (4, 9))
    F.cross_entropy(model(ids[:, :-1]), ids[:, 1:]).backward()
    optimizer.step()
    scale = max(np.abs(p.grad).max() for p in model.parameters())
    for name, p in model.named_parameters():
        if name.endswith("k_proj.bias") and positions != "rope":  # see test_the_key_bias_gets_no_gradient
            assert np.abs(p.grad).max() < 1e-12 * scale, f"{name} should get no gradient"
            continue
        assert p.grad is not None and np.abs(p.grad).max() > 1e-9 * scale, f"{name} got no gradient"
        assert not np.array_equal(p.data, before[name]), f"{name} did not change"


def test_no_grad_logits_equal_graph_logits():
    model = make_gpt(positions="rope").float()
    ids = np.random.default_rng(0).integers(0, 11, (2, 12))
    graph = model(ids)
    with tgl.no_grad():
        plain = model(ids)
    assert graph.requires_grad and not plain.requires_grad
    np.testing.assert_array_equal(plain.data, graph.data)


def test_tied_head_is_the_embedding_and_is_listed_once():
    tied, untied = nn.GPT(20, context_size=8, embed_dim=8, num_heads=2, num_layers=1), \
        nn.GPT(20, context_size=8, embed_dim=8, num_heads=2, num_layers=1, tie_weights=False)
    assert tied.lm_head.weight is tied.token_embedding.weight
    tied_names = [name for name, _ in tied.named_parameters()]
    assert "token_embedding.weight" in tied_names and "lm_head.weight" not in tied_names
    assert "lm_head.weight" in [name for name, _ in untied.named_parameters()]
    assert untied.num_parameters() - tied.num_parameters() == 20 * 8


def test_initialisation_follows_gpt2():
    tgl.manual_seed(0)
    model = nn.GPT(500, context_size=64, embed_dim=256, num_heads=4, num_layers=8)
    block = model.blocks[3]
    assert np.std(block.attn.q_proj.weight.data) == pytest.approx(0.02, rel=0.02)
    assert np.std(model.token_embedding.weight.data) == pytest.approx(0.02, rel=0.02)
    for residual_output in (block.attn.out_proj, block.mlp_down):
        assert np.std(residual_output.weight.data) == pytest.approx(0.02 / math.sqrt(16), rel=0.02)
    assert not block.mlp_up.bias.data.any() and (block.ln1.weight.data == 1).all()


def test_config_rebuilds_the_same_model():
    model = make_gpt(positions="sinusoidal", tie_weights=False, bias=False).float()
    twin = nn.GPT(**model.config).load_state_dict(model.state_dict())
    ids = np.random.default_rng(0).integers(0, 11, (2, 7))
    with tgl.no_grad():
        np.testing.assert_array_equal(twin(ids).data, model(ids).data)


def test_gpt_errors_name_the_problem():
    model = nn.GPT(11, context_size=8, embed_dim=8, num_heads=2, num_layers=1)
    with pytest.raises(ValueError, match="exceed the model's context of 8"):
        model(np.zeros((1, 9), dtype=np.int64))
    cache = model.new_cache(1)
    model(np.zeros((1, 6), dtype=np.int64), cache=cache)
    with pytest.raises(ValueError, match="6 cached \\+ 3 new tokens exceed"):
        model(np.zeros((1, 3), dtype=np.int64), cache=cache)
    with pytest.raises(ValueError, match="positions must be one of"):
        nn.GPT(11, positions="absolute")
    with pytest.raises(ValueError, match="padding_mask must have the shape of ids"):
        model(np.zeros((1, 4), dtype=np.int64), padding_mask=np.zeros((1, 3), dtype=bool))
    with pytest.raises(TypeError, match="KVCache for 1 layers"):
        model(np.zeros((1, 2), dtype=np.int64), cache=nn.KVCache(1, num_layers=3))


# ============================================================================ it trains
def test_a_tiny_gpt_learns_a_repetitive_text():
    text = "the cat sat on the mat. " * 40
    alphabet = sorted(set(text))
    data = np.array([alphabet.index(c) for c in text])
    tgl.manual_seed(0)
    model = nn.GPT(len(alphabet), context_size=16, embed_dim=32, num_heads=2, num_layers=2)
    optimizer = tgl.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=0.0)
    rng = np.random.default_rng(0)
    losses = []
    for _ in range(150):
        starts = rng.integers(0, len(data) - 17, 8)
        windows = np.stack([data[s:s + 17] for s in starts])
        loss = F.cross_entropy(model(windows[:, :-1]), windows[:, 1:])
        model.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert abs(losses[0] - math.log(len(alphabet))) < 0.2
    assert np.mean(losses[-10:]) < 0.25 * math.log(len(alphabet))


# ============================================================================ PyTorch oracle
def torch_gpt_logits(torch, params, config, ids):
    """The same GPT written directly in PyTorch, from a dict of parameter tensors named as in ours."""
    tF = torch.nn.functional
    d, heads, positions = config["embed_dim"], config["num_heads"], config["positions"]
    head_dim = d // heads
    batch, time = ids.shape
    x = params["token_embedding.weight"][ids]
    position = torch.arange(time, dtype=torch.float64)[:, None]
    if positions == "learned":
        x = x + params["position_embedding.weight"][:time]
    elif positions == "sinusoidal":
        angle = position * torch.exp(-math.log(10000.0) * torch.arange(0, d, 2, dtype=torch.float64) / d)
        table = torch.zeros(time, d, dtype=torch.float64)
        table[:, 0::2], table[:, 1::2] = torch.sin(angle), torch.cos(angle)
        x = x + table.float()

    def rope(t):
        angle = position * 10000.0 ** (-torch.arange(0, head_dim, 2, dtype=torch.float64) / head_dim)
        cos, sin = torch.cos(angle).float(), torch.sin(angle).float()
        first, second = t[..., :head_dim // 2], t[..., head_dim // 2:]
        return torch.cat([first * cos - second * sin, first * sin + second * cos], dim=-1)

    causal = torch.tril(torch.ones(time, time, dtype=torch.bool))
    for i in range(config["num_layers"]):
        def p(name):
            return params.get(f"blocks.{i}.{name}")

        h = tF.layer_norm(x, (d,), p("ln1.weight"), p("ln1.bias"))
        q, k, v = (tF.linear(h, p(f"attn.{n}.weight"), p(f"attn.{n}.bias")).view(batch, time, heads, head_dim).transpose(1, 2)
                   for n in ("q_proj", "k_proj", "v_proj"))
        if positions == "rope":
            q, k = rope(q), rope(k)
        scores = (q @ k.transpose(-2, -1) / math.sqrt(head_dim)).masked_fill(~causal, float("-inf"))
        y = (torch.softmax(scores, dim=-1) @ v).transpose(1, 2).reshape(batch, time, d)
        x = x + tF.linear(y, p("attn.out_proj.weight"), p("attn.out_proj.bias"))
        h = tF.layer_norm(x, (d,), p("ln2.weight"), p("ln2.bias"))
        x = x + tF.linear(tF.gelu(tF.linear(h, p("mlp_up.weight"), p("mlp_up.bias")), approximate="tanh"),
                          p("mlp_down.weight"), p("mlp_down.bias"))
    x = tF.layer_norm(x, (d,), params["final_norm.weight"], params["final_norm.bias"])
    head = params["token_embedding.weight"] if config["tie_weights"] else params["lm_head.weight"]
    return x @ head.T


@pytest.mark.oracle
@pytest.mark.parametrize("positions", POSITIONS)
@pytest.mark.parametrize("tie_weights", [True, False])
def test_logits_and_gradients_equal_pytorch(positions, tie_weights):
    torch = pytest.importorskip("torch")
    model = make_gpt(positions=positions, tie_weights=tie_weights, vocab_size=13, embed_dim=16, num_heads=4).float()
    rng = np.random.default_rng(0)
    ids, targets = rng.integers(0, 13, (3, 12)), rng.integers(0, 13, (3, 12))
    logits = model(ids)
    F.cross_entropy(logits, targets).backward()

    params = {name: torch.tensor(p.data, requires_grad=True) for name, p in model.named_parameters()}
    torch_logits = torch_gpt_logits(torch, params, model.config, torch.from_numpy(ids))
    torch.nn.functional.cross_entropy(torch_logits.reshape(-1, 13), torch.from_numpy(targets).reshape(-1)).backward()

    np.testing.assert_allclose(logits.data, torch_logits.detach().numpy(), rtol=1e-4, atol=1e-5)
    # Tolerance relative to the largest gradient anywhere: some gradients are exactly 0 in exact arithmetic
    # (k_proj.bias, see test_attention_layers) and both sides then hold float32 rounding noise.
    scale = max(np.abs(t.grad.numpy()).max() for t in params.values())
    for name, p in model.named_parameters():
        np.testing.assert_allclose(p.grad, params[name].grad.numpy(), rtol=1e-3, atol=1e-6 * scale, err_msg=name)
