"""The chapter 12 experiment in fast mode (one training run of about 300 steps, shared by the tests): the logit
lens sharpens with depth in a trained GPT and not in its untrained twin, and a probe reads "the previous
character is a space" better from the trained model than from the untrained one. The claims asserted held
with margin for seeds 0, 1 and 2."""
import pytest

from tinygrad_llm.experiments.inside_the_gpt import experiment_config, inside_the_gpt

pytestmark = pytest.mark.interpretability


@pytest.fixture(scope="module")
def results():
    return inside_the_gpt(fast=True, seed=0)


def test_the_results_have_one_entry_per_layer_and_the_embeddings(results):
    layers = results["num_layers"] + 1
    for lens in (results["trained_lens"], results["untrained_lens"]):
        assert len(lens["target_probability"]) == len(lens["top1_accuracy"]) == layers
    assert all(len(values) == layers for values in results["previous_is_space_probe"].values())


def test_the_logit_lens_of_a_trained_gpt_sharpens_with_depth(results):
    trained, untrained = results["trained_lens"], results["untrained_lens"]
    assert trained["target_probability"][-1] > 2 * trained["target_probability"][0]
    assert trained["top1_accuracy"][-1] > untrained["top1_accuracy"][-1] + 0.1


def test_a_probe_reads_the_previous_character_from_the_trained_model_better_than_from_its_untrained_twin(results):
    probe = results["previous_is_space_probe"]
    assert probe["model"][-1] > probe["untrained_model"][-1] + 0.05
    assert max(probe["shuffled_labels"]) < 0.6  # balanced accuracy: chance is 0.5


def test_smaller_sizes_can_be_asked_for_and_unknown_ones_are_refused():
    config = experiment_config(fast=True, steps=40, embed_dim=32)
    assert (config.steps, config.embed_dim, config.warmup_steps, config.eval_every) == (40, 32, 2, 40)
    with pytest.raises(TypeError, match="unknown sizes"):
        experiment_config(fast=True, stepz=40)
