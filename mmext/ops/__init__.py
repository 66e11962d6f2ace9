"""Custom operators."""
from . import elsa_custom_op  # noqa: F401  (registers the op for compile)
from .elsa import (ELSA_IMPLS, carafe_available, elsa_filter,
                   elsa_filter_unfold)

__all__ = [
    'elsa_filter', 'elsa_filter_unfold', 'carafe_available', 'ELSA_IMPLS'
]
