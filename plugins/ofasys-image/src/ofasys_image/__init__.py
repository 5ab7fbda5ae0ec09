"""IMAGE and BOX slots for ofasys.

The entry modules :mod:`ofasys_image.plugin` (IMAGE) and :mod:`ofasys_image.box` (BOX) are what the plugin
manager loads; they import only the standard library and ``ofasys``. This package module imports nothing either:
use the submodules (:mod:`~ofasys_image.datasets`, :mod:`~ofasys_image.metrics`, :mod:`~ofasys_image.io`...).
"""

__version__ = "0.1.0"
