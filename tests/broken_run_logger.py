"""Logging with the epoch as the step (M53), and a logger that would let it through; test_run_logger.py proves
that RunLogger's step check catches the first and that its step property fails on the second's log."""
from tinygrad_llm.interpretability.run_logger import RunLogger


def log_losses_by_epoch(logger, losses_per_epoch) -> None:
    """One loss per mini-batch, logged at x = the epoch: every batch of an epoch lands on the same x, and a run
    with more batches per epoch is drawn squeezed onto the same axis as one with fewer."""
    for epoch, batch_losses in enumerate(losses_per_epoch):
        for loss in batch_losses:
            logger.scalar("loss", loss, epoch)  # BUG: the epoch, not the global step


class UncheckedRunLogger(RunLogger):
    """RunLogger without the step check: it writes whatever step it is given."""

    def _check_step(self, what, name, step):
        return int(step)  # BUG: a repeated or earlier step is written as it comes
