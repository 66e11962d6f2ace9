"""Importing this package registers every mmext model component (backbones,
heads, necks, TTA models, ...) in the ``mmext`` scope, so a config needs only
``custom_imports=dict(imports=['mmext.models'])``."""
from .backbones import *  # noqa: F401,F403
from .detectors import *  # noqa: F401,F403
from .heads import *  # noqa: F401,F403
from .necks import *  # noqa: F401,F403
from .segmentors import *  # noqa: F401,F403
from .test_time_augs import *  # noqa: F401,F403
