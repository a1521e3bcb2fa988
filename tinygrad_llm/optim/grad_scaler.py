"""GradScaler: dynamic loss scaling, so that float16 gradients neither vanish nor overflow (PyTorch's semantics).

float16 has no numbers between 0 and 6e-8 (and keeps only a few digits below 6e-5). A language model's
gradients are mostly far below 1, since the loss is a mean over thousands of positions; many of them
round to exactly 0 in a float16 backward pass, and those weights stop learning. Multiplying the loss by
a large S multiplies every gradient by S (the chain rule is linear), lifting them into float16's range;
dividing the float32 master gradients by S afterwards gives the true gradients back.

S cannot be chosen once: too large and a gradient overflows to inf (float16 ends at 65504). So it is
dynamic. Each step either
    finds an inf or NaN among the gradients: the step is SKIPPED (no weight changes) and S is halved, or
    is clean: after `growth_interval` clean steps in a row, S is doubled,
which keeps S just below the overflow edge. A skipped step is cheap insurance: the next one, with half
the scale, usually succeeds.

    loss = loss_fn(model(x), y)
    scaler.scale(loss).backward()      # gradients of S * loss
    scaler.unscale_(optimizer)         # gradients / S, and look for inf/NaN (only needed before clipping)
    clip_grad_norm_(params, 1.0)
    scaler.step(optimizer)             # optimizer.step(), unless an inf/NaN was found
    scaler.update()                    # halve S after an overflow, double it after growth_interval clean steps

Loss scaling belongs to training only: inference has no backward pass and no gradients to rescue.
bfloat16 needs none either (its exponent range is float32's), so the training loop enables it for fp16.
With enabled=False every method passes through (scale returns the loss itself, step just steps).
"""
from __future__ import annotations

from ..device import array_module
from ..tensor import Tensor

_READY, _UNSCALED, _STEPPED = "ready", "unscaled", "stepped"


