"""Built-in ganbench plugins, registered through the same path as third-party ones.

(The plugin manager itself lives in ``ganbench.registry``.)
"""
from ganbench.registry import get_registry  # noqa: F401  TEMP shim while helpers port; removed at review
