"""Example ganbench plugin: the least-squares (``lsgan``) and WGAN-GP (``wgan-gp``) losses."""
