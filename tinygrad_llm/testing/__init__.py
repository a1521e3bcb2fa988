"""Tools to check a differentiable implementation: gradcheck against finite differences."""
from .gradcheck import GradcheckError, gradcheck, numerical_gradient

__all__ = ["gradcheck", "numerical_gradient", "GradcheckError"]
