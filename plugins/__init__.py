"""Built-in ganbench plugins, registered through the same path as third-party ones.

(The plugin manager itself lives in ``ganbench.registry``.)
"""
