from . import optim, tta  # noqa: F401  (registers the constructor, TTA)
