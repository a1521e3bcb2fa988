"""Restricting what a language model may say (Q38): banned tokens, banned n-grams, and decoding that a
finite-state machine (FSM) keeps inside a format.

All three are logits processors: functions process(ids, logits) -> logits that generate() applies to each
step's logits before sampling (generate(..., logits_processors=[...])). ids (B, t) is the text so far, prompt
included; logits (B, V). A forbidden token gets logit -inf, so after the softmax its probability is exactly
0 and the allowed tokens share the whole mass again, in the same proportions as before (renormalisation).
Greedy decoding then picks the best ALLOWED token; sampling can never draw a forbidden one.

    ban = ban_ngrams([tokenizer.encode("the")])          # "th" may appear, "the" may not
    ids = generate(model, prompt, 100, logits_processors=[ban])

Why ban the n-gram's LAST token only after its prefix: banning the token everywhere ("e" in "the") would
forbid countless harmless words. The ban must look back at the text and fire exactly when the next token
would complete the banned sequence. A filter over finished text cannot do that cheaply: it can only throw
the whole sample away and draw again. What a ban costs is the probability mass it removes: at a step where
it fires, the distribution actually sampled diverges from the model's by KL = -log(1 - banned mass).

A filter like this is a blunt tool: it blocks exact token sequences, not meanings. The same word in other
tokens (another spelling, other capitals, a different BPE split) passes, which is why the experiment in
tinygrad_llm/experiments/restricted_decoding.py measures how often the banned n-gram still appears.
"""
from __future__ import annotations

import numbers
from dataclasses import dataclass

import numpy as np


def _check_token_ids(sequence, name: str) -> tuple[int, ...]:
    sequence = tuple(sequence)
    if not sequence or not all(isinstance(t, numbers.Integral) and not isinstance(t, bool) and t >= 0
                               for t in sequence):
        raise ValueError(f"{name}: each banned sequence must be a non-empty list of token ids >= 0, got "
                         f"{sequence!r}; encode text first (tokenizer.encode(word))")
    return tuple(int(t) for t in sequence)


def _check_vocabulary(token_ids, logits: np.ndarray, name: str):
    if max(token_ids) >= logits.shape[-1]:
        raise ValueError(f"{name}: token id {max(token_ids)} is outside the model's vocabulary "
                         f"0..{logits.shape[-1] - 1}; encode the text with the model's own tokenizer")


def ban_ngrams(ngrams):
    """A logits processor that stops every sequence in `ngrams` (lists of token ids) from being completed.

    For an n-gram (a_1, ..., a_n) the token a_n gets -inf in exactly the rows whose text ends with the prefix
    (a_1, ..., a_{n-1}); everywhere else a_n stays allowed. A 1-gram has an empty prefix, so it is banned at
    every step: ban_tokens is this with n = 1.
    """
    ngrams = [_check_token_ids(ngram, "ban_ngrams") for ngram in ngrams]

    def process(ids: np.ndarray, logits: np.ndarray) -> np.ndarray:
        logits = np.array(logits, dtype=np.float64)
        for ngram in ngrams:
            _check_vocabulary(ngram, logits, "ban_ngrams")
            *prefix, last = ngram
            if len(prefix) > ids.shape[1]:
                continue  # the text is shorter than the prefix, so it cannot end with it
            ends_with_prefix = (ids[:, ids.shape[1] - len(prefix):] == prefix).all(axis=1)
            logits[ends_with_prefix, last] = -np.inf
        return logits

    return process


def ban_tokens(token_ids):
    """A logits processor that gives each of `token_ids` probability 0 at every step."""
    return ban_ngrams([[token] for token in _check_token_ids(token_ids, "ban_tokens")])


def ngram_occurrences(ids, ngram) -> int:
    """How many times `ngram` occurs in the 1-D token sequence `ids` (overlaps count)."""
    ids, ngram = np.asarray(ids), np.asarray(_check_token_ids(ngram, "ngram_occurrences"))
    if len(ids) < len(ngram):
        return 0
    windows = np.lib.stride_tricks.sliding_window_view(ids, len(ngram))
    return int((windows == ngram).all(axis=1).sum())


