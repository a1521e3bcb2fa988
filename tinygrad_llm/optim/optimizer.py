"""Optimizer: the base class that turns gradients into parameter updates.

Every optimizer does the same bookkeeping, so it lives here once:
- **parameter groups**: `params` is a list of Parameters, or a list of dicts such as
  `[{"params": matrices, "weight_decay": 0.1}, {"params": biases_and_norms, "weight_decay": 0.0}]`
  (the usual way to decay matrices only). Each group is a dict holding its parameters and its own copy of
  every hyperparameter; a learning-rate scheduler changes training by writing `group["lr"]`.
- **per-parameter state**: what an optimizer remembers between steps (a step count, momentum and moment
  buffers), kept in `self.state[param]` as NumPy arrays so that `state_dict()` can save it and a run can be
  resumed bit-exactly.
- **the loop**: `step()` visits every parameter that has a gradient and calls the subclass's
  `update(param, grad, group, state)`, the only method a new optimizer must write.

Updates change `param.data` in place: the Parameter objects (and the arrays inside them) stay the same, so
a model and an optimizer keep pointing at the same weights.
"""
from __future__ import annotations

import copy

import numpy as np

from ..device import as_array_on
from ..tensor import Tensor


class Optimizer:
    def __init__(self, params, defaults: dict):
        self.defaults = dict(defaults)
        self.param_groups: list[dict] = []
        self.state: dict[Tensor, dict] = {}
        if isinstance(params, (Tensor, dict)):
            raise TypeError(
                f"{type(self).__name__} expects an iterable of Parameters or of parameter-group dicts, got a single "
                f"{type(params).__name__}; wrap it in a list: [{'param' if isinstance(params, Tensor) else 'group'}]"
            )
        groups = list(params)
        if not groups:
            raise ValueError(
                f"{type(self).__name__} got an empty parameter list; pass model.parameters() of a model that has "
                "parameters (a generator that was already consumed is empty too)"
            )
        if not isinstance(groups[0], dict):
            groups = [{"params": groups}]
        for group in groups:
            self.add_param_group(group)

    # ------------------------------------------------------------ parameter groups
    def add_param_group(self, group: dict) -> None:
        """Add a group: its own hyperparameters override the optimizer's defaults."""
        if not isinstance(group, dict) or "params" not in group:
            raise TypeError(
                f"{type(self).__name__}: a parameter group must be a dict with a 'params' key, got {group!r}; "
                "do not mix plain Parameters and group dicts in one list"
            )
        unknown = sorted(set(group) - set(self.defaults) - {"params"})
        if unknown:
            raise ValueError(
                f"{type(self).__name__}: unknown hyperparameter(s) {unknown} in a parameter group; "
                f"the known ones are {sorted(self.defaults)}"
            )
        params = group["params"]
        params = [params] if isinstance(params, Tensor) else list(params)
        for param in params:
            self._check_parameter(param)
        already_optimized = {id(p) for g in self.param_groups for p in g["params"]}
        if any(id(p) in already_optimized for p in params) or len({id(p) for p in params}) != len(params):
            raise ValueError(
                f"{type(self).__name__}: a parameter appears more than once (in two groups or twice in one); "
                "each parameter must be in exactly one group, or it would be updated twice per step"
            )
        full_group = {**self.defaults, **group, "params": params}
        self.check_hyperparameters(full_group)
        self.param_groups.append(full_group)

    def _check_parameter(self, param) -> None:
        name = type(self).__name__
        if not isinstance(param, Tensor):
            raise TypeError(f"{name} can only optimize Tensors/Parameters, got a {type(param).__name__}")
        if not param.requires_grad:
            raise ValueError(
                f"{name} was given a parameter of shape {param.shape} that does not require grad, so it would never "
                "get a gradient; pass only trainable ones: [p for p in model.parameters() if p.requires_grad]"
            )
        if not param.is_leaf:
            raise ValueError(
                f"{name} was given a tensor of shape {param.shape} computed by an op (not a leaf); gradients are only "
                "kept on leaves, so optimize the Parameters it was computed from"
            )

    def check_hyperparameters(self, group: dict) -> None:
        """Raise a clear error for impossible values. Subclasses extend this with their own checks."""
        self._require(group, "lr", group["lr"] >= 0, "the learning rate must be >= 0")
        if "weight_decay" in group:
            self._require(group, "weight_decay", group["weight_decay"] >= 0,
                          "weight decay must be >= 0 (0 turns it off)")

    def _require(self, group: dict, name: str, ok: bool, fix: str) -> None:
        if not ok:
            raise ValueError(f"{type(self).__name__}: invalid {name}={group[name]!r}; {fix}")

    # ------------------------------------------------------------ the training-loop calls
    def zero_grad(self) -> None:
        """Forget the last gradients. backward() ADDS into .grad, so without this every step would use the sum of
        all gradients so far: steps grow and training diverges."""
        for group in self.param_groups:
            for param in group["params"]:
                param.grad = None

    def step(self) -> None:
        """Update every parameter that has a gradient (a parameter unused by this loss has grad None and is skipped)."""
        for group in self.param_groups:
            for param in group["params"]:
                if param.grad is None:
                    continue
                if param.grad.shape != param.shape:
                    raise ValueError(
                        f"{type(self).__name__}.step: a parameter of shape {param.shape} has a gradient of shape "
                        f"{param.grad.shape}; a gradient must have its parameter's shape"
                    )
                if param not in self.state:
                    self.state[param] = {"step": 0, **self.init_state(param, group)}
                state = self.state[param]
                state["step"] += 1
                self.update(param, param.grad, group, state)

    def init_state(self, param: Tensor, group: dict) -> dict:
        """The buffers this optimizer keeps per parameter, created at its first update (none by default)."""
        return {}

    def update(self, param: Tensor, grad: np.ndarray, group: dict, state: dict) -> None:
        """Change `param.data` in place using `grad` and this parameter's `state` (step is already incremented)."""
        raise NotImplementedError(f"{type(self).__name__} must implement update(param, grad, group, state)")

    @staticmethod
    def add_l2_penalty(grad: np.ndarray, param: Tensor, group: dict) -> np.ndarray:
        """Classic weight decay: the gradient of the L2 penalty (wd/2)*||w||^2, i.e. wd*w, added to the gradient.

        For plain SGD this is the same as shrinking w by lr*wd*w each step. For adaptive optimizers it is not:
        the penalty's gradient then gets divided by the same per-coordinate scale as the loss gradient (see AdamW).
        """
        weight_decay = group.get("weight_decay", 0)
        return grad + weight_decay * param.data if weight_decay != 0 else grad

    # ------------------------------------------------------------ saving and resuming
    def state_dict(self) -> dict:
        """Everything needed to resume: hyperparameters per group and the per-parameter state, both copied.

        Parameters are referred to by their position (0, 1, 2, ... across groups in order), as in PyTorch,
        so the state can be loaded into a new optimizer built over the same model in the same order.
        Every state value is a NumPy array on the host (the step count a 0-d int64 array), ready for `np.savez`.
        """
        index_of = {}
        groups = []
        for group in self.param_groups:
            indices = [index_of.setdefault(id(p), len(index_of)) for p in group["params"]]
            groups.append({**copy.deepcopy({k: v for k, v in group.items() if k != "params"}), "params": indices})
        state = {
            index_of[id(param)]: {key: np.array(as_array_on(value, "cpu")) for key, value in param_state.items()}
            for param, param_state in self.state.items()
        }
        return {"state": state, "param_groups": groups}

    def load_state_dict(self, state_dict: dict) -> None:
        """Restore hyperparameters and state saved by `state_dict()` (from an optimizer of the same kind over
        parameters of the same shapes, grouped the same way)."""
        name = type(self).__name__
        saved_groups = state_dict["param_groups"]
        if len(saved_groups) != len(self.param_groups):
            raise ValueError(
                f"{name}.load_state_dict: the saved state has {len(saved_groups)} parameter group(s), this optimizer "
                f"has {len(self.param_groups)}; build the optimizer with the same groups as the one that was saved"
            )
        params_by_index = {}
        for saved, group in zip(saved_groups, self.param_groups):
            if len(saved["params"]) != len(group["params"]):
                raise ValueError(
                    f"{name}.load_state_dict: a saved group has {len(saved['params'])} parameters, the matching group "
                    f"here has {len(group['params'])}; the model or the grouping changed since the state was saved"
                )
            params_by_index.update(zip(saved["params"], group["params"]))
        new_state = {}
        for index, saved_state in state_dict["state"].items():
            param = params_by_index[int(index)]
            new_state[param] = {key: self._restore_value(key, value, param) for key, value in saved_state.items()}
        for saved, group in zip(saved_groups, self.param_groups):
            group.update(copy.deepcopy({k: v for k, v in saved.items() if k != "params"}))
        self.state = new_state

    def _restore_value(self, key: str, value, param: Tensor):
        value = np.asarray(value)
        if np.issubdtype(value.dtype, np.integer):
            return int(value)
        if value.shape != param.shape:
            raise ValueError(
                f"{type(self).__name__}.load_state_dict: state '{key}' has shape {value.shape} but its parameter has "
                f"shape {param.shape}; the model changed since the state was saved"
            )
        return as_array_on(np.array(value, dtype=param.dtype), param.device)

    def __repr__(self):
        lines = [f"{type(self).__name__} ("]
        for i, group in enumerate(self.param_groups):
            settings = ", ".join(f"{k}={v}" for k, v in group.items() if k != "params")
            lines.append(f"  group {i}: {len(group['params'])} params, {settings}")
        return "\n".join(lines) + "\n)"
