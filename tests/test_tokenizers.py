"""Tokenizers: lossless round trips, out-of-band special tokens, BPE merges, streaming decode, files."""
from collections import Counter

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tinygrad_llm.data import ByteBPETokenizer, CharTokenizer, Tokenizer, embedded_text, multilingual_sample
from tinygrad_llm.data.byte_bpe_tokenizer import merge_pair, pretokenize
from tinygrad_llm.data.tokenizer import SPECIAL_TOKENS

pytestmark = pytest.mark.tokenization

HARD_STRINGS = [
    "", " ", "\n\n  \t", "Hello, World!", "don't   stop", "__init__(self)", "x = 3.14159 * r**2",
    "中文分词很难，因为没有空格。", "混合 mixed 文本 text 123", "emoji 👩‍👩‍👧 family", "astral 𝔘𝔫𝔦𝔠𝔬𝔡𝔢 𠀋",
    "\u0301 lone combining mark", "e\u0301 vs é", "<|pad|><|eos|> are just text", "\x00\x7f\u200b",
]


def english_and_chinese_lines():
    """The committed sample's lines, split by language (a line with any CJK character counts as Chinese)."""
    lines = [line for line in multilingual_sample().splitlines() if line]
    is_chinese = [any("\u4e00" <= c <= "\u9fff" for c in line) for line in lines]
    english = "\n".join(line for line, zh in zip(lines, is_chinese) if not zh)
    chinese = "\n".join(line for line, zh in zip(lines, is_chinese) if zh)
    return english, chinese


@pytest.fixture(scope="module")
def bpe():
    return ByteBPETokenizer.train(embedded_text()[:6000] + multilingual_sample(), num_merges=300)


@pytest.fixture(scope="module")
def chars():
    return CharTokenizer.train(embedded_text()[:5000])


# ---------------------------------------------------------------------------- byte-level BPE
@given(st.text())
def test_chunks_concatenate_back_to_the_text(text):
    assert "".join(pretokenize(text)) == text


def test_chunks_keep_one_leading_space_with_the_word():
    assert pretokenize("a   b, c 42!") == ["a", "  ", " b", ",", " c", " 42", "!"]


@given(text=st.text())
def test_bpe_round_trips_any_text_and_never_emits_a_special(bpe, text):
    ids = bpe.encode(text)
    assert ids.dtype == np.int64
    assert bpe.decode(ids) == text
    assert bpe.unk_id not in ids
    assert not set(ids.tolist()) & set(bpe.special_ids)


@pytest.mark.parametrize("text", HARD_STRINGS)
def test_bpe_round_trips_hard_strings(bpe, text):
    ids = bpe.encode(text)
    assert bpe.decode(ids) == text
    assert bpe.unk_id not in ids


def test_special_token_names_in_text_are_encoded_literally(bpe):
    text = "say <|eos|> and <|pad|>"
    for tok in (bpe, CharTokenizer.train(text)):
        ids = tok.encode(text)
        assert not set(ids.tolist()) & set(tok.special_ids)
        framed = tok.encode(text, add_bos=True, add_eos=True)
        assert framed[0] == tok.bos_id and framed[-1] == tok.eos_id
        np.testing.assert_array_equal(framed[1:-1], ids)
        assert tok.decode(framed) == "<|bos|>" + text + "<|eos|>"
        assert tok.decode(framed, skip_special_tokens=True) == text


def test_vocabulary_layout(bpe, chars):
    assert bpe.vocab_size == 256 + len(bpe.merges) + len(SPECIAL_TOKENS)
    assert bpe.special_ids == tuple(range(256 + len(bpe.merges), bpe.vocab_size))
    assert [m.new_id for m in bpe.merges] == list(range(256, 256 + len(bpe.merges)))
    assert chars.special_ids == (0, 1, 2, 3, 4)
    assert (chars.pad_id, chars.bos_id, chars.eos_id, chars.unk_id, chars.mask_id) == (0, 1, 2, 3, 4)
    assert chars.chars == sorted(set(embedded_text()[:5000]))
    assert chars.encode(chars.chars[0])[0] == 5
    assert "ByteBPETokenizer" in repr(bpe) and str(bpe.vocab_size) in bpe.describe()
    assert "CharTokenizer" in repr(chars) and str(chars.vocab_size) in chars.describe()