class GradScaler:
    def __init__(self, init_scale: float = 2.0**16, growth_factor: float = 2.0, backoff_factor: float = 0.5,
                 growth_interval: int = 2000, enabled: bool = True):
        problems = []
        if not init_scale > 0:
            problems.append(f"init_scale must be > 0, got {init_scale}")
        if not growth_factor > 1:
            problems.append(f"growth_factor must be > 1 (the scale grows after clean steps), got {growth_factor}")
        if not 0 < backoff_factor < 1:
            problems.append(f"backoff_factor must be in (0, 1) (the scale shrinks after an overflow), got {backoff_factor}")
        if not (isinstance(growth_interval, int) and growth_interval >= 1):
            problems.append(f"growth_interval must be an integer >= 1 (clean steps before growing), got {growth_interval!r}")
        if problems:
            raise ValueError("GradScaler: " + "; ".join(problems))
        self.enabled = bool(enabled)
        self._scale, self.growth_factor, self.backoff_factor = float(init_scale), growth_factor, backoff_factor
        self.growth_interval = growth_interval
        self.growth_tracker = 0    # clean steps in a row since the scale last changed
        self.skipped_steps = 0     # optimizer steps not taken because a gradient was inf or NaN
        self._per_optimizer = {}   # id(optimizer) -> {"stage": ..., "found_inf": bool}, cleared by update()

    def is_enabled(self) -> bool:
        return self.enabled

    def get_scale(self) -> float:
        """The current loss scale S (1.0 when disabled)."""
        return self._scale if self.enabled else 1.0

    def scale(self, loss: Tensor) -> Tensor:
        """S * loss, in float32 (S = 65536 would itself overflow float16), to call backward() on."""
        if not self.enabled:
            return loss
        if not (isinstance(loss, Tensor) and loss.requires_grad):
            raise RuntimeError(
                "GradScaler.scale: this loss has no autograd graph (it was computed inside no_grad, or from "
                "tensors that need no gradient). Loss scaling is a training tool: it protects the gradients of a "
                "backward pass, and inference has none. Compute the training loss with gradients enabled"
            )
        return loss.float() * self._scale

    def _state(self, optimizer) -> dict:
        return self._per_optimizer.setdefault(id(optimizer), {"stage": _READY, "found_inf": False})

    def unscale_(self, optimizer) -> None:
        """Divide the gradients of `optimizer`'s parameters by S, in place, and note whether any is inf/NaN.

        Call it once per step, before anything that reads the gradients' size (clipping, logging the norm);
        a second call before update() would divide by S again, so it raises instead.
        """
        if not self.enabled:
            return
        state = self._state(optimizer)
        if state["stage"] == _UNSCALED:
            raise RuntimeError(
                "GradScaler.unscale_: already called on this optimizer since the last update(); a second call would "
                "divide the gradients by the scale twice. Call unscale_ at most once per step (step() unscales by "
                "itself when you have not)"
            )
        if state["stage"] == _STEPPED:
            raise RuntimeError("GradScaler.unscale_: called after step() in the same step; unscale before step()")
        inverse = 1.0 / self._scale
        found_inf = False
        for group in optimizer.param_groups:
            for param in group["params"]:
                if param.grad is not None:
                    param.grad *= inverse
                    found_inf = found_inf or not bool(array_module(param.grad).isfinite(param.grad).all())
        state.update(stage=_UNSCALED, found_inf=found_inf)

    def found_inf(self, optimizer) -> bool:
        """True when unscale_ found an inf or NaN gradient in `optimizer` this step (its step will be skipped)."""
        return self.enabled and self._state(optimizer)["found_inf"]

    def step(self, optimizer) -> bool:
        """optimizer.step() unless a gradient is inf/NaN (unscaling first if unscale_ was not called).
        Returns whether the step was taken."""
        if not self.enabled:
            optimizer.step()
            return True
        state = self._state(optimizer)
        if state["stage"] == _STEPPED:
            raise RuntimeError("GradScaler.step: already called on this optimizer since the last update(); "
                               "call scaler.update() once per step")
        if state["stage"] == _READY:
            self.unscale_(optimizer)
        state["stage"] = _STEPPED
        if state["found_inf"]:
            self.skipped_steps += 1
            return False
        optimizer.step()
        return True

    def update(self) -> None:
        """Halve the scale after a step with an inf/NaN gradient, double it after growth_interval clean steps."""
        if not self.enabled:
            return
        if not self._per_optimizer:
            raise RuntimeError("GradScaler.update: no gradients were checked since the last update; call "
                               "scaler.step(optimizer) (or unscale_) before update()")
        if any(state["found_inf"] for state in self._per_optimizer.values()):
            self._scale *= self.backoff_factor
            self.growth_tracker = 0
        else:
            self.growth_tracker += 1
            if self.growth_tracker == self.growth_interval:
                self._scale *= self.growth_factor
                self.growth_tracker = 0
        self._per_optimizer = {}

    # ------------------------------------------------------------ saving and resuming
    def state_dict(self) -> dict:
        """Plain numbers (JSON-ready); empty for a disabled scaler, as in PyTorch."""
        if not self.enabled:
            return {}
        return {"scale": self._scale, "growth_factor": self.growth_factor, "backoff_factor": self.backoff_factor,
                "growth_interval": self.growth_interval, "growth_tracker": self.growth_tracker,
                "skipped_steps": self.skipped_steps}

    def load_state_dict(self, state_dict: dict) -> None:
        if not self.enabled:
            return
        if not state_dict:
            raise RuntimeError("GradScaler.load_state_dict: the state is empty; it was saved from a disabled scaler")
        self._scale = float(state_dict["scale"])
        self.growth_factor, self.backoff_factor = state_dict["growth_factor"], state_dict["backoff_factor"]
        self.growth_interval, self.growth_tracker = int(state_dict["growth_interval"]), int(state_dict["growth_tracker"])
        self.skipped_steps = int(state_dict["skipped_steps"])

    def __repr__(self):
        return (f"GradScaler(scale={self.get_scale()}, growth_tracker={self.growth_tracker}, "
                f"skipped_steps={self.skipped_steps}, enabled={self.enabled})")
