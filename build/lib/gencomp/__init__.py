"""gencomp: generative image compression research pipeline."""
__version__ = "0.1.0"
