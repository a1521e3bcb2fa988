"""The one interface every tokenizer follows: text -> int64 ids -> text, special tokens, save and load.

A language model only ever sees integers, so a tokenizer is a contract with two promises:

- **Lossless.** decode(encode(s)) == s for every string. Nothing is lowercased, stripped or normalised:
  the model has to read and later *write* capitals, punctuation and whitespace (misconception M15).
- **Specials are out of band.** PAD, BOS, EOS, UNK and MASK get ids that no text can produce. The text
  "<|eos|>" is encoded as its literal characters; the EOS id enters only through `add_eos=True` or by
  id. Otherwise a user could end a model's input by typing a string, and round-tripping would break.

Every token is a byte string (a character's UTF-8 bytes, or a byte-level BPE piece), so decoding is one
rule for all tokenizers: join the bytes of consecutive ordinary tokens and decode them as UTF-8. A BPE
token may hold half a character, which is why decoding works on runs of bytes, never token by token,
and why `stream_decoder()` buffers incomplete characters.

Saved tokenizers are JSON (no pickle, so loading never runs code), written to a temporary file and
renamed, so a crash mid-save never leaves a half-written file.
"""
from __future__ import annotations

import codecs
import json
import os
from abc import ABC, abstractmethod
from pathlib import Path

import numpy as np

SPECIAL_TOKENS = ("<|pad|>", "<|bos|>", "<|eos|>", "<|unk|>", "<|mask|>")
FILE_FORMAT = "tinygrad_llm.tokenizer"
FILE_VERSION = 1


def check_utf8_text(text, where: str) -> str:
    """`text` itself, after checking it is a str that has UTF-8 bytes (no lone surrogates)."""
    if not isinstance(text, str):
        raise TypeError(f"{where}: expected text as str, got {type(text).__name__}; decode bytes with .decode('utf-8') first")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as error:
        raise ValueError(
            f"{where}: the text holds the lone surrogate {text[error.start]!r} at index {error.start}, which is not "
            "a Unicode character and has no UTF-8 bytes; read files with encoding='utf-8' (not errors='surrogateescape')"
        ) from None
    return text


