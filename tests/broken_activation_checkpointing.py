"""Deliberately broken random-state handling for activation checkpointing, each named after its bug.

Each replaces `replayed_random_state` in tinygrad_llm/activation_checkpointing.py (the context the recomputation
runs in); test_activation_checkpointing.py proves that its bit-identity check catches both.
"""
import contextlib

from tinygrad_llm.random import generator


@contextlib.contextmanager
def random_state_not_replayed(saved_state: dict):
    # BUG: the recomputation draws fresh dropout masks, so backward differentiates a different network from
    # the one whose loss was computed.
    yield


@contextlib.contextmanager
def random_state_replayed_but_not_restored(saved_state: dict):
    generator().bit_generator.state = saved_state
    # BUG: the generator stays where the recomputation left it, so the random numbers drawn after backward
    # (the next step's dropout masks, the data order) repeat ones already used.
    yield
