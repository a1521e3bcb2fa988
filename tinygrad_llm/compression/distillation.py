"""Knowledge distillation (Q28, Q20): train a small student on a large teacher's whole output distribution.

    loss = alpha * T^2 * KL(softmax(z_t / T) || softmax(z_s / T))  +  (1 - alpha) * CE(z_s, y)

z_s, z_t: the student's and the teacher's logits for the same tokens; y: the true next tokens; every term is
a mean over tokens.

Why a teacher helps: the label y says which token came next, one number per position. The teacher's
distribution also says which other tokens were plausible and by how much ("after 'th', 'e' is likely, 'a'
possible, 'q' absurd"), a far richer target per position for the same text. The student learns to copy
the teacher's behaviour; it learns no fact the teacher does not have.

The temperature T softens both distributions: at T = 1 a confident teacher puts nearly all its mass on
one token and its soft target is almost the label again; a larger T brings up the small probabilities
where the "dark knowledge" about the other tokens lives. As T grows the soft targets tend to uniform.

Why T^2: the gradient of the KL term with respect to z_s is (softmax(z_s/T) - softmax(z_t/T)) / T per
token, and for large T the difference of the two softmaxes itself shrinks like 1/T, so the soft part's
gradient falls like 1/T^2. Multiplying by T^2 keeps its size about the same at every temperature, and
alpha then means the same mix of soft and hard whatever T is.

The teacher's logits are a constant: they are read as an array, never as part of the graph, so the loss
backpropagates into the student only.
"""
from __future__ import annotations

import numbers

import numpy as np

from ..autograd import no_grad
from ..nn import functional as F
from ..tensor import Tensor


def _check_temperature(function: str, temperature) -> float:
    if isinstance(temperature, bool) or not isinstance(temperature, numbers.Real) or not temperature > 0:
        raise ValueError(f"{function}: temperature must be a number > 0 (1 leaves the logits as they are, larger "
                         f"values soften the distribution), got {temperature!r}")
    return float(temperature)


def _teacher_log_probs(teacher_logits, temperature: float, dtype) -> np.ndarray:
    """log softmax(z_t / T) as a plain array, by the same op the student's side uses (so equal logits give
    exactly equal log-probabilities)."""
    teacher = np.asarray(getattr(teacher_logits, "data", teacher_logits), dtype=dtype)
    with no_grad():
        return F.log_softmax(Tensor(teacher) / temperature).data


def soft_targets(logits, temperature: float = 1.0) -> np.ndarray:
    """softmax(logits / T) over the last axis, as a constant array: what the student is taught to match."""
    temperature = _check_temperature("soft_targets", temperature)
    logits = np.asarray(getattr(logits, "data", logits))
    return np.exp(_teacher_log_probs(logits, temperature, logits.dtype if logits.dtype.kind == "f" else np.float64))


def distillation_loss(student_logits: Tensor, teacher_logits, targets=None, temperature: float = 2.0,
                      alpha: float = 0.5) -> Tensor:
    """alpha * T^2 * KL(teacher_T || student_T) + (1 - alpha) * CE(student, targets), a mean over tokens.

    student_logits: Tensor (..., V), the graph the gradient flows back through.
    teacher_logits: array or Tensor of the same shape, treated as a constant.
    targets: integer ids of shape (...), the true next tokens; may be None only when alpha = 1 (soft only).
    """
    temperature = _check_temperature("distillation_loss", temperature)
    if isinstance(alpha, bool) or not isinstance(alpha, numbers.Real) or not 0 <= alpha <= 1:
        raise ValueError(f"distillation_loss: alpha is the weight of the soft (teacher) term and must be in [0, 1], "
                         f"got {alpha!r} (1: teacher only, 0: labels only)")
    if tuple(np.shape(getattr(teacher_logits, "data", teacher_logits))) != student_logits.shape:
        raise ValueError(f"distillation_loss: teacher logits {np.shape(getattr(teacher_logits, 'data', teacher_logits))} "
                         f"and student logits {student_logits.shape} must have the same shape (same tokens, same "
                         "vocabulary)")
    if targets is None and alpha < 1:
        raise ValueError(f"distillation_loss: alpha={alpha} gives the labels a weight of {1 - alpha}, so targets are "
                         "needed; pass the true next-token ids, or alpha=1 to train on the teacher alone")
    terms = []
    if alpha > 0:
        log_p_teacher = _teacher_log_probs(teacher_logits, temperature, student_logits.dtype)
        log_p_student = F.log_softmax(student_logits / temperature)
        # KL(p || q) = sum_v p_v (log p_v - log q_v), per token; p is the teacher's constant soft target.
        kl_per_token = -((log_p_student - log_p_teacher) * np.exp(log_p_teacher)).sum(axis=-1)
        terms.append(alpha * temperature**2 * kl_per_token.mean())
    if alpha < 1:
        terms.append((1 - alpha) * F.cross_entropy(student_logits, targets))
    return terms[0] + terms[1] if len(terms) == 2 else terms[0]