class Tokenizer(ABC):
    """Base class: subclasses give each id's bytes (None at special ids) and how to turn text into ids."""

    _types: dict[str, type[Tokenizer]] = {}

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        Tokenizer._types[cls.__name__] = cls  # the "type" field of a saved file names the class

    def __init__(self, bytes_by_id: list[bytes | None], special_tokens: dict[str, int]):
        if sorted(special_tokens) != sorted(SPECIAL_TOKENS):
            raise ValueError(f"{type(self).__name__}: special tokens must be exactly {SPECIAL_TOKENS}, got {sorted(special_tokens)}")
        if {i for i, b in enumerate(bytes_by_id) if b is None} != set(special_tokens.values()):
            raise ValueError(f"{type(self).__name__}: the byte table must hold None exactly at the special ids {special_tokens}")
        self._bytes_by_id = bytes_by_id
        self.special_tokens = dict(special_tokens)
        self._special_name_by_id = {i: name for name, i in special_tokens.items()}

    # ----------------------------------------------------------------- what subclasses provide
    @classmethod
    @abstractmethod
    def train(cls, text: str, **options) -> Tokenizer:
        """Build a tokenizer from training text."""

    @abstractmethod
    def _encode_text(self, text: str) -> list[int]:
        """Ids of ordinary tokens for `text` (already checked to be UTF-8-encodable str)."""

    @abstractmethod
    def _to_json(self) -> dict:
        """What `save` writes besides the format header: enough to rebuild the tokenizer exactly."""

    @classmethod
    @abstractmethod
    def _from_json(cls, payload: dict) -> Tokenizer:
        """Rebuild from `_to_json`'s dict; raise KeyError/TypeError/ValueError on malformed content."""

    @abstractmethod
    def _vocabulary_summary(self) -> str:
        """How the vocabulary is made up, for describe()."""

    # ----------------------------------------------------------------- vocabulary and specials
    @property
    def vocab_size(self) -> int:
        return len(self._bytes_by_id)

    @property
    def pad_id(self) -> int:
        return self.special_tokens["<|pad|>"]

    @property
    def bos_id(self) -> int:
        return self.special_tokens["<|bos|>"]

    @property
    def eos_id(self) -> int:
        return self.special_tokens["<|eos|>"]

    @property
    def unk_id(self) -> int:
        return self.special_tokens["<|unk|>"]

    @property
    def mask_id(self) -> int:
        return self.special_tokens["<|mask|>"]

    @property
    def special_ids(self) -> tuple[int, ...]:
        """(pad, bos, eos, unk, mask) ids."""
        return tuple(self.special_tokens[name] for name in SPECIAL_TOKENS)

    def is_special(self, token_id: int) -> bool:
        return int(token_id) in self._special_name_by_id

    def token_bytes(self, token_id: int) -> bytes:
        """The bytes an ordinary token stands for (a BPE token may be part of a character)."""
        token_id = int(token_id)
        if not 0 <= token_id < self.vocab_size:
            raise ValueError(f"{type(self).__name__}.token_bytes: id {token_id} is outside the vocabulary [0, {self.vocab_size})")
        if token_id in self._special_name_by_id:
            raise ValueError(
                f"{type(self).__name__}.token_bytes: id {token_id} is the special token "
                f"{self._special_name_by_id[token_id]}, which stands for no text"
            )
        return self._bytes_by_id[token_id]

    # ----------------------------------------------------------------- text <-> ids
    def encode(self, text: str, add_bos: bool = False, add_eos: bool = False) -> np.ndarray:
        """int64 ids of `text`, read literally (special-token names in the text are ordinary characters)."""
        ids = self._encode_text(check_utf8_text(text, f"{type(self).__name__}.encode"))
        ids = ([self.bos_id] if add_bos else []) + ids + ([self.eos_id] if add_eos else [])
        return np.array(ids, dtype=np.int64)

    def decode(self, ids, skip_special_tokens: bool = False) -> str:
        """Text of `ids`; special ids render as their names ("<|eos|>") or vanish with skip_special_tokens.

        Bytes that are not valid UTF-8 (a sample cut in the middle of a character) become U+FFFD.
        """
        pieces, pending = [], []
        for token_id in self._check_ids(ids, "decode").tolist():
            name = self._special_name_by_id.get(token_id)
            if name is None:
                pending.append(self._bytes_by_id[token_id])
                continue
            pieces.append(b"".join(pending).decode("utf-8", errors="replace"))
            pending = []
            if not skip_special_tokens:
                pieces.append(name)
        pieces.append(b"".join(pending).decode("utf-8", errors="replace"))
        return "".join(pieces)

    def stream_decoder(self, skip_special_tokens: bool = False) -> StreamDecoder:
        """A decoder for generation loops: push one id at a time, print what it returns."""
        return StreamDecoder(self, skip_special_tokens)

    def _check_ids(self, ids, method: str) -> np.ndarray:
        ids = np.asarray(ids)
        if ids.ndim != 1:
            raise ValueError(
                f"{type(self).__name__}.{method}: expected one sequence of ids (1-D), got shape {ids.shape}; "
                "for a batch use [tok.decode(row) for row in ids]"
            )
        if ids.size and not np.issubdtype(ids.dtype, np.integer):
            raise TypeError(f"{type(self).__name__}.{method}: ids must be integers, got dtype {ids.dtype}")
        bad = ids[(ids < 0) | (ids >= self.vocab_size)] if ids.size else ids
        if bad.size:
            raise ValueError(
                f"{type(self).__name__}.{method}: ids {sorted(set(bad.tolist()))[:10]} are outside the vocabulary "
                f"[0, {self.vocab_size}); were they made by a different tokenizer?"
            )
        return ids.astype(np.int64, copy=False)

    # ----------------------------------------------------------------- files
    def to_dict(self) -> dict:
        """A JSON-ready description; a checkpoint embeds it so the model and its tokenizer travel together."""
        return {"format": FILE_FORMAT, "version": FILE_VERSION, "type": type(self).__name__, **self._to_json()}

    @classmethod
    def from_dict(cls, document, source: str = "the document") -> Tokenizer:
        """Rebuild a tokenizer from to_dict()'s output; the "type" field picks the subclass."""
        if not isinstance(document, dict) or document.get("format") != FILE_FORMAT:
            raise ValueError(f"Tokenizer.load: {source} is JSON but not a tokenizer file (no \"format\": \"{FILE_FORMAT}\")")
        if document.get("version") != FILE_VERSION:
            raise ValueError(f"Tokenizer.load: {source} has format version {document.get('version')!r}; this library reads {FILE_VERSION}")
        kind = Tokenizer._types.get(document.get("type"))
        if kind is None:
            raise ValueError(f"Tokenizer.load: {source} has type {document.get('type')!r}; known types: {sorted(Tokenizer._types)}")
        if not issubclass(kind, cls):
            raise ValueError(f"{cls.__name__}.load: {source} holds a {kind.__name__}; load it with Tokenizer.load")
        try:
            return kind._from_json(document)
        except (KeyError, TypeError, ValueError, IndexError) as error:
            raise ValueError(f"Tokenizer.load: {source} is a corrupt {kind.__name__} file: {error!r}") from None

    def save(self, path) -> Path:
        """Write JSON atomically: a temporary file in the same folder, then os.replace over `path`."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
        try:
            tmp.write_text(json.dumps(self.to_dict()), encoding="utf-8")
            os.replace(tmp, path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        return path

    @classmethod
    def load(cls, path) -> Tokenizer:
        """Rebuild a saved tokenizer; the file's "type" field picks the subclass."""
        path = Path(path)
        try:
            document = json.loads(path.read_bytes())
        except ValueError as error:  # JSONDecodeError and UnicodeDecodeError
            raise ValueError(
                f"Tokenizer.load: {path} is not valid JSON ({error}); the file is corrupt or truncated, "
                "save the tokenizer again"
            ) from None
        return cls.from_dict(document, source=str(path))

    # ----------------------------------------------------------------- display
    def describe(self) -> str:
        return f"{type(self).__name__}(vocab_size={self.vocab_size}: {self._vocabulary_summary()})"

    def __repr__(self) -> str:
        return self.describe()