def test_merge_ties_go_to_the_smallest_pair():
    # chunks "abab" and " cdcd": (a, b) and (c, d) both occur twice; (97, 98) < (99, 100)
    tok = ByteBPETokenizer.train("abab cdcd", num_merges=2)
    assert [m.pair for m in tok.merges] == [(97, 98), (99, 100)]
    assert [m.count for m in tok.merges] == [2, 2]
    assert tok.token_bytes(256) == b"ab"


def test_training_stops_when_no_pair_repeats():
    tok = ByteBPETokenizer.train("abcd", num_merges=10)
    assert tok.merges == []
    assert len(ByteBPETokenizer.train("abcd", num_merges=10, min_pair_count=1).merges) == 3


def test_merges_match_a_brute_force_recount_and_encoding_replays_them():
    text = embedded_text()[:3000] + english_and_chinese_lines()[1][:300]
    tok = ByteBPETokenizer.train(text, num_merges=40)
    assert len(tok.merges) == 40
    chunks = [list(chunk.encode("utf-8")) for chunk in pretokenize(text)]  # every occurrence, no frequency table
    for merge in tok.merges:
        counts = Counter(pair for ids in chunks for pair in zip(ids, ids[1:]))
        best = max(counts.values())
        assert merge.count == best, f"merge {merge}: a recount finds the best pair occurs {best} times"
        assert merge.pair == min(pair for pair, n in counts.items() if n == best)
        chunks = [merge_pair(ids, merge.pair, merge.new_id) for ids in chunks]
    # encoding (lowest merge id first, chunk by chunk) lands on the segmentation that training reached
    np.testing.assert_array_equal(tok.encode(text), [i for ids in chunks for i in ids])


def test_token_bytes_spell_out_the_merges(bpe):
    for merge in bpe.merges[:50]:
        left, right = merge.pair
        assert bpe.token_bytes(merge.new_id) == bpe.token_bytes(left) + bpe.token_bytes(right)
    with pytest.raises(ValueError, match="special token <\\|eos\\|>"):
        bpe.token_bytes(bpe.eos_id)


def test_tokens_per_character_falls_as_merges_grow():
    english, chinese = english_and_chinese_lines()
    tokenizers = [ByteBPETokenizer.train(multilingual_sample(), num_merges=n) for n in (0, 50, 150, 300)]
    for language, text in (("English", english), ("Chinese", chinese)):
        per_char = [len(tok.encode(text)) / len(text) for tok in tokenizers]
        assert all(a > b for a, b in zip(per_char, per_char[1:])), f"{language}: tokens per character {per_char}"
    # a deterministic trainer: fewer merges are a prefix of more merges
    assert tokenizers[-1].merges[:50] == tokenizers[1].merges
    assert len(ByteBPETokenizer.train("", 0).encode("中")) == 3  # a CJK character is three UTF-8 bytes


def test_encoding_is_deterministic(bpe):
    text = multilingual_sample()
    again = ByteBPETokenizer.train(embedded_text()[:6000] + text, num_merges=300)
    assert again.merges == bpe.merges
    np.testing.assert_array_equal(again.encode(text), bpe.encode(text))
    np.testing.assert_array_equal(bpe.encode(text), bpe.encode(text))


def test_decode_replaces_bytes_that_are_not_utf8(bpe):
    chinese = bpe.encode("中")
    bytes_only = ByteBPETokenizer.train("", 0)
    assert bytes_only.decode(bytes_only.encode("中")[:2]) == "\ufffd"
    assert bytes_only.decode([0xFF, ord("a")]) == "\ufffda"
    assert bpe.decode(chinese) == "中"


@given(st.text())
def test_bpe_training_round_trips_its_own_text(text):
    tok = ByteBPETokenizer.train(text, num_merges=20, min_pair_count=1)
    assert tok.decode(tok.encode(text)) == text


# ---------------------------------------------------------------------------- character tokenizer
@given(st.data())
def test_char_tokenizer_round_trips_strings_of_its_alphabet(chars, data):
    text = data.draw(st.text(alphabet=st.sampled_from(chars.chars)))
    ids = chars.encode(text)
    assert chars.decode(ids) == text
    assert np.all(ids >= len(SPECIAL_TOKENS)) and np.all(ids < chars.vocab_size)


@given(st.text(min_size=1))
def test_char_tokenizer_trained_on_any_text_round_trips_it(text):
    tok = CharTokenizer.train(text)
    assert tok.vocab_size == len(SPECIAL_TOKENS) + len(set(text))
    assert tok.decode(tok.encode(text)) == text


