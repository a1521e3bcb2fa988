"""Deliberately broken mixed-precision pieces, each named after its bug; test_grad_scaler.py and
test_mixed_precision.py prove that their checks catch every one."""
from tinygrad_llm.optim import GradScaler
from tinygrad_llm.training.mixed_precision import MasterWeights


class ScalerThatStepsOnInf(GradScaler):
    """Halves the scale after an overflow but still takes the step: one inf gradient turns the weights inf."""

    def step(self, optimizer):
        if self.enabled and self._state(optimizer)["stage"] == "ready":
            self.unscale_(optimizer)
        self._state(optimizer)["stage"] = "stepped"
        optimizer.step()  # BUG: no check of found_inf
        return True


class ScalerThatUnscalesTwice(GradScaler):
    """step() always unscales, even after the caller's unscale_ (needed before clipping): the gradients are
    divided by the scale twice, and the update is ~65536x too small."""

    def step(self, optimizer):
        if self.enabled:
            self._state(optimizer)["stage"] = "ready"  # BUG: forgets that unscale_ already ran this step
        return super().step(optimizer)


def master_weights_without_a_float32_copy(model, dtype):
    """The optimizer updates the half-precision weights themselves ("pure" half precision): updates smaller
    than half a unit in the last place of a weight round away, and the model stops learning."""
    return MasterWeights(model, dtype, float32_master=False)  # BUG: no float32 master copy