@dataclass(frozen=True)
class TokenFSM:
    """A finite-state machine over token ids: transitions[state][token] is the state after reading token.

    The tokens allowed in a state are the keys of transitions[state]; a state with none left is finished.
    A sequence is accepted when reading it from `start` never meets a missing transition and ends in one of
    `accepting`. States are any hashable labels.
    """
    transitions: dict
    start: object
    accepting: frozenset

    def __post_init__(self):
        if self.start not in self.transitions:
            raise ValueError(f"TokenFSM: start state {self.start!r} has no entry in transitions; give it its "
                             "allowed tokens (an empty dict if it allows none)")
        targets = {state for moves in self.transitions.values() for state in moves.values()}
        unknown = (targets | set(self.accepting)) - set(self.transitions)
        if unknown:
            raise ValueError(f"TokenFSM: states {sorted(map(repr, unknown))} are reached or accepting but have no "
                             "entry in transitions; add one for each (an empty dict for a final state)")

    def allowed(self, state) -> list[int]:
        return list(self.transitions[state])

    def run(self, ids):
        """The state after reading ids from start, or None if some token was not allowed where it came."""
        state = self.start
        for token in ids:
            state = self.transitions[state].get(int(token))
            if state is None:
                return None
        return state

    def accepts(self, ids) -> bool:
        return self.run(ids) in self.accepting

    def accepts_prefix(self, ids) -> bool:
        """True when every token of ids was allowed where it came: text the FSM has not rejected (yet). In a
        chain_fsm every such text can still be completed into an accepted one."""
        return self.run(ids) is not None


def chain_fsm(steps, stop_token_id: int | None = None) -> TokenFSM:
    """A TokenFSM that reads the steps in order; each step is (token_ids, repeat) and reads one token of
    token_ids, or one or more of them when repeat is True.

    For example digits only: chain_fsm([(digit_ids, True)]); a small JSON-like object {"n":<digits>} with a
    character tokenizer: one step per character of '{"n":', a repeated step of digits, then '}'. With a
    stop_token_id the finished text must end with it, so generate(..., stop_token_id=...) stops right there
    (after it only more stop tokens are allowed: the padding generate gives the finished rows of a batch);
    without one, the state after the last step accepts and allows nothing more.
    """
    transitions, state = {0: {}}, 0
    for token_ids, repeat in steps:
        token_ids = _check_token_ids(token_ids, "chain_fsm")
        clash = set(token_ids) & set(transitions[state])
        if clash:
            raise ValueError(f"chain_fsm: tokens {sorted(clash)} both repeat a step and start the next one, so the "
                             "machine could not tell which step it is in; make the two steps' tokens differ")
        transitions[state].update(dict.fromkeys(token_ids, state + 1))
        transitions[state + 1] = dict.fromkeys(token_ids, state + 1) if repeat else {}  # more of the same
        state += 1
    if stop_token_id is None:
        return TokenFSM(transitions, 0, frozenset({state}))
    if stop_token_id in transitions[state]:
        raise ValueError(f"chain_fsm: the stop token {stop_token_id} is also one of the last step's tokens; pick a "
                         "stop token that the steps do not use")
    transitions[state][stop_token_id] = "stopped"
    transitions["stopped"] = {stop_token_id: "stopped"}
    return TokenFSM(transitions, 0, frozenset({"stopped"}))


def constrain_to_fsm(fsm: TokenFSM, prompt_length: int):
    """A logits processor that lets the continuation (the tokens after the first prompt_length) take only
    paths of `fsm`: in each row every token the FSM does not allow in the current state gets -inf.

    The processor keeps no memory of its own: each step it runs the FSM over the row's continuation again,
    so one processor serves every row of a batch and every call of generate with that prompt length.
    """
    if isinstance(prompt_length, bool) or not isinstance(prompt_length, numbers.Integral) or prompt_length < 1:
        raise ValueError(f"constrain_to_fsm: prompt_length must be an integer >= 1 (the prompt's tokens, which the "
                         f"FSM does not read), got {prompt_length!r}")

    def process(ids: np.ndarray, logits: np.ndarray) -> np.ndarray:
        logits = np.array(logits, dtype=np.float64)
        for row, continuation in enumerate(ids[:, prompt_length:]):
            state = fsm.run(continuation)
            if state is None:
                raise ValueError(f"constrain_to_fsm: row {row}'s continuation {continuation.tolist()} is not a path "
                                 f"of the FSM; is prompt_length={prompt_length} the prompt's length?")
            allowed = fsm.allowed(state)
            if not allowed:
                raise ValueError(f"constrain_to_fsm: row {row}'s continuation {continuation.tolist()} has finished the "
                                 "FSM, which allows no more tokens, yet generation goes on; end it with a stop token "
                                 "(chain_fsm(..., stop_token_id) and generate(..., stop_token_id)) or ask for fewer")
            _check_vocabulary(allowed, logits, "constrain_to_fsm")
            forbidden = np.ones(logits.shape[-1], dtype=bool)
            forbidden[allowed] = False
            logits[row, forbidden] = -np.inf
        return logits

    return process
