"""EarlyStopping: stop training when the validation metric stops improving, and keep the best weights.

Validation loss typically falls, bottoms out, then rises as the model starts to memorise the training set.
Early stopping watches it, remembers the weights from the best evaluation, and says "stop" after `patience`
evaluations in a row without improvement, so you end with the model from the bottom of the curve rather
than the overfit one from the last step. It is a regulariser: it limits how far training can move the
weights. Feed it a validation metric, never the training loss (which keeps falling while overfitting).

    stopper = EarlyStopping(patience=5)
    for epoch in range(max_epochs):
        train_one_epoch(model)
        if stopper.step(evaluate(model), model):
            break                        # with restore_best=True the model already holds the best weights
    stopper.restore(model)               # also right when the loop ran out of epochs first
"""
from __future__ import annotations

import math


class EarlyStopping:
    def __init__(self, patience: int, min_delta: float = 0.0, mode: str = "min", restore_best: bool = True):
        if not (isinstance(patience, int) and patience >= 1):
            raise ValueError(f"EarlyStopping: patience must be an integer >= 1 (evaluations to wait), got {patience!r}")
        if not min_delta >= 0:
            raise ValueError(f"EarlyStopping: min_delta must be >= 0 (the smallest gain that counts), got {min_delta}")
        if mode not in ("min", "max"):
            raise ValueError(f"EarlyStopping: mode must be 'min' (for a loss) or 'max' (for accuracy), got {mode!r}")
        self.patience, self.min_delta, self.mode, self.restore_best = patience, min_delta, mode, restore_best
        self.best_metric = math.inf if mode == "min" else -math.inf
        self.best_step = None      # index (0-based) of the step() call that saw the best metric
        self.best_state = None     # a copy of model.state_dict() at that call (with restore_best=True)
        self.num_bad_steps = 0     # evaluations in a row without improvement
        self.steps = 0

    def is_improvement(self, metric: float) -> bool:
        """Better than the best so far by more than min_delta (a NaN metric is never an improvement)."""
        if self.mode == "min":
            return metric < self.best_metric - self.min_delta
        return metric > self.best_metric + self.min_delta

    def step(self, metric, model) -> bool:
        """Record one validation result; True means stop now (`patience` evaluations without improvement).

        On stopping with restore_best=True, the best weights are loaded back into `model`.
        """
        metric = float(metric)
        if self.is_improvement(metric):
            self.best_metric, self.best_step, self.num_bad_steps = metric, self.steps, 0
            if self.restore_best:
                self.best_state = model.state_dict()  # Module.state_dict returns copies, not views
        else:
            self.num_bad_steps += 1
        self.steps += 1
        should_stop = self.num_bad_steps >= self.patience
        if should_stop and self.restore_best and self.best_state is not None:
            self.restore(model)
        return should_stop

    def restore(self, model) -> None:
        """Load the best weights seen so far into `model`."""
        if not self.restore_best:
            raise RuntimeError(
                "EarlyStopping(restore_best=False) keeps no weights to restore; create it with restore_best=True"
            )
        if self.best_state is None:
            raise RuntimeError(
                "EarlyStopping.restore: no improving metric has been seen yet; call step(metric, model) first"
            )
        model.load_state_dict(self.best_state)