class StreamDecoder:
    """Turns ids into text one at a time, holding back bytes until they complete a character.

    push(id) returns the text that this id completes ("" while a character is still partial), so the
    pushes of a sequence, followed by flush(), concatenate to tokenizer.decode(ids). A byte-level BPE
    model may emit a Chinese character as three one-byte tokens: printing each token's decode would show
    three U+FFFD marks instead of one character.
    """

    def __init__(self, tokenizer: Tokenizer, skip_special_tokens: bool = False):
        self.tokenizer = tokenizer
        self.skip_special_tokens = skip_special_tokens
        self._utf8 = codecs.getincrementaldecoder("utf-8")(errors="replace")

    def push(self, token_id) -> str:
        (token_id,) = self.tokenizer._check_ids([token_id], "stream_decoder().push").tolist()
        if not self.tokenizer.is_special(token_id):
            return self._utf8.decode(self.tokenizer.token_bytes(token_id))
        # a special token ends any partial character, exactly as in decode()
        pending = self.flush()
        return pending if self.skip_special_tokens else pending + self.tokenizer._special_name_by_id[token_id]

    def flush(self) -> str:
        """Text still held back (U+FFFD for an unfinished character); call it when the stream ends."""
        text = self._utf8.decode(b"", final=True)
        self._utf8.reset()
        return text