def test_unknown_characters_raise_an_error_naming_them():
    tok = CharTokenizer.train("abc")
    with pytest.raises(ValueError, match=r"\['z', '中'\].*ByteBPETokenizer"):
        tok.encode("abz中a")
    lenient = CharTokenizer.train("abc", unknown="unk")
    np.testing.assert_array_equal(lenient.encode("az"), [lenient.encode("a")[0], lenient.unk_id])
    assert lenient.decode(lenient.encode("az")) == "a<|unk|>"


def test_bad_input_is_rejected_clearly(bpe, chars):
    with pytest.raises(TypeError, match="str"):
        bpe.encode(b"bytes")
    with pytest.raises(ValueError, match="surrogate"):
        bpe.encode("a\ud800b")
    with pytest.raises(ValueError, match=r"outside the vocabulary"):
        chars.decode([chars.vocab_size])
    with pytest.raises(ValueError, match="1-D"):
        bpe.decode(np.zeros((2, 3), dtype=np.int64))
    with pytest.raises(ValueError, match="unknown must be"):
        CharTokenizer.train("abc", unknown="ignore")


# ---------------------------------------------------------------------------- streaming decode
def stream(tok, ids, skip_special_tokens=False):
    decoder = tok.stream_decoder(skip_special_tokens)
    return [decoder.push(i) for i in ids] + [decoder.flush()]


def test_streaming_prints_a_split_character_once_and_whole():
    bytes_only = ByteBPETokenizer.train("", 0)
    ids = bytes_only.encode("中文!")
    assert len(ids) == 7
    assert stream(bytes_only, ids) == ["", "", "中", "", "", "文", "!", ""]


@given(st.data(), st.booleans())
def test_streamed_pieces_concatenate_to_decode(bpe, chars, data, skip):
    for tok in (bpe, chars):
        ids = data.draw(st.lists(st.integers(0, tok.vocab_size - 1), max_size=40))
        assert "".join(stream(tok, ids, skip)) == tok.decode(ids, skip_special_tokens=skip)


@given(st.text())
def test_streaming_encoded_text_gives_the_text(bpe, text):
    assert "".join(stream(bpe, bpe.encode(text, add_eos=True), skip_special_tokens=True)) == text


# ---------------------------------------------------------------------------- files
@pytest.mark.parametrize("kind", ["bpe", "chars"])
def test_save_then_load_gives_the_same_tokenizer(kind, bpe, chars, tmp_path):
    tok = {"bpe": bpe, "chars": chars}[kind]
    path = tok.save(tmp_path / "sub" / "tok.json")
    assert [p.name for p in path.parent.iterdir()] == ["tok.json"]  # no temporary file left behind
    loaded = Tokenizer.load(path)
    assert type(loaded) is type(tok)
    assert loaded.vocab_size == tok.vocab_size and loaded.special_ids == tok.special_ids
    text = multilingual_sample() if kind == "bpe" else embedded_text()[:2000]
    np.testing.assert_array_equal(loaded.encode(text), tok.encode(text))
    if kind == "bpe":
        assert loaded.merges == tok.merges
    else:
        assert loaded.chars == tok.chars and loaded.unknown == tok.unknown
    assert type(type(tok).load(path)) is type(tok)


def test_corrupt_or_foreign_files_give_clear_errors(bpe, chars, tmp_path):
    good = bpe.save(tmp_path / "bpe.json").read_text(encoding="utf-8")
    cases = {
        "truncated.json": (good[: len(good) // 2], "not valid JSON.*corrupt or truncated"),
        "binary.json": ("\x00\x01garbage", "not valid JSON"),
        "other.json": ('{"model": "gpt2"}', "not a tokenizer file"),
        "future.json": (good.replace('"version": 1', '"version": 99'), "version 99"),
        "unknown.json": (good.replace('"ByteBPETokenizer"', '"WordPiece"'), "known types"),
        "bad_merges.json": (good.replace('"merges": [[', '"merges": [[999999, '), "corrupt ByteBPETokenizer"),
        "no_chars.json": ('{"format": "tinygrad_llm.tokenizer", "version": 1, "type": "CharTokenizer"}', "corrupt CharTokenizer"),
    }
    for name, (content, message) in cases.items():
        path = tmp_path / name
        path.write_text(content, encoding="utf-8")
        with pytest.raises(ValueError, match=message):
            Tokenizer.load(path)
    with pytest.raises(ValueError, match="holds a ByteBPETokenizer"):
        CharTokenizer.load(tmp_path / "bpe.json")
    with pytest.raises(FileNotFoundError):
        Tokenizer.load(tmp_path / "missing.json")
